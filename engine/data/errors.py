"""Errors raised by the data layer.

Every message names what is wrong and how to put it right, so that a page
can show it as it is and a shell user can act on it.
"""

from __future__ import annotations


class DataError(ValueError):
    """Base class of every error the data layer raises on bad input."""


class FileFormatError(DataError):
    """A file is missing, unreadable, truncated or not of the expected kind."""


class SchemaError(DataError):
    """A file is readable but lacks variables or columns that are needed."""


class RegionError(DataError):
    """A region cannot be served: outside Greenland or the data, too small or large."""


class DataNotFoundError(DataError):
    """A registered data set is neither in the data directory nor in the cache."""


class EarthdataLoginError(DataError):
    """NASA Earthdata credentials are needed and were not found."""


class DataWarning(UserWarning):
    """Something in the data was dropped or changed; the result is still usable."""
