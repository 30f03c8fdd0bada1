"""Feature channels of a region's grid for the DeepTopoNet models.

The channels, in this order:

1. the five surface fields: ``surface_elevation`` (m),
   ``surface_velocity_x`` and ``surface_velocity_y`` (m a-1),
   ``surface_mass_balance`` (m a-1) and ``surface_elevation_change``
   (m a-1);
2. their gradients along easting and northing, named
   ``<field>_gradient_x`` and ``<field>_gradient_y``, in field units per
   metre (m m-1 for the elevation, a-1 for the rates);
3. a trend surface: every monomial ``x^i y^j`` with ``1 <= i + j <=
   degree``, each once, named ``trend_x``, ``trend_y``, ``trend_x2``,
   ``trend_xy``, ``trend_y2``, ``trend_x3``, ``trend_x2y``, ... of the cell
   centres scaled to [-1, 1] over the grid (x = -1 at the west edge, y = -1
   at the south edge);
4. optionally the BedMachine bed and its error, ``bed_bedmachine`` and
   ``bed_bedmachine_error`` (m), the extra inputs of the default model.

Every channel is z-scored with a :class:`FeatureScaler` (mean and standard
deviation per channel, fitted on the training grid and saved beside the
model as JSON), so that prediction scales its inputs exactly as training
did.

Sign of the y gradient: grids follow ``CONVENTIONS.md``, so the northing
``y`` *decreases* down the rows. The ``_gradient_y`` channels are the
derivative with respect to northing (positive where the field rises to the
north), computed with the decreasing ``y`` coordinate itself; the
derivative down the rows (towards the south) is its negative.

Missing data:

- a field absent from the grid, or NaN in every cell, is dropped with its
  gradients, with a :class:`MissingFeatureWarning`; nothing is filled in
  its place;
- scattered NaN (e.g. 4092 cells of the Helheim dh/dt grid) are kept NaN
  through the gradients (so a gap also blanks the gradient at its
  neighbours), ignored by the statistics, and after z-scoring set to 0,
  the channel mean, with a :class:`FilledFeatureWarning` giving the count.
  :attr:`FeatureSet.filled` marks the cells where any channel was filled,
  so that training can leave them out of the loss.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from engine.bedtopo.errors import (
    ConfigError,
    FeatureError,
    FilledFeatureWarning,
    MissingFeatureWarning,
)

__all__ = [
    "SURFACE_FIELDS",
    "BEDMACHINE_FIELDS",
    "FeatureConfig",
    "FeatureScaler",
    "FeatureSet",
    "trend_names",
    "raw_features",
    "make_features",
]

log = logging.getLogger(__name__)

#: The five surface fields, inputs of every model.
SURFACE_FIELDS: tuple[str, ...] = (
    "surface_elevation",
    "surface_velocity_x",
    "surface_velocity_y",
    "surface_mass_balance",
    "surface_elevation_change",
)

#: BedMachine bed and error, extra inputs of the default model.
BEDMACHINE_FIELDS: tuple[str, ...] = ("bed_bedmachine", "bed_bedmachine_error")

#: Version of the scaler's JSON dict; bumped when its keys change.
SCALER_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """Which feature channels to build from a grid.

    Parameters
    ----------
    fields : tuple of str
        Grid variables used as channels, by default :data:`SURFACE_FIELDS`.
    gradients : bool
        Add the easting and northing gradient of each field.
    trend_degree : int
        Highest total degree of the trend surface, 0 (none) to 5; degree
        ``d`` gives ``(d + 1) (d + 2) / 2 - 1`` channels.
    include_bedmachine : bool
        Add ``bed_bedmachine`` and ``bed_bedmachine_error`` as channels (for
        :class:`engine.bedtopo.models.DeepTopoNet`). They get no gradients.
    """

    fields: tuple[str, ...] = SURFACE_FIELDS
    gradients: bool = True
    trend_degree: int = 2
    include_bedmachine: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.trend_degree, int) or not 0 <= self.trend_degree <= 5:
            raise ConfigError(
                f"trend_degree must be an integer from 0 to 5, got "
                f"{self.trend_degree!r}; use 2 for the paper's trend surface"
            )
        if len(set(self.fields)) != len(self.fields) or not self.fields:
            raise ConfigError(
                f"fields must name at least one grid variable, each once; got "
                f"{self.fields!r}"
            )


def trend_names(degree: int) -> list[str]:
    """Names of the trend channels up to a total degree, each monomial once.

    Parameters
    ----------
    degree : int
        Highest total degree, >= 0.

    Returns
    -------
    list of str
        By degree, then by falling power of x: for degree 2
        ``["trend_x", "trend_y", "trend_x2", "trend_xy", "trend_y2"]``.

    Examples
    --------
    >>> len(trend_names(3))
    9
    """
    names = []
    for total in range(1, degree + 1):
        for power_y in range(total + 1):
            power_x = total - power_y
            names.append("trend_" + _power("x", power_x) + _power("y", power_y))
    return names


def _power(symbol: str, power: int) -> str:
    """``x``, ``x2``, ... for a power, or the empty string for power 0."""
    if power == 0:
        return ""
    return symbol if power == 1 else f"{symbol}{power}"


@dataclass(frozen=True, kw_only=True)
class FeatureScaler:
    """Z-score statistics of the feature channels, saved beside a model.

    Parameters
    ----------
    channels : tuple of str
        Channel names, in the order of the feature array.
    mean, std : tuple of float
        Mean and standard deviation (population, ``ddof=0``) of each channel
        over its finite cells of the training grid, in the channel's units.
        A constant channel gets ``std = 1`` so that it scales to 0, and a
        channel without any finite cell gets mean 0 and std 1.
    trend_extent : tuple of float or None
        ``(x_min, x_max, y_min, y_max)``: the cell-centre extent (m,
        EPSG:3413) that the trend coordinates are scaled over, so that a
        window of the training region gets the same trend values; None when
        there are no trend channels.
    """

    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    trend_extent: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        n = len(self.channels)
        if len(self.mean) != n or len(self.std) != n:
            raise ConfigError(
                f"a FeatureScaler needs one mean and one std per channel: "
                f"{n} channels, {len(self.mean)} means, {len(self.std)} stds"
            )
        if any(not (s > 0 and math.isfinite(s)) for s in self.std):
            raise ConfigError("every std of a FeatureScaler must be finite and > 0")

    @classmethod
    def fit(
        cls,
        values: np.ndarray,
        channels: list[str] | tuple[str, ...],
        *,
        trend_extent: tuple[float, float, float, float] | None = None,
    ) -> FeatureScaler:
        """Fit the statistics of raw channels.

        Parameters
        ----------
        values : numpy.ndarray
            Shape ``(C, H, W)``, raw channels in their units, NaN ignored.
        channels : sequence of str
            ``C`` names.
        trend_extent : tuple of float, optional
            See the class parameters.

        Returns
        -------
        FeatureScaler
        """
        # Statistics in float64 over the finite cells of each channel.
        flat = np.asarray(values, dtype="float64").reshape(len(channels), -1)
        mean, std = [], []
        for row in flat:
            finite = row[np.isfinite(row)]
            if finite.size == 0:
                # No finite cell (e.g. the gradient of a field with isolated
                # values): the channel is filled with 0 everywhere.
                mean.append(0.0)
                std.append(1.0)
                continue
            mean.append(float(finite.mean()))
            spread = float(finite.std())
            std.append(spread if spread > 0 else 1.0)
        return cls(
            channels=tuple(channels),
            mean=tuple(mean),
            std=tuple(std),
            trend_extent=trend_extent,
        )

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Z-score raw channels; NaN stays NaN.

        Parameters
        ----------
        values : numpy.ndarray
            Shape ``(C, H, W)``, in the order of :attr:`channels`.

        Returns
        -------
        numpy.ndarray
            Shape ``(C, H, W)``, float64, dimensionless.
        """
        if values.shape[0] != len(self.channels):
            raise FeatureError(
                f"the scaler has {len(self.channels)} channels, the array "
                f"{values.shape[0]}; build the features with the same scaler"
            )
        mean = np.asarray(self.mean)[:, None, None]
        std = np.asarray(self.std)[:, None, None]
        return (np.asarray(values, dtype="float64") - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the statistics (see :meth:`from_dict`)."""
        return {
            "version": SCALER_VERSION,
            "channels": list(self.channels),
            "mean": list(self.mean),
            "std": list(self.std),
            "trend_extent": None
            if self.trend_extent is None
            else list(self.trend_extent),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureScaler:
        """Rebuild a scaler from :meth:`to_dict`'s output."""
        version = data.get("version")
        if version != SCALER_VERSION:
            raise ConfigError(
                f"feature scaler version {version!r} is not {SCALER_VERSION}; "
                "refit the features with this version of the engine"
            )
        extent = data.get("trend_extent")
        return cls(
            channels=tuple(data["channels"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            trend_extent=None if extent is None else tuple(float(v) for v in extent),
        )


@dataclass(frozen=True)
class FeatureSet:
    """Z-scored feature channels of a grid.

    Attributes
    ----------
    values : numpy.ndarray
        Shape ``(C, H, W)``, float32, z-scored, finite (filled cells are 0);
        ``H`` rows from north to south and ``W`` columns from west to east,
        as the grid's ``("y", "x")``.
    channels : tuple of str
        ``C`` channel names.
    scaler : FeatureScaler
        The statistics used, to save beside the model.
    filled : numpy.ndarray
        Shape ``(H, W)``, bool: cells where any channel was NaN and filled.
    """

    values: np.ndarray
    channels: tuple[str, ...]
    scaler: FeatureScaler
    filled: np.ndarray = field(repr=False)


def raw_features(
    grid: xr.Dataset,
    *,
    config: FeatureConfig | None = None,
    trend_extent: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, list[str], tuple[float, float, float, float] | None]:
    """Build the unscaled feature channels of a grid.

    Parameters
    ----------
    grid : xarray.Dataset
        Dims ``("y", "x")``, at least 2 x 2 cells, cell-centre coordinates
        in metres (EPSG:3413), ``y`` decreasing; the variables named in
        ``config.fields`` (NaN nodata).
    config : FeatureConfig, optional
        Channels to build; the defaults when omitted.
    trend_extent : tuple of float, optional
        ``(x_min, x_max, y_min, y_max)`` in metres to scale the trend
        coordinates over; the grid's own cell-centre extent when omitted.

    Returns
    -------
    values : numpy.ndarray
        Shape ``(C, H, W)``, float64, in the channels' units, NaN kept.
    channels : list of str
        ``C`` names (see the module docstring).
    trend_extent : tuple of float or None
        The extent used, None without trend channels.

    Warns
    -----
    MissingFeatureWarning
        For each field absent from the grid or NaN everywhere; it is dropped
        with its gradients.
    """
    config = FeatureConfig() if config is None else config
    if grid["x"].size < 2 or grid["y"].size < 2:
        raise FeatureError(
            f"features need at least 2 x 2 cells for the gradients, got "
            f"{grid['y'].size} x {grid['x'].size}; choose a larger region"
        )
    x = grid["x"].to_numpy().astype("float64")
    y = grid["y"].to_numpy().astype("float64")
    names: list[str] = []
    arrays: list[np.ndarray] = []

    # Surface fields and their gradients, dropping the missing ones.
    for name in config.fields:
        values = _field(grid, name)
        if values is None:
            continue
        names.append(name)
        arrays.append(values)
        if config.gradients:
            # np.gradient with the coordinates: per metre, and the
            # decreasing y gives the derivative with respect to northing.
            d_dy, d_dx = np.gradient(values, y, x)
            names += [f"{name}_gradient_x", f"{name}_gradient_y"]
            arrays += [d_dx, d_dy]

    # Trend surface of the scaled cell-centre coordinates.
    extent = None
    if config.trend_degree > 0:
        extent = trend_extent or (x.min(), x.max(), y.min(), y.max())
        extent = tuple(float(v) for v in extent)
        x_scaled = _to_unit(x, extent[0], extent[1])
        y_scaled = _to_unit(y, extent[2], extent[3])
        yy, xx = np.meshgrid(y_scaled, x_scaled, indexing="ij")
        for total in range(1, config.trend_degree + 1):
            for power_y in range(total + 1):
                arrays.append(xx ** (total - power_y) * yy**power_y)
        names += trend_names(config.trend_degree)

    # BedMachine bed and error, without gradients.
    if config.include_bedmachine:
        for name in BEDMACHINE_FIELDS:
            values = _field(grid, name)
            if values is not None:
                names.append(name)
                arrays.append(values)

    if not arrays:
        raise FeatureError(
            "the grid gives no feature channel: every field is missing or NaN "
            "and the trend is off; check the grid's variables"
        )
    return np.stack(arrays), names, extent


def _field(grid: xr.Dataset, name: str) -> np.ndarray | None:
    """A grid variable as float64 (y, x), or None with a warning if unusable."""
    if name not in grid:
        warnings.warn(
            f"the grid has no '{name}'; its feature channels are left out",
            MissingFeatureWarning,
            stacklevel=3,
        )
        return None
    values = grid[name].transpose("y", "x").to_numpy().astype("float64")
    if not np.isfinite(values).any():
        warnings.warn(
            f"'{name}' is NaN in every cell; its feature channels are left out",
            MissingFeatureWarning,
            stacklevel=3,
        )
        return None
    return values


def _to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` linearly onto ``[-1, 1]``."""
    if high <= low:
        raise FeatureError(
            f"the trend extent {low}..{high} is empty; use a grid of at least "
            "2 x 2 cells"
        )
    return 2.0 * (values - low) / (high - low) - 1.0


def make_features(
    grid: xr.Dataset,
    *,
    config: FeatureConfig | None = None,
    scaler: FeatureScaler | None = None,
) -> FeatureSet:
    """Build the z-scored feature channels of a grid.

    Parameters
    ----------
    grid : xarray.Dataset
        See :func:`raw_features`.
    config : FeatureConfig, optional
        Channels to build; the defaults when omitted.
    scaler : FeatureScaler, optional
        Statistics from training. When given, the output has exactly its
        channels, in its order, scaled with its statistics and its trend
        extent; when omitted, a scaler is fitted on this grid.

    Returns
    -------
    FeatureSet
        ``values`` of shape ``(C, H, W)``, float32, finite; ``channels``;
        the ``scaler``; the ``filled`` cells.

    Raises
    ------
    FeatureError
        If the scaler names a channel this grid and config cannot give.

    Warns
    -----
    MissingFeatureWarning
        A field is absent or NaN everywhere (see :func:`raw_features`).
    FilledFeatureWarning
        Some cells were NaN and set to the channel mean.
    """
    # Raw channels, with the training trend extent when a scaler is given.
    extent = None if scaler is None else scaler.trend_extent
    values, names, extent = raw_features(grid, config=config, trend_extent=extent)

    # Fit the statistics, or pick the scaler's channels in its order.
    if scaler is None:
        scaler = FeatureScaler.fit(values, names, trend_extent=extent)
    else:
        missing = [c for c in scaler.channels if c not in names]
        if missing:
            raise FeatureError(
                f"the model was trained with channels this grid cannot give: "
                f"{missing}; use a grid with those variables, or a FeatureConfig "
                "that builds them"
            )
        values = values[[names.index(c) for c in scaler.channels]]
        names = list(scaler.channels)

    # Z-score, then fill NaN with the channel mean (0 after scaling).
    scaled = scaler.transform(values)
    gaps = ~np.isfinite(scaled)
    if gaps.any():
        counts = {n: int(c) for n, c in zip(names, gaps.sum(axis=(1, 2))) if c}
        warnings.warn(
            f"NaN cells set to the channel mean (0 after z-scoring): {counts}",
            FilledFeatureWarning,
            stacklevel=2,
        )
        scaled[gaps] = 0.0
    log.debug("features: %d channels on %s cells", len(names), scaled.shape[1:])
    return FeatureSet(
        values=scaled.astype("float32"),
        channels=tuple(names),
        scaler=scaler,
        filled=gaps.any(axis=0),
    )
