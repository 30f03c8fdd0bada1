"""Tiled prediction of a region's bed, with an uncertainty map, and writers.

:func:`predict_region` runs a trained network over a region of any size in
overlapping square tiles of the 150 m input grid and blends the tiles into
one map on the fine (subgrid) grid of the model, with no seams:

- **Tiles.** Tiles of ``tile x tile`` input cells start every ``tile -
  overlap`` cells; the last tile of a row or column is moved back so that
  it ends on the grid's edge. A grid smaller than a tile is one tile.
- **Blending.** Each tile's output is multiplied by a weight window, the
  outer product of two 1-D tapers, and the weighted outputs and the weights
  are summed; the map is the sum of the outputs over the sum of the
  weights. Along an edge that another tile overlaps, a taper is 0 in the
  outer ``margin`` cells, rises as a raised cosine over the next ``ramp``
  cells and is 1 beyond; along the grid's own edges it is 1. ``margin`` is
  the network's receptive radius (:func:`receptive_radius`, 10 input cells
  for the five residual blocks), so that no cell whose output feels a
  tile's zero padding gets any weight, and ``ramp = overlap - 2 margin``.
  Two neighbouring tiles' ramps then add up to exactly 1, and for a
  deterministic network the tiled map equals the whole-grid prediction up
  to float round-off. An overlap below ``2 margin + 1`` is allowed, with a
  :class:`TileSeamWarning`.
- **Streaming.** Tiles are processed a row band at a time. The sums are
  kept for the rows of the current band only, and rows that no later band
  reaches are normalised and written into the output arrays. Inputs are
  read tile by tile from a :class:`FeatureSource`: with a
  :class:`GridSource` the features of a tile are built from the grid's
  window (plus a one-cell halo for the gradients) when the tile is run,
  so a lazily opened grid is read one window at a time. Working memory is
  one row band of tiles, whatever the region's height.

Uncertainty: the default is **MC dropout** (``mc_samples = N``): ``N``
forward passes of the one trained model with its dropout layers active and
batch norm in eval mode, giving a mean and a standard deviation per cell.
It costs nothing at training time, and on CPUs training a single model is
already the expensive step, so it is the one way to get an uncertainty map
from every trained model. A small **deep ensemble** (a list of models, each
trained from another seed) is usually better calibrated (Lakshminarayanan
et al. 2017) but costs one training per member; pass a list to use it
(``mc_samples`` then adds MC samples within each member, pooled). With a
single model and ``mc_samples = 0`` the map is deterministic and the
uncertainty variables are NaN.

The 90 % interval is ``mean -/+ 1.645 std``: it assumes that the error of a
cell is Gaussian with that std. MC-dropout stds are often too small;
:func:`calibrate_sigma` estimates a factor from held-out radar residuals
and :func:`scale_uncertainty` applies it.

Writers: :func:`write_netcdf` (CF, EPSG:3413 grid mapping, float32, zlib)
and :func:`write_geotiff`, both atomic (a temporary file in the target's
folder, then ``os.replace``).

References
----------
Gal and Ghahramani, Dropout as a Bayesian approximation, ICML 2016.
Lakshminarayanan, Pritzel and Blundell, Simple and scalable predictive
uncertainty estimation using deep ensembles, NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import torch
import xarray as xr
from torch import nn

from engine.atomic import atomic_write
from engine.bedtopo.errors import ConfigError, FeatureError, FilledFeatureWarning
from engine.bedtopo.features import (
    BEDMACHINE_FIELDS,
    FeatureConfig,
    FeatureScaler,
    FeatureSet,
    raw_features,
)
from engine.bedtopo.targets import fine_coordinates
from engine.data.errors import DataWarning
from engine.data.grids import CRS, finish_grid

__all__ = [
    "Z_90",
    "TileSeamWarning",
    "UncertaintyWarning",
    "FeatureSource",
    "ArraySource",
    "GridSource",
    "receptive_radius",
    "tile_weights",
    "predict_region",
    "calibrate_sigma",
    "scale_uncertainty",
    "write_netcdf",
    "write_geotiff",
]

log = logging.getLogger(__name__)

#: Standard normal quantile of 0.95: the 90 % interval is mean -/+ Z_90 std.
Z_90 = 1.6448536269514722

#: Units and long names of the output variables (CF).
OUTPUT_ATTRS: dict[str, dict[str, str]] = {
    "bed": {"units": "m", "long_name": "predicted bed elevation"},
    "bed_std": {
        "units": "m",
        "long_name": "standard deviation of the predicted bed elevation",
    },
    "bed_lower_90": {
        "units": "m",
        "long_name": "lower bound (5 %) of the 90 % interval of the bed elevation",
    },
    "bed_upper_90": {
        "units": "m",
        "long_name": "upper bound (95 %) of the 90 % interval of the bed elevation",
    },
}


class TileSeamWarning(DataWarning):
    """The tile overlap is too small for the network's receptive field."""


class UncertaintyWarning(DataWarning):
    """The uncertainty map cannot carry information (e.g. no dropout)."""


@runtime_checkable
class FeatureSource(Protocol):
    """Where :func:`predict_region` reads a tile's inputs from.

    Attributes
    ----------
    x, y : numpy.ndarray
        Cell centres of the 150 m input grid, m (EPSG:3413); ``x``
        increasing (``W`` values), ``y`` decreasing (``H`` values).
    """

    x: np.ndarray
    y: np.ndarray

    def read(
        self, rows: slice, cols: slice
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """Inputs of the input cells ``[rows, cols]``.

        Returns
        -------
        features : numpy.ndarray
            Shape ``(C, h, w)``, float32, z-scored, finite.
        bedmachine_bed : numpy.ndarray or None
            Shape ``(h, w)``, BedMachine bed, m, NaN where unknown; None
            when the source has none.
        filled : bool
            Whether any feature cell of the window was NaN and filled.
        """
        ...


class ArraySource:
    """Inputs held in (C, H, W) arrays, sliced per tile.

    A ``numpy.memmap`` works too: only a tile's slice is read at a time.

    Parameters
    ----------
    features : numpy.ndarray or FeatureSet
        Shape ``(C, H, W)``, z-scored and finite (as from
        :func:`engine.bedtopo.features.make_features`).
    x, y : numpy.ndarray
        ``W`` and ``H`` cell centres, m (EPSG:3413), ``x`` increasing, ``y``
        decreasing.
    bedmachine_bed : numpy.ndarray, optional
        Shape ``(H, W)``, BedMachine bed, m, NaN where unknown; needed by
        models that add a correction to it (DeepTopoNet).
    """

    def __init__(
        self,
        features: np.ndarray | FeatureSet,
        *,
        x: np.ndarray,
        y: np.ndarray,
        bedmachine_bed: np.ndarray | None = None,
    ) -> None:
        values = features.values if isinstance(features, FeatureSet) else features
        if values.ndim != 3:
            raise FeatureError(
                f"features must have shape (C, H, W), got {values.shape}"
            )
        self.x = np.asarray(x, dtype="float64")
        self.y = np.asarray(y, dtype="float64")
        if values.shape[1:] != (self.y.size, self.x.size):
            raise FeatureError(
                f"features of {values.shape[1:]} cells do not match the "
                f"{self.y.size} y and {self.x.size} x coordinates"
            )
        if bedmachine_bed is not None and bedmachine_bed.shape != values.shape[1:]:
            raise FeatureError(
                f"bedmachine_bed has shape {bedmachine_bed.shape}, the features "
                f"{values.shape[1:]}; pass the bed of the same grid"
            )
        self.values = values
        self.bedmachine_bed = bedmachine_bed

    def read(
        self, rows: slice, cols: slice
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """Slice the arrays; see :class:`FeatureSource`."""
        features = np.asarray(self.values[:, rows, cols], dtype="float32")
        bed = None
        if self.bedmachine_bed is not None:
            bed = np.asarray(self.bedmachine_bed[rows, cols], dtype="float32")
        return features, bed, False


class GridSource:
    """Features built per tile from a grid window, as training scaled them.

    Each tile reads its window of the grid plus a one-cell halo (so that
    the gradients at the window's edge are the central differences of the
    whole grid), builds the raw channels with the scaler's trend extent,
    z-scores them with the scaler and fills NaN with 0, then drops the
    halo. The result equals the same cells of
    ``make_features(grid, scaler=scaler)``; a field that is NaN over a
    whole window is filled there rather than dropped.

    Parameters
    ----------
    grid : xarray.Dataset
        Dims ``("y", "x")``, ``y`` decreasing (``CONVENTIONS.md``), with
        the fields the scaler's channels come from; may be lazy (dask or a
        lazily opened file).
    scaler : FeatureScaler
        The statistics saved with the model; it fixes the channels, their
        order and the trend extent.
    """

    def __init__(self, grid: xr.Dataset, *, scaler: FeatureScaler) -> None:
        self.grid = grid.transpose("y", "x", ...)
        self.scaler = scaler
        self.config = _config_from_scaler(scaler)
        self.x = self.grid["x"].to_numpy().astype("float64")
        self.y = self.grid["y"].to_numpy().astype("float64")
        missing = [f for f in self.config.fields if f not in self.grid]
        if self.config.include_bedmachine:
            missing += [f for f in BEDMACHINE_FIELDS if f not in self.grid]
        if missing:
            raise FeatureError(
                f"the model was trained with fields this grid lacks: {missing}; "
                "use a grid that has them"
            )

    def read(
        self, rows: slice, cols: slice
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """Build the window's features; see :class:`FeatureSource`."""
        height, width = self.y.size, self.x.size

        # The window and a one-cell halo, clipped to the grid.
        top, left = max(rows.start - 1, 0), max(cols.start - 1, 0)
        bottom, right = min(rows.stop + 1, height), min(cols.stop + 1, width)
        window = self.grid.isel(y=slice(top, bottom), x=slice(left, right))

        # Raw channels in the scaler's order; a field that is NaN over the
        # whole window is dropped by raw_features and comes back as NaN.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            values, names, _ = raw_features(
                window, config=self.config, trend_extent=self.scaler.trend_extent
            )
        shape = values.shape[1:]
        stacked = np.stack(
            [
                values[names.index(c)] if c in names else np.full(shape, np.nan)
                for c in self.scaler.channels
            ]
        )

        # Z-score, fill NaN with 0 (the channel mean), drop the halo.
        scaled = self.scaler.transform(stacked)
        inner = (
            slice(rows.start - top, rows.stop - top),
            slice(cols.start - left, cols.stop - left),
        )
        scaled = scaled[:, inner[0], inner[1]]
        gaps = ~np.isfinite(scaled)
        scaled[gaps] = 0.0

        bed = None
        if "bed_bedmachine" in self.grid:
            bed = (
                window["bed_bedmachine"].to_numpy()[inner].astype("float32", copy=False)
            )
        return scaled.astype("float32"), bed, bool(gaps.any())


def _config_from_scaler(scaler: FeatureScaler) -> FeatureConfig:
    """The FeatureConfig whose channels include every channel of a scaler."""
    channels = scaler.channels
    trend = [c for c in channels if c.startswith("trend_")]
    fields = tuple(
        c
        for c in channels
        if not c.startswith("trend_")
        and "_gradient_" not in c
        and c not in BEDMACHINE_FIELDS
    )
    gradients = any("_gradient_" in c for c in channels)

    # (d + 1) (d + 2) / 2 - 1 trend channels for degree d.
    degree = 0
    while (degree + 1) * (degree + 2) // 2 - 1 < len(trend):
        degree += 1
    if not fields:
        # A model of trend terms only: FeatureConfig needs a field; take the
        # first surface field and leave its channels out by the scaler.
        fields = ("surface_elevation",)
    return FeatureConfig(
        fields=fields,
        gradients=gradients,
        trend_degree=degree,
        include_bedmachine=any(c in BEDMACHINE_FIELDS for c in channels),
    )


def receptive_radius(model: nn.Module) -> int:
    """Receptive radius of a convolutional network, in input cells.

    The sum over the model's 2-D convolutions of ``(kernel - 1) dilation /
    2``: exact for a chain of convolutions and an upper bound when some of
    them sit in parallel branches (the 1x1 skips of a residual block add
    nothing), plus the model's ``upsample_radius`` (cells an interpolating
    subgrid output reaches, 0 when it has none). Pooling and strides are
    not accounted for.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    int
        Cells of the input grid on each side of a cell that can change its
        output; 10 for the five residual blocks of DeepTopoNet, 11 with
        its smooth subgrid output at factor 2 or 3.
    """
    radius = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            reach = [
                (k - 1) * d // 2
                for k, d in zip(module.kernel_size, module.dilation, strict=True)
            ]
            radius += max(reach)
    return radius + int(getattr(model, "upsample_radius", 0))


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """First cells of the tiles along one axis; the last ends on the edge."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    return [*range(0, length - tile, stride), length - tile]


def _taper(
    length: int, *, margin: int, ramp: int, lead: bool, trail: bool
) -> np.ndarray:
    """1-D weights: 0 in the margin, raised-cosine ramp, 1 inside."""
    index = np.arange(length, dtype="float64")
    weights = np.ones(length)
    for tapered, distance in ((lead, index), (trail, length - 1 - index)):
        if not tapered:
            continue
        if ramp > 0:
            rise = 0.5 - 0.5 * np.cos(np.pi * (distance - margin + 0.5) / ramp)
            rise = np.where(distance < margin + ramp, rise, 1.0)
        else:
            rise = np.ones(length)
        weights = np.minimum(weights, np.where(distance < margin, 0.0, rise))
    return weights


def tile_weights(
    shape: tuple[int, int],
    *,
    margin: int,
    ramp: int,
    edges: tuple[bool, bool, bool, bool] = (True, True, True, True),
) -> np.ndarray:
    """The blending window of one tile.

    Parameters
    ----------
    shape : tuple of int
        ``(h, w)`` cells of the tile (on the grid the weights apply to).
    margin, ramp : int
        Cells of zero weight along an overlapped edge, then cells of the
        raised-cosine rise to 1.
    edges : tuple of bool
        Whether the ``(north, south, west, east)`` edges are overlapped by
        another tile (tapered); a grid edge is not.

    Returns
    -------
    numpy.ndarray
        Shape ``(h, w)``, float64 weights in [0, 1], 1 in the tile centre.

    Examples
    --------
    >>> edges = (False, False, True, False)
    >>> tile_weights((1, 6), margin=1, ramp=1, edges=edges)
    array([[0. , 0.5, 1. , 1. , 1. , 1. ]])
    """
    north, south, west, east = edges
    rows = _taper(shape[0], margin=margin, ramp=ramp, lead=north, trail=south)
    cols = _taper(shape[1], margin=margin, ramp=ramp, lead=west, trail=east)
    return rows[:, None] * cols[None, :]


def _native_factor(model: nn.Module) -> int:
    """The subgrid factor a model outputs (1 for a model without one)."""
    return int(getattr(getattr(model, "config", None), "factor", 1))


def _needs_bedmachine(model: nn.Module) -> bool:
    """Whether the model's forward takes BedMachine's bed after the features."""
    parameters = inspect.signature(model.forward).parameters.values()
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2


def _is_dropout(module: nn.Module) -> bool:
    """Whether a module is one of torch's dropout layers."""
    return isinstance(module, nn.modules.dropout._DropoutNd)


def _has_dropout(model: nn.Module) -> bool:
    """Whether a model has a dropout layer with a probability above 0."""
    return any(_is_dropout(m) and m.p > 0 for m in model.modules())


def _model_info(models: Sequence[nn.Module]) -> dict[str, Any]:
    """NetCDF-friendly attributes that describe the models."""
    first = models[0]
    config = getattr(first, "config", None)
    info: dict[str, Any] = {
        "model_class": type(first).__name__,
        "model_parameters": int(sum(p.numel() for p in first.parameters())),
        "ensemble_members": len(models),
    }
    if config is not None and dataclasses.is_dataclass(config):
        info["model_config"] = json.dumps(dataclasses.asdict(config))
    return info


def _resolve_factor(models: Sequence[nn.Module], factor: int | None) -> int:
    """The output factor, checked against what each model gives."""
    natives = {_native_factor(m) for m in models}
    wanted = max(natives) if factor is None else factor
    if not isinstance(wanted, int) or wanted < 1:
        raise ConfigError(f"factor must be a positive integer, got {factor!r}")
    odd = sorted(n for n in natives if n not in (1, wanted))
    if odd:
        raise ConfigError(
            f"models with subgrid factor {odd} cannot give factor {wanted}; "
            "pass factor=None to use the models' own factor"
        )
    return wanted


def _forward(
    model: nn.Module,
    features: torch.Tensor,
    bed: torch.Tensor | None,
    factor: int,
) -> torch.Tensor:
    """One forward pass, brought to the output factor: ``(B, f h, f w)``."""
    if _needs_bedmachine(model):
        if bed is None:
            raise FeatureError(
                f"{type(model).__name__} adds a correction to BedMachine's bed, "
                "and the source has none; use a grid with bed_bedmachine or pass "
                "bedmachine_bed"
            )
        out = model(features, bed[:, None])
    else:
        out = model(features)

    # A 150 m model on a finer output grid: each cell repeated f x f times.
    native = out.shape[-1] // features.shape[-1]
    if native != factor:
        out = out.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return out[:, 0]


@dataclasses.dataclass
class _Band:
    """Running sums of the rows of one or more row bands, fine grid."""

    row0: int
    weight: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @classmethod
    def empty(cls, row0: int, width: int) -> _Band:
        zeros = np.zeros((0, width))
        return cls(row0=row0, weight=zeros, mean=zeros.copy(), var=zeros.copy())

    def extend(self, row_stop: int) -> None:
        """Add zero rows so that the sums reach fine row ``row_stop``."""
        extra = row_stop - self.row0 - self.weight.shape[0]
        if extra > 0:
            pad = np.zeros((extra, self.weight.shape[1]))
            self.weight = np.vstack([self.weight, pad])
            self.mean = np.vstack([self.mean, pad])
            self.var = np.vstack([self.var, pad])

    def pop(self, row_stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised mean and variance of rows before ``row_stop``; drop them."""
        n = row_stop - self.row0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.mean[:n] / self.weight[:n]
            var = self.var[:n] / self.weight[:n]
        self.weight, self.mean, self.var = (
            self.weight[n:],
            self.mean[n:],
            self.var[n:],
        )
        self.row0 = row_stop
        return mean, var


def predict_region(
    model: nn.Module | Sequence[nn.Module],
    features: np.ndarray | FeatureSet | xr.Dataset | FeatureSource,
    *,
    scaler: FeatureScaler | None = None,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    bedmachine_bed: np.ndarray | None = None,
    factor: int | None = None,
    tile: int = 128,
    overlap: int = 32,
    mc_samples: int = 0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Predict the bed of a region in blended tiles, with its uncertainty.

    See the module docstring for the tiling, the blending and the choice of
    MC dropout as the default uncertainty.

    Parameters
    ----------
    model : torch.nn.Module or sequence of torch.nn.Module
        A trained :class:`~engine.bedtopo.models.DeepTopoNet` or
        :class:`~engine.bedtopo.models.PaperModel` (or any network taking
        ``(B, C, h, w)`` features, and BedMachine's bed ``(B, 1, h, w)`` as
        a second argument when its forward has one), or a list of such
        models trained with the same features: a deep ensemble. Modules are
        put in eval mode and on ``device`` for the run, and their training
        flags and device are restored afterwards.
    features : numpy.ndarray, FeatureSet, xarray.Dataset or FeatureSource
        The inputs on the 150 m grid: z-scored ``(C, H, W)`` channels (with
        ``x``, ``y`` and, for DeepTopoNet, ``bedmachine_bed``), a grid (with
        ``scaler``; features are built per tile, see :class:`GridSource`),
        or any :class:`FeatureSource`.
    scaler : FeatureScaler, optional
        The scaler saved with the model; needed when ``features`` is a grid.
    x, y : numpy.ndarray, optional
        Cell centres (m, EPSG:3413, ``x`` increasing, ``y`` decreasing) of
        array features.
    bedmachine_bed : numpy.ndarray, optional
        ``(H, W)`` BedMachine bed (m) beside array features.
    factor : int, optional
        Output cells per input cell along each axis; the models' own factor
        when omitted. A 150 m model asked for a finer grid repeats each of
        its cells ``factor x factor`` times.
    tile : int
        Tile side in input cells, > ``overlap``.
    overlap : int
        Input cells shared by neighbouring tiles, >= 0; at least ``2 R +
        1`` for a seamless and exact blend, with ``R`` the receptive radius
        (21 for DeepTopoNet).
    mc_samples : int
        0 for no MC dropout, else at least 2 forward passes per model with
        dropout on (batch norm stays in eval mode).
    batch_size : int
        Forward passes (tile copies) per batch.
    device : str or torch.device
        Where the network runs (``"cpu"``, ``"cuda"``, ...).
    seed : int
        Seed of the dropout masks; the global torch RNG is left untouched.
    progress : callable, optional
        Called as ``progress(done, total)`` after each tile.

    Returns
    -------
    xarray.Dataset
        Dims ``("y", "x")`` of ``(factor H, factor W)`` fine cells: cell
        centres of the ``factor x factor`` sub-cells of each input cell, m,
        ``x`` increasing, ``y`` decreasing, CRS EPSG:3413 (rioxarray).
        Float32 variables, m: ``bed`` (mean over passes and members),
        ``bed_std`` (their standard deviation, ``ddof = 0``, NaN for a
        deterministic map), ``bed_lower_90`` and ``bed_upper_90`` (``bed
        -/+ 1.645 bed_std``, a Gaussian assumption). NaN where a model that
        needs BedMachine's bed had none. Attributes: ``grid_spacing`` (m),
        ``factor``, ``uncertainty`` (``"mc_dropout"``, ``"ensemble"``,
        ``"ensemble+mc_dropout"`` or ``"none"``), ``mc_samples``,
        ``model_class``, ``model_parameters``, ``model_config`` (JSON),
        ``ensemble_members``, ``tile``, ``overlap``, ``tile_margin``,
        ``interval``.

    Raises
    ------
    ConfigError
        Bad tile, overlap, mc_samples or factor.
    FeatureError
        Inputs missing or of the wrong shape.

    Warns
    -----
    TileSeamWarning
        ``overlap`` is below ``2 R + 1``: tile edges may show.
    UncertaintyWarning
        ``mc_samples > 0`` with a model without dropout: its std is 0.
    FilledFeatureWarning
        Some feature cells of a grid were NaN and filled with the mean.

    Notes
    -----
    Across overlapping tiles, the blended std is the weighted mean of the
    tiles' variances (square-rooted), not the spread of the tiles' means:
    the latter is Monte Carlo noise of the mean, not uncertainty of the bed.
    """
    models = list(model) if isinstance(model, (list, tuple, nn.ModuleList)) else [model]
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise ConfigError("model must be a torch module or a non-empty list of them")
    _check_tiling(tile, overlap, mc_samples, batch_size)
    source = _as_source(
        features, scaler=scaler, x=x, y=y, bedmachine_bed=bedmachine_bed
    )
    factor = _resolve_factor(models, factor)
    device = torch.device(device)
    height, width = source.y.size, source.x.size

    # Blending margins from the receptive field.
    radius = max(receptive_radius(m) for m in models)
    margin = min(radius, max((overlap - 1) // 2, 0))
    ramp = overlap - 2 * margin
    if margin < radius and (height > tile or width > tile):
        warnings.warn(
            f"an overlap of {overlap} cells is below 2 x {radius} + 1 for a "
            f"network of receptive radius {radius}: outputs within {radius} "
            "cells of a tile's edge feel its padding and seams may show; raise "
            f"overlap to at least {2 * radius + 1}",
            TileSeamWarning,
            stacklevel=2,
        )

    # Tile layout: row bands of equal tiles.
    tile_h, tile_w = min(tile, height), min(tile, width)
    row_starts = _starts(height, tile, overlap)
    col_starts = _starts(width, tile, overlap)
    total = len(row_starts) * len(col_starts)
    passes = mc_samples if mc_samples > 0 else 1
    per_batch = max(1, batch_size // passes)
    stochastic = mc_samples > 0
    if stochastic:
        for member in models:
            if not _has_dropout(member):
                warnings.warn(
                    f"mc_samples={mc_samples} with a {type(member).__name__} "
                    "that has no dropout: its passes are identical and add 0 to "
                    "bed_std; train with dropout > 0 or use an ensemble",
                    UncertaintyWarning,
                    stacklevel=2,
                )

    # Output arrays on the fine grid.
    fine_h, fine_w = factor * height, factor * width
    bed_out = np.full((fine_h, fine_w), np.nan, dtype="float32")
    var_out = np.full((fine_h, fine_w), np.nan, dtype="float32")
    weights = {
        edges: tile_weights(
            (factor * tile_h, factor * tile_w),
            margin=factor * margin,
            ramp=factor * ramp,
            edges=edges,
        )
        for edges in {
            (r > 0, r + tile_h < height, c > 0, c + tile_w < width)
            for r in row_starts
            for c in col_starts
        }
    }

    rng_devices = [device.index or 0] if device.type == "cuda" else []
    any_filled = False
    done = 0
    states: list[dict[str, Any]] = []
    try:
        for member in models:
            state = _enter_inference(member, device=device, stochastic=stochastic)
            states.append(state)
        with torch.random.fork_rng(devices=rng_devices), torch.inference_mode():
            torch.manual_seed(seed)
            band = _Band.empty(0, fine_w)
            for band_index, r0 in enumerate(row_starts):
                band.extend(factor * (r0 + tile_h))

                # Tiles of the band in batches of per_batch tiles.
                for first in range(0, len(col_starts), per_batch):
                    chunk = col_starts[first : first + per_batch]
                    inputs = [
                        source.read(slice(r0, r0 + tile_h), slice(c0, c0 + tile_w))
                        for c0 in chunk
                    ]
                    any_filled |= any(filled for _, _, filled in inputs)
                    mean, var, invalid = _run_tiles(
                        models,
                        inputs,
                        factor=factor,
                        passes=passes,
                        batch_size=batch_size,
                        device=device,
                    )

                    # Weighted sums into the band.
                    for k, c0 in enumerate(chunk):
                        edges = (
                            r0 > 0,
                            r0 + tile_h < height,
                            c0 > 0,
                            c0 + tile_w < width,
                        )
                        w = weights[edges]
                        top = factor * r0 - band.row0
                        rows = slice(top, top + factor * tile_h)
                        cols = slice(factor * c0, factor * (c0 + tile_w))
                        band.weight[rows, cols] += w
                        band.mean[rows, cols] += w * np.where(invalid[k], 0.0, mean[k])
                        band.var[rows, cols] += w * np.where(invalid[k], 0.0, var[k])
                        band.mean[rows, cols][invalid[k]] = np.nan
                        done += 1
                        if progress is not None:
                            progress(done, total)

                # Rows that no later band reaches are final.
                stop = factor * (
                    row_starts[band_index + 1]
                    if band_index + 1 < len(row_starts)
                    else height
                )
                first_row = band.row0
                mean_rows, var_rows = band.pop(stop)
                bed_out[first_row:stop] = mean_rows
                var_out[first_row:stop] = var_rows
    finally:
        for member, state in zip(models, states, strict=False):
            _leave_inference(member, state)

    if any_filled:
        warnings.warn(
            "some feature cells of the region were NaN and set to the channel "
            "mean (0 after z-scoring); predictions there lean on the other "
            "channels",
            FilledFeatureWarning,
            stacklevel=2,
        )

    # Uncertainty variables.
    method = _uncertainty_method(len(models), mc_samples)
    if method == "none":
        std_out = np.full_like(bed_out, np.nan)
    else:
        std_out = np.sqrt(np.maximum(var_out, 0.0)).astype("float32")
    attrs = {
        **_model_info(models),
        "factor": factor,
        "input_grid_spacing": float(abs(source.x[1] - source.x[0]))
        if source.x.size > 1
        else float("nan"),
        "uncertainty": method,
        "mc_samples": int(mc_samples),
        "tile": int(tile),
        "overlap": int(overlap),
        "tile_margin": int(margin),
        "interval": "bed -/+ 1.645 bed_std: a 90 % interval assuming Gaussian errors",
        "sigma_calibration": 1.0,
    }
    return _assemble(source.x, source.y, factor, bed_out, std_out, attrs)


def _check_tiling(tile: int, overlap: int, mc_samples: int, batch_size: int) -> None:
    """Raise ConfigError on tiling and sampling settings that cannot work."""
    if not isinstance(tile, int) or tile < 1:
        raise ConfigError(f"tile must be a positive integer, got {tile!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < tile:
        raise ConfigError(
            f"overlap must be an integer from 0 to tile - 1 = {tile - 1}, got "
            f"{overlap!r}"
        )
    if not isinstance(mc_samples, int) or mc_samples < 0 or mc_samples == 1:
        raise ConfigError(
            f"mc_samples must be 0 (no MC dropout) or at least 2, got {mc_samples!r}"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


def _as_source(
    features: np.ndarray | FeatureSet | xr.Dataset | FeatureSource,
    *,
    scaler: FeatureScaler | None,
    x: np.ndarray | None,
    y: np.ndarray | None,
    bedmachine_bed: np.ndarray | None,
) -> FeatureSource:
    """Wrap the features argument of predict_region in a FeatureSource."""
    if isinstance(features, xr.Dataset):
        if scaler is None:
            raise FeatureError(
                "a grid needs the scaler saved with the model to build its "
                "features; pass scaler="
            )
        return GridSource(features, scaler=scaler)
    if isinstance(features, (np.ndarray, FeatureSet)):
        if x is None or y is None:
            raise FeatureError(
                "array features need their cell centres; pass x= and y= (m, "
                "EPSG:3413)"
            )
        return ArraySource(features, x=x, y=y, bedmachine_bed=bedmachine_bed)
    if isinstance(features, FeatureSource):
        return features
    raise FeatureError(
        f"features must be an array, a FeatureSet, a grid or a FeatureSource, "
        f"got {type(features).__name__}"
    )


def _enter_inference(
    model: nn.Module, *, device: torch.device, stochastic: bool
) -> dict[str, Any]:
    """Eval mode with dropout on or off, on the device; return the old state."""
    first = next(model.parameters(), None)
    state = {
        "training": {m: m.training for m in model.modules()},
        "device": None if first is None else first.device,
    }
    model.to(device)
    model.eval()
    for module in model.modules():
        if _is_dropout(module):
            module.train(stochastic)
    return state


def _leave_inference(model: nn.Module, state: dict[str, Any]) -> None:
    """Put back the training flags and device saved by _enter_inference."""
    for module, training in state["training"].items():
        module.training = training
    if state["device"] is not None:
        model.to(state["device"])


def _run_tiles(
    models: Sequence[nn.Module],
    inputs: list[tuple[np.ndarray, np.ndarray | None, bool]],
    *,
    factor: int,
    passes: int,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and variance over passes and members of a few equal tiles.

    Returns
    -------
    mean, var : numpy.ndarray
        Shape ``(K, f h, f w)``, float64, m and m^2.
    invalid : numpy.ndarray
        Shape ``(K, f h, f w)``, bool: no BedMachine bed under the cell for
        a model that needs it.
    """
    # Inputs as tensors; NaN BedMachine cells are fed 0 and masked later.
    features = torch.as_tensor(np.stack([f for f, _, _ in inputs])).to(device)
    beds = [b for _, b, _ in inputs]
    bed = None
    invalid = np.zeros((len(inputs), *features.shape[-2:]), dtype=bool)
    if all(b is not None for b in beds):
        stacked = np.stack(beds)
        invalid = ~np.isfinite(stacked)
        bed = torch.as_tensor(np.where(invalid, 0.0, stacked).astype("float32"))
        bed = bed.to(device)
    if not any(_needs_bedmachine(m) for m in models):
        invalid[:] = False
    invalid = invalid.repeat(factor, axis=1).repeat(factor, axis=2)

    # Passes as copies of each tile in a batch; deviations from the first
    # pass keep the variance of identical passes exactly 0.
    count = 0
    total = sum_sq = reference = None
    n_tiles = features.shape[0]
    repeats = max(1, batch_size // n_tiles)
    for member in models:
        remaining = passes
        while remaining > 0:
            r = min(remaining, repeats)
            batch = features.repeat_interleave(r, dim=0)
            batch_bed = None if bed is None else bed.repeat_interleave(r, dim=0)
            out = _forward(member, batch, batch_bed, factor).double().cpu().numpy()
            out = out.reshape(n_tiles, r, *out.shape[-2:])
            if reference is None:
                reference = out[:, 0].copy()
                total = np.zeros_like(reference)
                sum_sq = np.zeros_like(reference)
            deviation = out - reference[:, None]
            total += deviation.sum(axis=1)
            sum_sq += (deviation**2).sum(axis=1)
            count += r
            remaining -= r
    shift = total / count
    var = np.maximum(sum_sq / count - shift**2, 0.0)
    return reference + shift, var, invalid


def _uncertainty_method(n_models: int, mc_samples: int) -> str:
    """Name of the uncertainty a run gives."""
    if n_models > 1:
        return "ensemble+mc_dropout" if mc_samples > 0 else "ensemble"
    return "mc_dropout" if mc_samples > 0 else "none"


def _assemble(
    x: np.ndarray,
    y: np.ndarray,
    factor: int,
    bed: np.ndarray,
    std: np.ndarray,
    attrs: dict[str, Any],
) -> xr.Dataset:
    """The output Dataset on the fine grid, with the interval and the CRS."""
    x_fine, y_fine = (x, y) if factor == 1 else fine_coordinates(x, y, factor=factor)
    lower = (bed - Z_90 * std).astype("float32")
    upper = (bed + Z_90 * std).astype("float32")
    ds = xr.Dataset(
        {
            "bed": (("y", "x"), bed),
            "bed_std": (("y", "x"), std),
            "bed_lower_90": (("y", "x"), lower),
            "bed_upper_90": (("y", "x"), upper),
        },
        coords={"x": x_fine, "y": y_fine},
    )
    for name, var_attrs in OUTPUT_ATTRS.items():
        ds[name].attrs.update(var_attrs)
    ds = finish_grid(ds, origin="predict_region")
    ds.attrs.update(attrs)
    return ds


def calibrate_sigma(
    pred_std: np.ndarray,
    residuals: np.ndarray,
    *,
    method: Literal["rms", "coverage"] = "rms",
) -> float:
    """Factor that makes predicted stds match held-out residuals.

    Parameters
    ----------
    pred_std : numpy.ndarray
        Predicted standard deviation at held-out radar points, m, any
        shape.
    residuals : numpy.ndarray
        Prediction minus radar bed at the same points, m, same shape.
    method : {"rms", "coverage"}
        ``"rms"``: the root mean square of ``residual / std``, the
        maximum-likelihood scale of a Gaussian error model. ``"coverage"``:
        the 90 % quantile of ``|residual| / std`` over 1.645, so that the
        scaled 90 % interval covers 90 % of the points whatever the shape
        of the errors.

    Returns
    -------
    float
        Multiply ``bed_std`` by it (see :func:`scale_uncertainty`); 1 means
        calibrated, > 1 over-confident stds.

    Raises
    ------
    ConfigError
        No point with a finite residual and a std > 0, or an unknown method.
    """
    std = np.asarray(pred_std, dtype="float64").ravel()
    residual = np.asarray(residuals, dtype="float64").ravel()
    if std.shape != residual.shape:
        raise ConfigError(
            f"pred_std and residuals must have one shape, got {std.shape} and "
            f"{residual.shape}"
        )

    # Standardised residuals where both are usable.
    usable = np.isfinite(std) & np.isfinite(residual) & (std > 0)
    if not usable.any():
        raise ConfigError(
            "no held-out point has a finite residual and a std > 0; predict with "
            "mc_samples >= 2 or an ensemble, at points with radar"
        )
    ratio = residual[usable] / std[usable]

    # Scale from the chosen statistic.
    if method == "rms":
        return float(np.sqrt(np.mean(ratio**2)))
    if method == "coverage":
        return float(np.quantile(np.abs(ratio), 0.9) / Z_90)
    raise ConfigError(f"method must be 'rms' or 'coverage', got {method!r}")


def scale_uncertainty(ds: xr.Dataset, factor: float) -> xr.Dataset:
    """Multiply the std by a calibration factor and redo the 90 % interval.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of :func:`predict_region`.
    factor : float
        From :func:`calibrate_sigma`, > 0.

    Returns
    -------
    xarray.Dataset
        A copy with ``bed_std``, ``bed_lower_90`` and ``bed_upper_90``
        rescaled and ``attrs["sigma_calibration"]`` multiplied by
        ``factor``.
    """
    if not (factor > 0 and math.isfinite(factor)):
        raise ConfigError(
            f"the calibration factor must be finite and > 0, got {factor}"
        )
    out = ds.copy()
    out["bed_std"] = (ds["bed_std"] * factor).astype("float32")
    out["bed_lower_90"] = (ds["bed"] - Z_90 * out["bed_std"]).astype("float32")
    out["bed_upper_90"] = (ds["bed"] + Z_90 * out["bed_std"]).astype("float32")
    for name in ("bed_std", "bed_lower_90", "bed_upper_90"):
        out[name].attrs.update(OUTPUT_ATTRS[name])
    previous = float(ds.attrs.get("sigma_calibration", 1.0))
    out.attrs["sigma_calibration"] = previous * factor
    return out


def write_netcdf(ds: xr.Dataset, path: str | PathLike[str]) -> Path:
    """Write a prediction as CF NetCDF-4, atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        Dims ``("y", "x")`` in EPSG:3413 metres, e.g. from
        :func:`predict_region`.
    path : path-like
        The ``.nc`` file; replaced only once the new one is complete.

    Returns
    -------
    pathlib.Path
        The written file. Float variables are float32 with a NaN fill and
        zlib compression, each with ``units``, ``long_name`` and a
        ``grid_mapping`` pointing to the ``spatial_ref`` variable (EPSG:3413,
        written by rioxarray), so that ``xr.open_dataset(path).rio.crs`` is
        EPSG:3413.
    """
    # CRS and CF grid mapping on every variable.
    out = ds.copy()
    out = out.rio.write_crs(CRS).rio.write_coordinate_system()
    for name in out.data_vars:
        variable = out[name]
        if np.issubdtype(variable.dtype, np.floating):
            out[name] = variable.astype("float32")
            out[name].encoding.update(
                {"zlib": True, "complevel": 4, "_FillValue": np.float32(np.nan)}
            )
        out[name].attrs.setdefault("units", "1")
        out[name].attrs.setdefault("long_name", str(name).replace("_", " "))
        out[name].attrs["grid_mapping"] = "spatial_ref"
    for name in ("x", "y"):
        out[name].encoding["_FillValue"] = None
    out.attrs = {k: _netcdf_attr(v) for k, v in out.attrs.items()}
    out.attrs.setdefault("Conventions", "CF-1.8")

    return atomic_write(
        path, lambda temp: out.to_netcdf(temp, engine="netcdf4", format="NETCDF4")
    )


def _netcdf_attr(value: Any) -> Any:
    """An attribute NetCDF can store: numbers and strings as they are."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.number, np.ndarray)):
        return value
    return json.dumps(value, default=str)


def write_geotiff(
    ds: xr.Dataset, path: str | PathLike[str], variable: str = "bed"
) -> Path:
    """Write one variable as a single-band GeoTIFF, atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        Dims ``("y", "x")`` in EPSG:3413 metres.
    path : path-like
        The ``.tif`` file; replaced only once the new one is complete.
    variable : str
        The variable to write (``"bed"``, ``"bed_std"``, ...).

    Returns
    -------
    pathlib.Path
        The written file: float32, NaN nodata, deflate-compressed, with
        the grid's affine transform and EPSG:3413.
    """
    if variable not in ds:
        raise ConfigError(
            f"the dataset has no variable {variable!r}; choose one of "
            f"{sorted(map(str, ds.data_vars))}"
        )

    # One float32 band with the CRS and NaN nodata.
    band = ds[variable].transpose("y", "x").astype("float32")
    band = band.rio.write_crs(CRS).rio.write_nodata(np.nan, encoded=False)
    band.attrs = {
        k: v for k, v in ds[variable].attrs.items() if k in ("units", "long_name")
    }

    return atomic_write(
        path,
        lambda temp: band.rio.to_raster(temp, driver="GTiff", compress="deflate"),
    )
