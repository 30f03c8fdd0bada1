"""Errors and warnings of the bed-topography engine.

Every message names what is wrong and how to put it right, so that a page
can show it as it is and a shell user can act on it.
"""

from __future__ import annotations

from engine.data.errors import DataWarning


class BedTopoError(ValueError):
    """Base class of every error the bed-topography engine raises."""


class ConfigError(BedTopoError):
    """A feature, model or loss setting is out of range or unknown."""


class FeatureError(BedTopoError):
    """A grid cannot give the feature channels that are asked for."""


class FeatureWarning(DataWarning):
    """A feature channel was dropped or some of its cells were filled."""


class MissingFeatureWarning(FeatureWarning):
    """A field is absent from the grid or entirely NaN; its channels are dropped."""


class FilledFeatureWarning(FeatureWarning):
    """Scattered NaN cells of a channel were set to the channel mean."""
