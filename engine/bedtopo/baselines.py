"""Baseline beds on the 150 m grid, from the training radar only.

Every baseline answers one question: what does a simpler method make of
the same training radar (and, for some, the same surface features)? All
share :func:`fit_predict`, which returns an ``(H, W)`` bed in metres on the
grid's cells, so that they can be scored on the same split as the networks
(see :mod:`engine.bedtopo.evaluate`).

The baselines (:data:`BASELINES`):

- ``"bedmachine"``: BedMachine's bed itself, the bar any method must
  clear between flight lines.
- ``"linear"``: linear interpolation of the training radar (Delaunay
  triangles, ``scipy.interpolate.griddata``). Outside the convex hull of
  the picks, the nearest pick's value: the baseline then uses radar alone,
  so that it shows what radar without any prior gives (BedMachine outside
  the hull would blur the comparison with the ``bedmachine`` row).
- ``"kriging"``: ordinary kriging of the radar bed with PyKrige, a
  spherical variogram fitted by PyKrige's least squares on the
  experimental variogram of the training radar.
- ``"kriging_residual"``: the same kriging of radar minus BedMachine, added
  back to BedMachine; the residual is closer to stationary than the bed,
  which carries the regional trend.
- ``"gbr_surface"``: gradient boosting (``HistGradientBoostingRegressor``)
  from the surface features (no BedMachine) to the radar bed.
- ``"gbr_residual"``: gradient boosting from the surface features plus
  BedMachine's bed and error to the radar-minus-BedMachine residual, added
  back to BedMachine.

Radar preparation, common to all: picks are averaged per 150 m cell (mean
position and mean bed), so that the dense along-track sampling (about 15 m
for real radar, 125 m on twins) neither dominates the fits nor makes the
kriging system singular. Gradient boosting is trained on those radar cells
with the cell's features.

Kriging cost: PyKrige builds the pairwise distances of all data points to
fit the variogram, and one kriging system per target cell. The radar cells
are therefore thinned at random (seeded) to ``max_points`` (default 2000),
and each cell is kriged from its ``n_closest_points`` (default 64) nearest
data with the ``"loop"`` backend when there are more data than that.

PyKrige's pitfall: a *list* of variogram parameters means full sill, range,
nugget, while its fitted ``variogram_model_parameters`` are partial sill,
range, nugget. Here the variogram is fitted by PyKrige and never passed as
a list; :func:`kriging_variogram` reports both sills by name.

References
----------
PyKrige (Murphy, Mueller, Yurchak),
https://github.com/GeoStat-Framework/PyKrige.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from pykrige.ok import OrdinaryKriging
from scipy.interpolate import griddata
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from engine.bedtopo.errors import ConfigError, FeatureError
from engine.bedtopo.features import (
    BEDMACHINE_FIELDS,
    FeatureConfig,
    FeatureSet,
    make_features,
)
from engine.bedtopo.targets import radar_to_fine_grid

__all__ = [
    "BASELINES",
    "RadarCells",
    "Variogram",
    "radar_cells",
    "kriging_variogram",
    "fit_predict",
]

log = logging.getLogger(__name__)

#: Names accepted by :func:`fit_predict`.
BASELINES: tuple[str, ...] = (
    "bedmachine",
    "linear",
    "kriging",
    "kriging_residual",
    "gbr_surface",
    "gbr_residual",
)

#: Most radar cells a kriging uses (thinned at random beyond).
MAX_KRIGING_POINTS = 2000

#: Neighbours of each kriged cell when there are more data than this.
KRIGING_NEIGHBOURS = 64

#: Grid rows predicted per call of a gradient-boosting model.
PREDICT_ROWS = 256

#: Fewest training cells for which gradient boosting uses several threads.
#: Below it, OpenMP's thread start-up and spinning cost more than the work:
#: 300 iterations on 660 cells took 40 s with 2 threads on a busy 2-core
#: machine and 0.9 s with one.
THREADED_BOOSTING_CELLS = 50_000


@dataclass(frozen=True)
class RadarCells:
    """Training radar averaged per grid cell.

    Attributes
    ----------
    row, col : numpy.ndarray
        Shape ``(M,)``, int64: the cells holding at least one pick.
    x, y : numpy.ndarray
        Shape ``(M,)``, m (EPSG:3413): mean position of the cell's picks.
    bed : numpy.ndarray
        Shape ``(M,)``, m: mean radar bed of the cell's picks.
    """

    row: np.ndarray
    col: np.ndarray
    x: np.ndarray
    y: np.ndarray
    bed: np.ndarray


@dataclass(frozen=True)
class Variogram:
    """A variogram fitted by PyKrige, every parameter by name.

    Attributes
    ----------
    model : str
        ``"spherical"``, ``"exponential"``, ...
    partial_sill, sill, range, nugget : float
        ``sill = partial_sill + nugget`` in m^2, ``range`` in m.
    n_points : int
        Data points the variogram was fitted on.
    """

    model: str
    partial_sill: float
    sill: float
    range: float
    nugget: float
    n_points: int


def radar_cells(
    grid: xr.Dataset,
    train_x: np.ndarray,
    train_y: np.ndarray,
    train_bed: np.ndarray,
) -> RadarCells:
    """Average training picks per 150 m cell of a grid.

    Parameters
    ----------
    grid : xarray.Dataset
        Dims ``("y", "x")``, cell centres in m (EPSG:3413), ``y`` decreasing.
    train_x, train_y : numpy.ndarray
        Pick positions, m, shape ``(N,)``.
    train_bed : numpy.ndarray
        Radar bed at the picks, m, shape ``(N,)``; NaN picks are skipped.

    Returns
    -------
    RadarCells
        The cells with picks, their mean pick position and mean bed; picks
        outside the grid are left out.
    """
    x = grid["x"].to_numpy().astype("float64")
    y = grid["y"].to_numpy().astype("float64")
    px = np.asarray(train_x, dtype="float64")
    py = np.asarray(train_y, dtype="float64")
    bed = np.asarray(train_bed, dtype="float64")
    if not (px.shape == py.shape == bed.shape):
        raise FeatureError(
            f"train_x, train_y and train_bed must have one shape, got {px.shape}, "
            f"{py.shape} and {bed.shape}"
        )

    # Mean bed per cell, then mean position with the same binning.
    cells = radar_to_fine_grid(px, py, bed, x=x, y=y, factor=1)
    row, col = np.nonzero(cells.mask)
    finite = np.isfinite(bed)
    mean_x = radar_to_fine_grid(
        px, py, np.where(finite, px, np.nan), x=x, y=y, factor=1
    )
    mean_y = radar_to_fine_grid(
        px, py, np.where(finite, py, np.nan), x=x, y=y, factor=1
    )
    return RadarCells(
        row=row.astype("int64"),
        col=col.astype("int64"),
        x=mean_x.bed[row, col].astype("float64"),
        y=mean_y.bed[row, col].astype("float64"),
        bed=cells.bed[row, col].astype("float64"),
    )


def _check_cells(cells: RadarCells, name: str, least: int) -> None:
    """Raise FeatureError when a baseline has too few radar cells."""
    if cells.bed.size < least:
        raise FeatureError(
            f"the {name} baseline needs at least {least} grid cells with training "
            f"radar, got {cells.bed.size}; use a larger region or more flight lines"
        )


def _bedmachine(grid: xr.Dataset, name: str) -> np.ndarray:
    """BedMachine's bed of the grid as float64 (H, W)."""
    if "bed_bedmachine" not in grid:
        raise FeatureError(
            f"the {name} baseline needs the grid's bed_bedmachine; use a grid "
            "read with it"
        )
    return grid["bed_bedmachine"].transpose("y", "x").to_numpy().astype("float64")


def _cell_centres(grid: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Eastings and northings of every cell centre, (H, W) each."""
    x = grid["x"].to_numpy().astype("float64")
    y = grid["y"].to_numpy().astype("float64")
    return np.meshgrid(x, y)


def _linear(grid: xr.Dataset, cells: RadarCells) -> np.ndarray:
    """Delaunay-linear interpolation, nearest pick outside the hull."""
    _check_cells(cells, "linear", 3)
    xx, yy = _cell_centres(grid)
    points = np.column_stack([cells.x, cells.y])
    targets = (xx, yy)

    # Linear inside the hull (NaN outside), nearest pick there.
    inside = griddata(points, cells.bed, targets, method="linear")
    nearest = griddata(points, cells.bed, targets, method="nearest")
    return np.where(np.isfinite(inside), inside, nearest)


def _subset(cells: RadarCells, keep: np.ndarray) -> RadarCells:
    """The radar cells picked by an index or boolean array."""
    return RadarCells(
        row=cells.row[keep],
        col=cells.col[keep],
        x=cells.x[keep],
        y=cells.y[keep],
        bed=cells.bed[keep],
    )


def _ordinary_kriging(
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    *,
    variogram_model: str,
    nlags: int,
) -> OrdinaryKriging:
    """PyKrige's OrdinaryKriging with its variogram fitted, quietly."""
    with warnings.catch_warnings():
        # PyKrige warns on its own fitting details; they are reported by
        # kriging_variogram instead.
        warnings.simplefilter("ignore", UserWarning)
        return OrdinaryKriging(
            x,
            y,
            values,
            variogram_model=variogram_model,
            nlags=nlags,
            enable_plotting=False,
            verbose=False,
            coordinates_type="euclidean",
        )


def kriging_variogram(kriging: OrdinaryKriging) -> Variogram:
    """The fitted variogram of a PyKrige OrdinaryKriging, by name.

    PyKrige keeps ``[partial sill, range, nugget]`` in
    ``variogram_model_parameters``; the full sill is their sum.

    Parameters
    ----------
    kriging : pykrige.ok.OrdinaryKriging

    Returns
    -------
    Variogram
    """
    model = str(kriging.variogram_model)
    params = [float(v) for v in kriging.variogram_model_parameters]
    if model in ("spherical", "exponential", "gaussian", "hole-effect"):
        partial, reach, nugget = params
    else:
        partial, reach, nugget = float("nan"), float("nan"), params[-1]
    return Variogram(
        model=model,
        partial_sill=partial,
        sill=partial + nugget,
        range=reach,
        nugget=nugget,
        n_points=int(np.size(kriging.Z)),
    )


def _kriging(
    grid: xr.Dataset,
    cells: RadarCells,
    *,
    seed: int,
    variogram_model: str = "spherical",
    nlags: int = 20,
    max_points: int = MAX_KRIGING_POINTS,
    n_closest_points: int = KRIGING_NEIGHBOURS,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """Ordinary kriging of the cell values (less an offset) onto the grid."""
    # Values to krige: the bed, or the bed less BedMachine at the cell.
    values = cells.bed
    if offset is not None:
        values = values - offset[cells.row, cells.col]
    finite = np.isfinite(values)
    cells = _subset(cells, finite)
    values = values[finite]
    _check_cells(cells, "kriging", 3)

    # At most max_points cells, at random.
    if values.size > max_points:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(values.size, max_points, replace=False))
        cells, values = _subset(cells, keep), values[keep]

    # Fit the variogram, then krige every cell centre.
    kriging = _ordinary_kriging(
        cells.x, cells.y, values, variogram_model=variogram_model, nlags=nlags
    )
    log.debug("kriging variogram: %s", kriging_variogram(kriging))
    # One BLAS thread: the systems are small, and threads only contend
    # (3.4 s instead of 6.7 s on a 96 x 128 twin).
    xx, yy = _cell_centres(grid)
    with threadpool_limits(limits=1, user_api="blas"):
        if values.size > n_closest_points:
            estimate, _ = kriging.execute(
                "points",
                xx.ravel(),
                yy.ravel(),
                backend="loop",
                n_closest_points=n_closest_points,
            )
        else:
            estimate, _ = kriging.execute("points", xx.ravel(), yy.ravel())
    estimate = np.asarray(estimate, dtype="float64").reshape(xx.shape)
    return estimate if offset is None else estimate + offset


def _feature_columns(
    grid: xr.Dataset, features: FeatureSet | None, *, with_bedmachine: bool
) -> tuple[np.ndarray, list[str]]:
    """Feature columns of every cell, ``(H W, C)``, for gradient boosting.

    Surface channels of the feature set (BedMachine channels left out),
    then, when asked, BedMachine's bed and error straight from the grid
    (trees need no scaling).
    """
    if features is None:
        features = make_features(grid, config=FeatureConfig())
    keep = [i for i, c in enumerate(features.channels) if c not in BEDMACHINE_FIELDS]
    names = [features.channels[i] for i in keep]
    columns = [features.values[i].astype("float64") for i in keep]
    if with_bedmachine:
        for name in BEDMACHINE_FIELDS:
            if name in grid:
                names.append(name)
                values = grid[name].transpose("y", "x").to_numpy()
                columns.append(values.astype("float64"))
        if "bed_bedmachine" not in names:
            raise FeatureError(
                "the gbr_residual baseline needs the grid's bed_bedmachine; use a "
                "grid read with it"
            )
    height, width = grid.sizes["y"], grid.sizes["x"]
    if any(c.shape != (height, width) for c in columns):
        raise FeatureError(
            f"the features are not on the grid's {height} x {width} cells; build "
            "them from this grid"
        )
    return np.stack(columns, axis=-1).reshape(height * width, len(columns)), names


def _boosting(
    grid: xr.Dataset,
    features: FeatureSet | None,
    cells: RadarCells,
    *,
    residual: bool,
    seed: int,
    max_iter: int = 300,
    learning_rate: float = 0.05,
    max_leaf_nodes: int = 31,
    min_samples_leaf: int = 10,
) -> np.ndarray:
    """Gradient boosting at the radar cells, predicted on every cell."""
    name = "gbr_residual" if residual else "gbr_surface"
    _check_cells(cells, name, 10)
    table, _ = _feature_columns(grid, features, with_bedmachine=residual)
    height, width = grid.sizes["y"], grid.sizes["x"]

    # Targets at the radar cells: the bed, or radar minus BedMachine.
    flat = cells.row * width + cells.col
    target = cells.bed
    base = None
    if residual:
        base = _bedmachine(grid, name)
        target = target - base[cells.row, cells.col]
    usable = np.isfinite(target)

    # Fit with a fixed seed; no early stopping on a few hundred cells.
    model = HistGradientBoostingRegressor(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=max_leaf_nodes,
        min_samples_leaf=min(min_samples_leaf, max(int(usable.sum()) // 4, 1)),
        early_stopping=False,
        random_state=seed,
    )
    threads = None if usable.sum() >= THREADED_BOOSTING_CELLS else 1
    with threadpool_limits(limits=threads, user_api="openmp"):
        model.fit(table[flat[usable]], target[usable])

        # Predict in row blocks to bound memory.
        out = np.empty(height * width)
        step = PREDICT_ROWS * width
        for start in range(0, height * width, step):
            out[start : start + step] = model.predict(table[start : start + step])
    out = out.reshape(height, width)
    return out if base is None else base + out


def fit_predict(
    name: str,
    grid: xr.Dataset,
    features: FeatureSet | None,
    train_x: np.ndarray,
    train_y: np.ndarray,
    train_bed: np.ndarray,
    *,
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> np.ndarray:
    """Predict a bed on the 150 m grid with one baseline.

    Parameters
    ----------
    name : str
        One of :data:`BASELINES` (see the module docstring).
    grid : xarray.Dataset
        The region's grid, dims ``("y", "x")``, ``y`` decreasing, EPSG:3413
        metres; ``bed_bedmachine`` (and ``bed_bedmachine_error``) for the
        baselines that use BedMachine.
    features : FeatureSet or None
        Feature channels of this grid (from
        :func:`engine.bedtopo.features.make_features`) for the boosting
        baselines; BedMachine channels in it are ignored by
        ``gbr_surface``. Built with the default config when None. Unused by
        the other baselines.
    train_x, train_y : numpy.ndarray
        Training picks, m (EPSG:3413), shape ``(N,)``; never the held-out
        ones.
    train_bed : numpy.ndarray
        Radar bed at the training picks, m, shape ``(N,)`` (surface minus
        radar thickness, see :func:`engine.bedtopo.targets.pick_beds`).
    seed : int
        Seed of the kriging thinning and the boosting.
    options : dict, optional
        Keyword settings of the baseline: for the krigings
        ``variogram_model`` (``"spherical"``), ``nlags`` (20),
        ``max_points`` (2000), ``n_closest_points`` (64); for the boosting
        ``max_iter`` (300), ``learning_rate`` (0.05), ``max_leaf_nodes``
        (31), ``min_samples_leaf`` (10).

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W)``, float64, bed elevation in metres on the grid's
        cells; finite wherever the inputs are (``bedmachine`` keeps its
        NaN).

    Raises
    ------
    ConfigError
        An unknown baseline or option.
    FeatureError
        Too few training radar cells, or a grid without what the baseline
        needs.
    """
    options = dict(options or {})
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    allowed = {
        "bedmachine": set(),
        "linear": set(),
        "kriging": {"variogram_model", "nlags", "max_points", "n_closest_points"},
        "gbr_surface": {
            "max_iter",
            "learning_rate",
            "max_leaf_nodes",
            "min_samples_leaf",
        },
    }
    allowed["kriging_residual"] = allowed["kriging"]
    allowed["gbr_residual"] = allowed["gbr_surface"]
    unknown = sorted(set(options) - allowed[name])
    if unknown:
        raise ConfigError(
            f"options {unknown} do not apply to the {name} baseline; it takes "
            f"{sorted(allowed[name]) or 'none'}"
        )

    # BedMachine needs no radar.
    if name == "bedmachine":
        return _bedmachine(grid, name)

    # Training radar averaged per cell, then the baseline.
    cells = radar_cells(grid, train_x, train_y, train_bed)
    log.debug("%s baseline on %d radar cells", name, cells.bed.size)
    if name == "linear":
        return _linear(grid, cells)
    if name == "kriging":
        return _kriging(grid, cells, seed=seed, **options)
    if name == "kriging_residual":
        offset = _bedmachine(grid, name)
        return _kriging(grid, cells, seed=seed, offset=offset, **options)
    return _boosting(
        grid, features, cells, residual=name == "gbr_residual", seed=seed, **options
    )
