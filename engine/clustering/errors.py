"""Errors and warnings raised by the clustering engine.

Every message names what is wrong and how to put it right, so that a page
can show it as it is and a shell user can act on it.
"""

from __future__ import annotations

__all__ = [
    "ClusteringCancelled",
    "ClusteringConfigError",
    "ClusteringInputError",
    "ClusteringWarning",
]


class ClusteringInputError(ValueError):
    """Input data cannot be clustered as asked (no time, too few steps...)."""


class ClusteringConfigError(ValueError):
    """A configuration value is out of range or of an unknown kind."""


class ClusteringCancelled(RuntimeError):
    """The caller's cancel token was set; the work was stopped."""


class ClusteringWarning(UserWarning):
    """Something in the input was dropped or changed; the result is usable."""
