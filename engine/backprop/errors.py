"""Errors raised by the backpropagation engine.

Every message names what is wrong and how to put it right, so that a page
can show it as it is and a shell user can act on it.
"""

from __future__ import annotations

from engine.data.errors import DataError


class BackpropError(ValueError):
    """Base class of every error the backpropagation engine raises."""


class SpecError(BackpropError):
    """A network specification cannot be built as asked."""


class TargetError(BackpropError):
    """Labels and network output do not fit together."""


class CSVError(BackpropError, DataError):
    """An uploaded CSV file cannot be used as a data set."""


class CSVSizeError(CSVError):
    """The file is too large, too long or holds no data rows."""


class CSVColumnError(CSVError):
    """The header or the rows do not have the columns that are needed."""


class CSVValueError(CSVError):
    """A cell holds text, NaN or infinity where a number is needed."""
