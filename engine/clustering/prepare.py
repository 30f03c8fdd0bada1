"""Climate cubes to clustering samples, one sample per time step.

DSC and HEDGTC cluster *time steps*: each sample is the set of maps of
several variables at one step. :func:`prepare_samples` turns a climate cube
(see ``engine/data/CONVENTIONS.md``) into those samples, in these steps:

1. keep the chosen variables and check the cube (a time dimension, values
   in every variable, enough steps for the clusters asked for);
2. optionally remove the mean diurnal cycle (hour-of-day mean, for
   sub-daily data) or seasonal cycle (day-of-year or month mean), per cell
   and variable, leaving anomalies;
3. optionally aggregate in time by the mean (``resample="1D"``: daily
   means);
4. find the land cells: those with at least one finite value in every
   variable; the others (sea) are left out or filled, see ``fill``;
5. scale each variable by a z-score whose mean and standard deviation are
   taken over **land cells and all time steps together**, one pair per
   variable, so that the spatial contrasts inside a map are kept (a
   per-cell z-score would remove the mean pattern) and every variable
   weighs the same whatever its units;
6. build the feature matrix ``X`` and, on request, the grid tensor for
   convolutional networks.

Two ways of handling sea cells:

``fill="mask"`` (default)
    ``X`` holds land cells only (no invented values); the grid tensor has
    zeros over sea (the variable's mean after the z-score) and comes with
    the land mask, for networks that need a full rectangle.
``fill="mean"``
    The papers' choice (the released DSC code fills ``NaN`` with the
    mean): sea cells take the variable's mean, and ``X`` holds every cell.
    Sea features are then constant: they add nothing to distances but
    dilute per-feature averages, so internal metrics differ from
    ``fill="mask"``. ``Samples.fill`` records which was used.

Isolated gaps inside land cells (a missing step) are filled with the
variable's mean in both modes; ``Samples.n_filled`` counts them.

Typical use::

    from engine.clustering.prepare import PrepareConfig, prepare_samples

    samples = prepare_samples(cube, PrepareConfig(anomaly="diurnal",
                                                  resample="1D"))
    samples.X            # (time, land cells x variables) float32
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from engine.clustering.errors import (
    ClusteringConfigError,
    ClusteringInputError,
    ClusteringWarning,
)

__all__ = [
    "PrepareConfig",
    "Samples",
    "pad_grid",
    "padded_size",
    "prepare_samples",
    "remove_cycle",
]

#: Kinds of cycle that :func:`remove_cycle` can remove, and the time
#: attribute each groups by.
CYCLES = {"diurnal": "hour", "dayofyear": "dayofyear", "month": "month"}

Fill = Literal["mask", "mean"]
Scaling = Literal["zscore", "none"]
Cycle = Literal["diurnal", "dayofyear", "month"]


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of :func:`prepare_samples`.

    Parameters
    ----------
    variables
        Names of the fields to use, in order; ``None`` uses every data
        variable with a ``time`` dimension, in the cube's order.
    anomaly
        Cycle to remove before clustering: ``"diurnal"`` (mean per hour of
        day; sub-daily data only), ``"dayofyear"`` or ``"month"`` (mean
        per day of year or per month), or ``None`` to keep the raw values.
    resample
        Pandas frequency to aggregate to by the mean (``"1D"``), applied
        after the anomaly; ``None`` keeps the native step.
    scaling
        ``"zscore"`` (per variable, over land cells and all times) or
        ``"none"``.
    fill
        ``"mask"`` (land cells only, zeros plus a mask in the grid) or
        ``"mean"`` (the papers' mean fill of sea cells); see the module
        docstring.
    grid
        Also build the grid tensor ``(time, variable, lat, lon)``.
    pad_levels
        Zero-pad the grid's lat and lon sizes up to a multiple of
        ``2 ** pad_levels`` (for networks that halve the grid that many
        times); 0 leaves the grid as it is.
    """

    variables: tuple[str, ...] | None = None
    anomaly: Cycle | None = None
    resample: str | None = None
    scaling: Scaling = "zscore"
    fill: Fill = "mask"
    grid: bool = False
    pad_levels: int = 0

    def __post_init__(self) -> None:
        """Check the kinds and ranges, naming the accepted values."""
        # Normalise a single name or list to a tuple.
        if isinstance(self.variables, str):
            object.__setattr__(self, "variables", (self.variables,))
        elif self.variables is not None:
            object.__setattr__(self, "variables", tuple(self.variables))

        # Check the options of each kind.
        if self.anomaly is not None and self.anomaly not in CYCLES:
            raise ClusteringConfigError(
                f"anomaly={self.anomaly!r}; use one of {sorted(CYCLES)} or None"
            )
        if self.scaling not in ("zscore", "none"):
            raise ClusteringConfigError(
                f"scaling={self.scaling!r}; use 'zscore' or 'none'"
            )
        if self.fill not in ("mask", "mean"):
            raise ClusteringConfigError(f"fill={self.fill!r}; use 'mask' or 'mean'")
        if self.pad_levels < 0:
            raise ClusteringConfigError("pad_levels must be >= 0")


@dataclass(frozen=True)
class Samples:
    """Clustering samples made from a cube, one per time step.

    Attributes
    ----------
    X
        Feature matrix, shape ``(time, features)``, float32, no ``NaN``.
        Features are ordered variable by variable, and within a variable
        by the cells of ``feature_mask`` in row-major (lat, lon) order:
        ``features = n_variables * feature_mask.sum()``.
    mask
        Land mask, shape ``(lat, lon)``, ``True`` on land.
    feature_mask
        Cells that appear in ``X``, shape ``(lat, lon)``: ``mask`` for
        ``fill="mask"``, every cell for ``fill="mean"``.
    times
        Time of each sample, shape ``(time,)``, datetime64[ns].
    variables
        Variable names, in feature order.
    units
        Units of each variable before scaling.
    lat, lon
        Cell-centre coordinates in degrees, shapes ``(lat,)`` and
        ``(lon,)``.
    mean, scale
        Per-variable statistics of the z-score, shape ``(variables,)``, in
        the variable's units (after anomaly removal): ``x_scaled = (x -
        mean) / scale``. Zeros and ones for ``scaling="none"``.
    fill
        ``"mask"`` or ``"mean"``, as in :class:`PrepareConfig`.
    n_filled
        Number of land values that were missing and filled with the mean.
    grid
        ``(time, variable, lat', lon')`` float32 when asked for, with
        ``lat' >= lat`` and ``lon' >= lon`` after padding; sea is 0
        (``fill="mask"``) or the variable mean (``fill="mean"``; also 0
        once z-scored), padding is always 0.
    grid_mask
        Land mask of the (padded) grid, shape ``(lat', lon')``; padding is
        ``False``. ``None`` without a grid.
    """

    X: np.ndarray
    mask: np.ndarray
    feature_mask: np.ndarray
    times: np.ndarray
    variables: tuple[str, ...]
    units: tuple[str, ...]
    lat: np.ndarray
    lon: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    fill: Fill
    n_filled: int
    grid: np.ndarray | None = None
    grid_mask: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        """Number of samples (time steps)."""
        return int(self.X.shape[0])

    def to_maps(self, vector: np.ndarray, *, unscale: bool = False) -> np.ndarray:
        """Put feature vectors (a centroid, say) back on the grid.

        Parameters
        ----------
        vector
            Shape ``(features,)`` or ``(n, features)``, in scaled units.
        unscale
            Undo the z-score, giving the variables' own units.

        Returns
        -------
        numpy.ndarray
            Shape ``(variables, lat, lon)`` or ``(n, variables, lat,
            lon)``, float64, ``NaN`` outside ``feature_mask``.
        """
        # Split the features into variables, then scatter on the grid.
        values = np.asarray(vector, dtype=np.float64)
        single = values.ndim == 1
        values = values.reshape(-1, len(self.variables), int(self.feature_mask.sum()))
        maps = np.full(
            (values.shape[0], len(self.variables), *self.mask.shape), np.nan
        )
        maps[:, :, self.feature_mask] = values

        # Back to physical units when asked.
        if unscale:
            scale = self.scale[None, :, None, None]
            maps = maps * scale + self.mean[None, :, None, None]
        return maps[0] if single else maps


def prepare_samples(
    cube: xr.Dataset,
    config: PrepareConfig | None = None,
    *,
    n_clusters: int | None = None,
) -> Samples:
    """Turn a climate cube into one sample per time step.

    Parameters
    ----------
    cube
        Climate cube: dims ``("time", "lat", "lon")``, one variable per
        field, ``NaN`` over sea (see ``engine/data/CONVENTIONS.md``).
        Loaded into memory.
    config
        Settings; ``None`` uses the defaults of :class:`PrepareConfig`
        (every variable, no anomaly, z-score, land cells only).
    n_clusters
        Number of clusters that will be asked for; when given, fewer
        samples than this is an error.

    Returns
    -------
    Samples
        Feature matrix ``(time, features)`` float32, masks, times,
        variable names and scaler statistics.

    Raises
    ------
    ClusteringInputError
        The cube has no ``time``, ``lat`` or ``lon`` dimension, a named
        variable is missing, a variable is all ``NaN``, no cell has values
        in every variable, there are fewer time steps than ``n_clusters``,
        or the diurnal cycle is asked of daily or coarser data.
    """
    config = config or PrepareConfig()

    # Step 1: variables and shape checks.
    fields = _select_fields(cube, config.variables)

    # Step 2: anomalies from the diurnal or seasonal cycle.
    if config.anomaly is not None:
        fields = [remove_cycle(field, cycle=config.anomaly) for field in fields]

    # Step 3: aggregation in time by the mean.
    if config.resample is not None:
        fields = [
            field.resample(time=config.resample).mean(keep_attrs=True)
            for field in fields
        ]
    times = fields[0]["time"].values.astype("datetime64[ns]")
    if n_clusters is not None and len(times) < n_clusters:
        raise ClusteringInputError(
            f"{len(times)} time steps for {n_clusters} clusters; each cluster "
            "needs at least one sample: choose a longer period or fewer clusters"
        )

    # Step 4: land cells, those with a value in every variable.
    values = np.stack([field.values for field in fields], axis=1).astype(np.float64)
    finite = np.isfinite(values)
    mask = finite.any(axis=0).all(axis=0)
    if not mask.any():
        raise ClusteringInputError(
            "no cell has values in every variable (their land masks do not "
            "overlap); choose variables on the same land or sea"
        )

    # Step 5: per-variable z-score over land cells and all time steps.
    n_variables = values.shape[1]
    land_values = values[:, :, mask]
    if config.scaling == "zscore":
        mean = np.nanmean(land_values, axis=(0, 2))
        scale = np.nanstd(land_values, axis=(0, 2))
        flat = scale == 0
        if flat.any():
            names = [str(fields[v].name) for v in np.flatnonzero(flat)]
            warnings.warn(
                f"{', '.join(names)}: constant over land and time; kept "
                "unscaled (all zeros after centring)",
                ClusteringWarning,
                stacklevel=2,
            )
            scale = np.where(flat, 1.0, scale)
    else:
        mean = np.zeros(n_variables)
        scale = np.ones(n_variables)
    scaled = (values - mean[None, :, None, None]) / scale[None, :, None, None]

    # Fill gaps inside land with the variable's mean (0 once scaled).
    if config.scaling == "zscore":
        fill_value = np.zeros(n_variables)
    else:
        fill_value = np.nanmean(land_values, axis=(0, 2))
    gaps = ~np.isfinite(scaled) & mask[None, None]
    n_filled = int(gaps.sum())
    scaled = np.where(gaps, fill_value[None, :, None, None], scaled)

    # Step 6: features of land cells only, or of every cell (mean fill).
    if config.fill == "mask":
        feature_mask = mask
        sea_value = np.zeros(n_variables)
    else:
        feature_mask = np.ones_like(mask)
        sea_value = fill_value
    scaled = np.where(mask[None, None], scaled, sea_value[None, :, None, None])
    features = scaled[:, :, feature_mask].reshape(len(times), -1)

    # The grid tensor, padded for networks, on request.
    grid = grid_mask = None
    if config.grid:
        grid, grid_mask = pad_grid(scaled, mask, levels=config.pad_levels)

    return Samples(
        X=features.astype(np.float32),
        mask=mask,
        feature_mask=feature_mask,
        times=times,
        variables=tuple(str(field.name) for field in fields),
        units=tuple(str(field.attrs.get("units", "")) for field in fields),
        lat=np.asarray(cube["lat"].values),
        lon=np.asarray(cube["lon"].values),
        mean=mean,
        scale=scale,
        fill=config.fill,
        n_filled=n_filled,
        grid=grid,
        grid_mask=grid_mask,
    )


def remove_cycle(field: xr.DataArray, *, cycle: Cycle) -> xr.DataArray:
    """Subtract the mean diurnal or seasonal cycle, per cell.

    Parameters
    ----------
    field
        Dims include ``time`` (datetime64), any units.
    cycle
        ``"diurnal"``: mean per hour of day; ``"dayofyear"``: mean per day
        of the year; ``"month"``: mean per calendar month.

    Returns
    -------
    xarray.DataArray
        Same dims, units and attributes; each value minus the mean of the
        values of the same cell at the same hour (day of year, month).
        ``NaN`` stays ``NaN``. The mean of the result per group is 0.

    Raises
    ------
    ClusteringInputError
        ``cycle="diurnal"`` on data whose step is a day or longer, where
        every step has the same hour and the "cycle" would be the mean.
    """
    # Refuse a diurnal cycle on daily or coarser data.
    if cycle not in CYCLES:
        raise ClusteringConfigError(f"cycle={cycle!r}; use one of {sorted(CYCLES)}")
    index = pd.DatetimeIndex(field["time"].values)
    if cycle == "diurnal" and len(index) > 1:
        step = pd.Series(index).diff().median()
        if step >= pd.Timedelta("1D"):
            raise ClusteringInputError(
                f"anomaly='diurnal' on data with a step of {step}; the diurnal "
                "cycle needs sub-daily data: use 'dayofyear' or 'month'"
            )

    # Group by the hour (day of year, month) and subtract each group's mean.
    key = getattr(field["time"].dt, CYCLES[cycle])
    grouped = field.groupby(key.rename("cycle_key"))
    anomaly = grouped - grouped.mean("time")
    anomaly = anomaly.drop_vars("cycle_key", errors="ignore")
    anomaly.attrs = dict(field.attrs)
    anomaly.name = field.name
    return anomaly


def padded_size(size: int, *, levels: int) -> int:
    """Smallest multiple of ``2 ** levels`` at least ``size``.

    Examples
    --------
    >>> padded_size(41, levels=3)
    48
    """
    step = 2**levels
    return -(-size // step) * step


def pad_grid(
    grid: np.ndarray, mask: np.ndarray, *, levels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad a grid's last two axes to a multiple of ``2 ** levels``.

    Padding goes at the end of each axis (north and east rows), as in the
    released DSC code's 41 x 41 to 48 x 48, so that cell ``[i, j]`` keeps
    its index.

    Parameters
    ----------
    grid
        Shape ``(..., lat, lon)``, scaled values without ``NaN``.
    mask
        Land mask, shape ``(lat, lon)``.
    levels
        Number of halvings the padded size must survive.

    Returns
    -------
    grid : numpy.ndarray
        Shape ``(..., lat', lon')`` float32, zeros in the padding.
    mask : numpy.ndarray
        Shape ``(lat', lon')``, ``False`` in the padding.
    """
    # Pad widths of the last two axes, none elsewhere.
    widths = _pad_widths(mask.shape, levels)
    lead = [(0, 0)] * (np.ndim(grid) - 2)

    # Zeros in the grid, sea in the mask.
    padded = np.pad(np.asarray(grid, dtype=np.float32), lead + widths)
    padded_mask = np.pad(np.asarray(mask, dtype=bool), widths)
    return padded, padded_mask


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _pad_widths(shape: tuple[int, ...], levels: int) -> list[tuple[int, int]]:
    """``np.pad`` widths that bring (lat, lon) to multiples of 2**levels."""
    return [(0, padded_size(n, levels=levels) - n) for n in shape]


def _select_fields(
    cube: xr.Dataset, variables: Sequence[str] | None
) -> list[xr.DataArray]:
    """The chosen fields as (time, lat, lon) arrays, checked."""
    # The cube must have the three dims of the convention.
    missing = [dim for dim in ("time", "lat", "lon") if dim not in cube.dims]
    if missing:
        raise ClusteringInputError(
            f"the cube has no {', '.join(missing)} dimension (dims: "
            f"{list(cube.dims)}); clustering needs a climate cube with dims "
            "(time, lat, lon): open it with engine.data.climate.to_cube"
        )

    # Named variables, or every variable that varies in time.
    if variables is None:
        names = [str(n) for n, da in cube.data_vars.items() if "time" in da.dims]
    else:
        unknown = [name for name in variables if name not in cube.data_vars]
        if unknown:
            raise ClusteringInputError(
                f"variable(s) {unknown} not in the cube; it has "
                f"{[str(n) for n in cube.data_vars]}"
            )
        names = list(variables)
    if not names:
        raise ClusteringInputError("the cube has no variable with a time dimension")

    # Each field in (time, lat, lon) order, with values somewhere.
    fields = []
    for name in names:
        field = cube[name]
        if set(field.dims) != {"time", "lat", "lon"}:
            raise ClusteringInputError(
                f"{name} has dims {field.dims}; select one level first so that "
                "it has exactly (time, lat, lon)"
            )
        field = field.transpose("time", "lat", "lon").load()
        if not np.isfinite(field.values).any():
            raise ClusteringInputError(
                f"{name} is NaN everywhere; drop it from the variables or "
                "check the period and region"
            )
        fields.append(field)
    return fields
