"""Scores of a predicted bed: at held-out radar, on the grid, on twins.

Three kinds of score, each a plain ``dict[str, float]`` so that
:func:`comparison_table` can put every method of one split side by side:

- :func:`score_points`, at held-out radar picks: RMSE, MAE, bias
  (prediction minus radar), R^2 and, given an interval, its coverage;
- :func:`score_grid`, against a reference grid (BedMachine, or the true bed
  of a twin): MAE, RMSE, R^2, SSIM, PSNR and the terrain ruggedness index
  (TRI) of both, the metrics of the DeepTopoNet paper;
- :func:`score_twin`, on a synthetic twin: RMSE against the true bed
  everywhere and away from the radar lines.

:func:`sample_at` reads a grid (fine or 150 m) at EPSG:3413 points and
:func:`block_average` brings a fine grid back to 150 m, so that a
subgrid prediction can be scored on BedMachine's grid.

Definitions used (each a choice where the paper is silent):

- R^2 is ``1 - SS_res / SS_tot`` with the reference's own mean.
- SSIM (Wang et al. 2004) uses a Gaussian window of standard deviation
  1.5 cells (truncated at 3.5 sigma, an 11 x 11 window), ``K1 = 0.01``,
  ``K2 = 0.03`` and the data range ``L`` of the reference (max - min over
  the scored cells). Both grids are first shifted by the reference's
  minimum, so that the reference runs from 0 to ``L`` like an image: the
  luminance term depends on the level, and a bed below sea level would
  otherwise give meaningless negative means. Masked or NaN cells are left
  out of the local statistics (normalised convolution) and of the mean.
- PSNR is ``10 log10(L^2 / MSE)`` dB with the same ``L``.
- TRI is the mean absolute difference between a cell and its eight
  neighbours, in metres, on cells whose eight neighbours are all valid
  (the mean-absolute form; Riley et al.'s original is the root of the
  sum of squares). It depends on the cell size: compare grids of one
  spacing only.

References
----------
Wang, Bovik, Sheikh and Simoncelli, Image quality assessment: from error
visibility to structural similarity, IEEE TIP 13 (2004).
Riley, DeGloria and Elliot, A terrain ruggedness index that quantifies
topographic heterogeneity, Intermountain Journal of Sciences 5 (1999).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

from engine.bedtopo.errors import ConfigError

__all__ = [
    "METRIC_ORDER",
    "score_points",
    "interval_coverage",
    "score_grid",
    "ssim",
    "psnr",
    "terrain_ruggedness",
    "sample_at",
    "block_average",
    "distance_to_picks",
    "score_twin",
    "evaluate_bed",
    "comparison_table",
]

log = logging.getLogger(__name__)

#: Column order of :func:`comparison_table` for the metrics it knows.
METRIC_ORDER: tuple[str, ...] = (
    "n",
    "rmse",
    "mae",
    "bias",
    "r2",
    "coverage_90",
    "ssim",
    "psnr",
    "tri_pred",
    "tri_ref",
    "tri_ratio",
    "rmse_true",
    "rmse_true_away",
    "share_away",
)

#: SSIM constants of Wang et al. (2004).
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _paired(
    pred: np.ndarray | xr.DataArray, truth: np.ndarray | xr.DataArray
) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of one shape as float64, or a ConfigError."""
    a = np.asarray(pred, dtype="float64")
    b = np.asarray(truth, dtype="float64")
    if a.shape != b.shape:
        raise ConfigError(
            f"prediction and truth must have one shape, got {a.shape} and {b.shape}; "
            "sample the prediction at the truth's points (sample_at) or bring it "
            "to the reference grid (block_average)"
        )
    return a, b


def _basic(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """n, RMSE, MAE, bias and R^2 of paired finite values."""
    n = pred.size
    if n == 0:
        nan = float("nan")
        return {"n": 0, "rmse": nan, "mae": nan, "bias": nan, "r2": nan}
    error = pred - truth
    total = float(np.sum((truth - truth.mean()) ** 2))
    residual = float(np.sum(error**2))
    return {
        "n": int(n),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "bias": float(np.mean(error)),
        "r2": 1.0 - residual / total if total > 0 else float("nan"),
    }


def interval_coverage(
    truth: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> float:
    """Share of values inside their interval, bounds included.

    Parameters
    ----------
    truth, lower, upper : numpy.ndarray
        One shape, m; points with a NaN in any of them are left out.

    Returns
    -------
    float
        In [0, 1]; NaN when no point is usable. 0.9 is ideal for a 90 %
        interval.
    """
    t = np.asarray(truth, dtype="float64")
    lo = np.asarray(lower, dtype="float64")
    hi = np.asarray(upper, dtype="float64")
    usable = np.isfinite(t) & np.isfinite(lo) & np.isfinite(hi)
    if not usable.any():
        return float("nan")
    inside = (t[usable] >= lo[usable]) & (t[usable] <= hi[usable])
    return float(inside.mean())


def score_points(
    pred_at_points: np.ndarray,
    truth: np.ndarray,
    *,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, float]:
    """Scores at held-out radar points.

    Parameters
    ----------
    pred_at_points : numpy.ndarray
        Predicted bed at the points, m, shape ``(N,)`` (see
        :func:`sample_at`).
    truth : numpy.ndarray
        Radar bed at the points, m, shape ``(N,)``.
    lower, upper : numpy.ndarray, optional
        Bounds of the predicted 90 % interval at the points, m.

    Returns
    -------
    dict
        ``n`` (points with a finite prediction and truth), ``rmse``,
        ``mae``, ``bias`` (mean of prediction minus truth; > 0 means too
        high), all m, ``r2`` and, with bounds, ``coverage_90``.
    """
    pred, true = _paired(pred_at_points, truth)

    # Points where both are known.
    usable = np.isfinite(pred) & np.isfinite(true)
    scores = _basic(pred[usable], true[usable])

    # Coverage of the interval.
    if lower is not None and upper is not None:
        scores["coverage_90"] = interval_coverage(true, lower, upper)
    return scores


def score_grid(
    pred: np.ndarray | xr.DataArray,
    reference: np.ndarray | xr.DataArray,
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Scores of a predicted grid against a reference grid of one shape.

    Parameters
    ----------
    pred, reference : numpy.ndarray or xarray.DataArray
        Shape ``(H, W)``, m, on one grid (e.g. BedMachine's 150 m cells;
        bring a fine prediction there with :func:`block_average`).
    mask : numpy.ndarray, optional
        Shape ``(H, W)``, bool: the cells to score (e.g. grounded ice, or
        cells away from the training radar). NaN cells of either grid are
        always left out.

    Returns
    -------
    dict
        ``n``, ``mae``, ``rmse``, ``bias``, ``r2``, ``ssim``, ``psnr`` (dB),
        ``tri_pred`` and ``tri_ref`` (mean TRI, m) and ``tri_ratio``
        (``tri_pred / tri_ref``: < 1 smoother than the reference).
    """
    a, b = _paired(pred, reference)
    if a.ndim != 2:
        raise ConfigError(f"score_grid needs 2-D grids, got shape {a.shape}")
    valid = np.isfinite(a) & np.isfinite(b)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape:
            raise ConfigError(f"mask has shape {mask.shape}, the grids {a.shape}")
        valid &= mask

    # Pointwise errors.
    scores = _basic(a[valid], b[valid])

    # Image metrics with the reference's data range.
    scores["ssim"] = ssim(a, b, mask=valid)
    scores["psnr"] = psnr(a, b, mask=valid)

    # Ruggedness of both, on the same cells.
    tri_a = terrain_ruggedness(np.where(valid, a, np.nan))
    tri_b = terrain_ruggedness(np.where(valid, b, np.nan))
    both = np.isfinite(tri_a) & np.isfinite(tri_b)
    mean_a = float(tri_a[both].mean()) if both.any() else float("nan")
    mean_b = float(tri_b[both].mean()) if both.any() else float("nan")
    scores["tri_pred"] = mean_a
    scores["tri_ref"] = mean_b
    scores["tri_ratio"] = mean_a / mean_b if mean_b > 0 else float("nan")
    return scores


def _data_range(reference: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Minimum and range of the reference over the valid cells."""
    values = reference[valid]
    if values.size == 0:
        return float("nan"), float("nan")
    low = float(values.min())
    return low, float(values.max()) - low


def ssim(
    pred: np.ndarray,
    reference: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Mean structural similarity of two grids, Gaussian window.

    Parameters
    ----------
    pred, reference : numpy.ndarray
        Shape ``(H, W)``, m.
    mask : numpy.ndarray, optional
        Shape ``(H, W)``, bool: cells to use; NaN cells are always left out.
    data_range : float, optional
        ``L`` in the SSIM constants; the reference's max - min over the
        used cells when omitted.

    Returns
    -------
    float
        Mean SSIM over the used cells, 1 for identical grids; NaN when no
        cell is usable or the reference is flat and no range is given.
    """
    a, b = _paired(pred, reference)
    valid = np.isfinite(a) & np.isfinite(b)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    low, span = _data_range(b, valid)
    span = span if data_range is None else float(data_range)
    if not valid.any() or not span > 0:
        return float("nan")

    # Shift by the reference minimum; zero outside the used cells.
    weight = valid.astype("float64")
    a = np.where(valid, a - low, 0.0)
    b = np.where(valid, b - low, 0.0)

    # Local Gaussian moments by normalised convolution.
    def smooth(field: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(
            field, SSIM_SIGMA, mode="constant", truncate=SSIM_TRUNCATE
        )

    norm = smooth(weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_a = smooth(a) / norm
        mu_b = smooth(b) / norm
        var_a = smooth(a * a) / norm - mu_a**2
        var_b = smooth(b * b) / norm - mu_b**2
        cov = smooth(a * b) / norm - mu_a * mu_b

    # The SSIM map, averaged over the used cells.
    c1 = (SSIM_K1 * span) ** 2
    c2 = (SSIM_K2 * span) ** 2
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(numerator[valid] / denominator[valid]))


def psnr(
    pred: np.ndarray,
    reference: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Peak signal-to-noise ratio of a grid against a reference, dB.

    Parameters
    ----------
    pred, reference : numpy.ndarray
        One shape, m.
    mask : numpy.ndarray, optional
        Bool, cells to use; NaN cells are always left out.
    data_range : float, optional
        The peak ``L``; the reference's max - min over the used cells when
        omitted.

    Returns
    -------
    float
        ``10 log10(L^2 / MSE)``; inf for identical grids, NaN when nothing
        is usable.
    """
    a, b = _paired(pred, reference)
    valid = np.isfinite(a) & np.isfinite(b)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    _, span = _data_range(b, valid)
    span = span if data_range is None else float(data_range)
    if not valid.any() or not span > 0:
        return float("nan")
    mse = float(np.mean((a[valid] - b[valid]) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(span**2 / mse)


def terrain_ruggedness(elevation: np.ndarray) -> np.ndarray:
    """Terrain ruggedness index of each cell (mean absolute form).

    Parameters
    ----------
    elevation : numpy.ndarray
        Shape ``(H, W)``, m, NaN where unknown.

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W)``, m: the mean of ``|z_neighbour - z|`` over the
        eight neighbours; NaN on the grid's border and where the cell or a
        neighbour is NaN. For a plane rising ``s`` m per cell along one
        axis it is ``0.75 s`` (six of the eight neighbours differ by
        ``s``).

    Examples
    --------
    >>> plane = np.add.outer(np.zeros(4), 2.0 * np.arange(4))
    >>> float(terrain_ruggedness(plane)[1, 1])
    1.5
    """
    z = np.asarray(elevation, dtype="float64")
    height, width = z.shape
    out = np.full(z.shape, np.nan)
    if height < 3 or width < 3:
        return out

    # Sum of absolute differences to the eight shifted copies.
    centre = z[1:-1, 1:-1]
    total = np.zeros_like(centre)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            shifted = z[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx]
            total += np.abs(shifted - centre)
    out[1:-1, 1:-1] = total / 8.0
    return out


def sample_at(
    ds: xr.Dataset | xr.DataArray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    variable: str = "bed",
    method: Literal["linear", "nearest"] = "linear",
) -> np.ndarray:
    """Values of a grid at EPSG:3413 points.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        A regular grid on dims ``("y", "x")``, cell centres in metres,
        ``y`` decreasing (any spacing: a fine prediction or a 150 m grid).
    x, y : numpy.ndarray
        Easting and northing of the points, m (EPSG:3413), shape ``(N,)``.
    variable : str
        The variable of a Dataset to sample.
    method : {"linear", "nearest"}
        Bilinear between the four surrounding cell centres, or the cell the
        point falls in.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, float64. NaN outside the grid's cells; between the
        outermost cell centre and the grid's edge the edge value is used.
        Bilinear values next to a NaN cell are NaN.
    """
    field = ds[variable] if isinstance(ds, xr.Dataset) else ds
    field = field.transpose("y", "x")
    values = field.to_numpy().astype("float64")
    xs = field["x"].to_numpy()
    ys = field["y"].to_numpy()
    dx = float(xs[1] - xs[0]) if xs.size > 1 else 1.0
    dy = float(ys[0] - ys[1]) if ys.size > 1 else 1.0
    if dx <= 0 or dy <= 0:
        raise ConfigError(
            "the grid must have x increasing and y decreasing (CONVENTIONS.md); "
            "bring it there with engine.data.grids.finish_grid"
        )

    # Fractional row and column of each point.
    col = (np.asarray(x, dtype="float64") - xs[0]) / dx
    row = (ys[0] - np.asarray(y, dtype="float64")) / dy
    inside = (col >= -0.5) & (col <= xs.size - 0.5)
    inside &= (row >= -0.5) & (row <= ys.size - 0.5)
    col = np.clip(col, 0.0, xs.size - 1)
    row = np.clip(row, 0.0, ys.size - 1)

    # Nearest cell or bilinear weights of the four neighbours.
    if method == "nearest":
        r = np.clip(np.floor(row + 0.5).astype("int64"), 0, ys.size - 1)
        c = np.clip(np.floor(col + 0.5).astype("int64"), 0, xs.size - 1)
        out = values[r, c]
    elif method == "linear":
        r0 = np.minimum(np.floor(row).astype("int64"), max(ys.size - 2, 0))
        c0 = np.minimum(np.floor(col).astype("int64"), max(xs.size - 2, 0))
        r1 = np.minimum(r0 + 1, ys.size - 1)
        c1 = np.minimum(c0 + 1, xs.size - 1)
        fr, fc = row - r0, col - c0
        out = (
            values[r0, c0] * (1 - fr) * (1 - fc)
            + values[r0, c1] * (1 - fr) * fc
            + values[r1, c0] * fr * (1 - fc)
            + values[r1, c1] * fr * fc
        )
    else:
        raise ConfigError(f"method must be 'linear' or 'nearest', got {method!r}")
    return np.where(inside, out, np.nan)


def block_average(fine: np.ndarray | xr.DataArray, factor: int) -> np.ndarray:
    """Mean of each ``factor x factor`` block of a fine grid.

    Parameters
    ----------
    fine : numpy.ndarray or xarray.DataArray
        Shape ``(f H, f W)``, on dims ``("y", "x")``.
    factor : int
        The subgrid factor ``f``.

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W)``, float64: the 150 m cell values; NaN where any
        sub-cell is NaN.
    """
    values = np.asarray(fine, dtype="float64")
    if values.shape[0] % factor or values.shape[1] % factor:
        raise ConfigError(
            f"a grid of {values.shape} cells is not made of {factor} x {factor} "
            "blocks"
        )
    height, width = values.shape[0] // factor, values.shape[1] // factor
    return values.reshape(height, factor, width, factor).mean(axis=(1, 3))


def distance_to_picks(
    x: np.ndarray, y: np.ndarray, pick_x: np.ndarray, pick_y: np.ndarray
) -> np.ndarray:
    """Distance from each grid cell centre to the nearest radar pick.

    Parameters
    ----------
    x, y : numpy.ndarray
        ``W`` and ``H`` cell centres, m (EPSG:3413).
    pick_x, pick_y : numpy.ndarray
        Pick positions, m, shape ``(N,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W)``, m; inf everywhere when there is no pick.
    """
    xx, yy = np.meshgrid(np.asarray(x, "float64"), np.asarray(y, "float64"))
    if len(pick_x) == 0:
        return np.full(xx.shape, np.inf)
    tree = cKDTree(np.column_stack([pick_x, pick_y]))
    distance, _ = tree.query(np.column_stack([xx.ravel(), yy.ravel()]))
    return distance.reshape(xx.shape)


def score_twin(
    pred: np.ndarray | xr.DataArray,
    bed_true: np.ndarray | xr.DataArray,
    *,
    x: np.ndarray,
    y: np.ndarray,
    pick_x: np.ndarray,
    pick_y: np.ndarray,
    away_distance: float = 1000.0,
) -> dict[str, float]:
    """RMSE against a twin's true bed, everywhere and away from radar.

    Parameters
    ----------
    pred, bed_true : numpy.ndarray or xarray.DataArray
        Shape ``(H, W)``, m, on one grid.
    x, y : numpy.ndarray
        ``W`` and ``H`` cell centres of that grid, m (EPSG:3413).
    pick_x, pick_y : numpy.ndarray
        Radar picks, m: all picks to score between the flight lines, or the
        training picks only to count held-out lines as "away".
    away_distance : float
        Cells farther than this from every pick are "away", m.

    Returns
    -------
    dict
        ``rmse_true`` (all finite cells), ``rmse_true_away`` (cells away
        from the picks; NaN if none) and ``share_away`` (their share).
    """
    a, b = _paired(pred, bed_true)
    valid = np.isfinite(a) & np.isfinite(b)
    away = distance_to_picks(x, y, pick_x, pick_y) > away_distance
    if away.shape != a.shape:
        raise ConfigError(
            f"x and y give a grid of {away.shape} cells, the prediction {a.shape}"
        )
    far = valid & away
    error = a - b
    nan = float("nan")
    return {
        "rmse_true": _rms(error[valid]),
        "rmse_true_away": _rms(error[far]),
        "share_away": float(far.sum() / valid.sum()) if valid.any() else nan,
    }


def _rms(values: np.ndarray) -> float:
    """Root mean square, NaN for no values."""
    return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")


def evaluate_bed(
    bed: xr.Dataset | np.ndarray,
    grid: xr.Dataset,
    *,
    test_x: np.ndarray,
    test_y: np.ndarray,
    test_bed: np.ndarray,
    pick_x: np.ndarray | None = None,
    pick_y: np.ndarray | None = None,
    away_distance: float = 1000.0,
    reference: str = "bed_bedmachine",
    method: Literal["linear", "nearest"] = "nearest",
) -> dict[str, dict[str, float]]:
    """Every score of one method's bed on one split.

    Parameters
    ----------
    bed : xarray.Dataset or numpy.ndarray
        A prediction from :func:`engine.bedtopo.predict.predict_region`
        (``bed`` and, when finite, ``bed_lower_90``/``bed_upper_90``, on a
        grid ``factor`` times finer than ``grid``), or an ``(H, W)`` bed on
        ``grid``'s cells (a baseline), m.
    grid : xarray.Dataset
        The 150 m grid of the region (dims ``("y", "x")``, EPSG:3413) with
        the ``reference`` variable and, on twins, ``bed_true``.
    test_x, test_y, test_bed : numpy.ndarray
        Held-out picks, m (EPSG:3413), and their radar bed, m.
    pick_x, pick_y : numpy.ndarray, optional
        Picks that define "away from radar" on a twin (see
        :func:`score_twin`); the held-out picks when omitted.
    away_distance : float
        See :func:`score_twin`, m.
    reference : str
        The grid variable to score against on the grid.
    method : {"nearest", "linear"}
        How the bed is read at the picks; ``"nearest"`` takes the (fine)
        cell a pick falls in, as training's validation does.

    Returns
    -------
    dict
        ``{"points": score_points(...), "grid": score_grid(...)}`` and, when
        the grid has ``bed_true``, ``"twin": score_twin(...)``; grid and
        twin scores on the 150 m cells (a fine bed is block-averaged).
    """
    x = grid["x"].to_numpy()
    y = grid["y"].to_numpy()

    # The bed as a DataArray on its own grid, and on the 150 m cells.
    if isinstance(bed, xr.Dataset):
        field = bed["bed"]
        factor = int(round(field.sizes["x"] / x.size))
        coarse = block_average(field.transpose("y", "x"), factor)
    else:
        coarse = np.asarray(bed, dtype="float64")
        field = xr.DataArray(coarse, dims=("y", "x"), coords={"x": x, "y": y})
    if coarse.shape != (y.size, x.size):
        raise ConfigError(
            f"the bed brings {coarse.shape} cells to a grid of {(y.size, x.size)}; "
            "predict on this grid"
        )

    # Held-out radar, with the interval when there is one.
    at_points = sample_at(field, test_x, test_y, method=method)
    lower = upper = None
    if isinstance(bed, xr.Dataset) and "bed_lower_90" in bed:
        lower = sample_at(bed["bed_lower_90"], test_x, test_y, method=method)
        upper = sample_at(bed["bed_upper_90"], test_x, test_y, method=method)
    results = {
        "points": score_points(at_points, test_bed, lower=lower, upper=upper),
        "grid": score_grid(coarse, grid[reference].transpose("y", "x").to_numpy()),
    }

    # The true bed of a twin, everywhere and away from the picks.
    if "bed_true" in grid:
        results["twin"] = score_twin(
            coarse,
            grid["bed_true"].transpose("y", "x").to_numpy(),
            x=x,
            y=y,
            pick_x=test_x if pick_x is None else pick_x,
            pick_y=test_y if pick_y is None else pick_y,
            away_distance=away_distance,
        )
    return results


def comparison_table(results: Mapping[str, Mapping[str, object]]) -> pd.DataFrame:
    """Every method of one split in one table.

    Parameters
    ----------
    results : mapping
        ``{method: scores}``, where scores is a flat ``{metric: value}`` or
        nested by kind, e.g. ``{"points": score_points(...), "grid":
        score_grid(...)}``; nested keys become ``"points.rmse"``, ...

    Returns
    -------
    pandas.DataFrame
        One row per method (index ``method``), one column per metric, NaN
        where a method lacks one; known metrics in :data:`METRIC_ORDER`
        within each group, the rest after them in alphabetical order.
    """
    rows = {name: _flatten(scores) for name, scores in results.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"

    # Columns: by group, known metrics first in their order.
    def key(column: str) -> tuple[str, int, str]:
        group, _, metric = column.rpartition(".")
        known = metric in METRIC_ORDER
        rank = METRIC_ORDER.index(metric) if known else len(METRIC_ORDER)
        return group, rank, metric

    return table[sorted(table.columns, key=key)]


def _flatten(scores: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested score dicts as one dict with dotted keys."""
    flat: dict[str, object] = {}
    for name, value in scores.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat
