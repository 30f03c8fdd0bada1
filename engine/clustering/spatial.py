"""Spatial mode: cluster grid cells by their series in sliding windows.

The temporal mode (DSC, HEDGTC) clusters time steps. The spatial mode
turns the question round: inside a time window, each land cell is a
sample whose features are its multivariate series over the window, and
clustering the cells gives a map of regions that behave alike. Sliding
the window (length ``window``, step ``step`` time steps) gives one map per
window; so that a colour means the same region from one map to the next,
each window's labels are renumbered to agree best with the previous
window's on the cells both share (Hungarian assignment,
:func:`engine.clustering.consensus.relabel_to_match`).

Features of a cell in one window: for each variable, its values at the
window's steps, z-scored per variable with the mean and standard
deviation over land cells and the window's steps together (the scaling of
:mod:`engine.clustering.prepare`, so every variable weighs the same
whatever its units and the contrasts between cells are kept). A cell
enters a window only when it has a finite value at every step of every
variable there; the others are ``-1`` in that window's map.

Typical use::

    from engine.clustering.spatial import cluster_windows

    maps = cluster_windows(cube, 4, window=30, step=10)
    maps.sel(window_start="2021-03-01")     # (lat, lon), -1 over sea
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from engine.clustering.baselines import run_kmeans
from engine.clustering.consensus import relabel_to_match
from engine.clustering.control import Cancel, Progress, check_cancel, report
from engine.clustering.errors import ClusteringConfigError, ClusteringInputError

__all__ = [
    "cell_features",
    "cluster_windows",
    "kmeans_cells",
    "match_label_maps",
    "window_starts",
]

#: Label of a cell left out of a window (sea, or a gap in its series).
NO_CELL = -1

#: Base algorithm of the spatial mode: ``(X, k, seed) -> labels`` with
#: ``X`` of shape ``(cells, features)``.
CellAlgorithm = Callable[[np.ndarray, int, int], np.ndarray]


def kmeans_cells(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means with ten starts, the default base algorithm.

    Shapes
    ------
    - X: ``(cells, features)``
    - output: ``(cells,)`` int64
    """
    return run_kmeans(X, k, seed=seed, n_init=10)


def window_starts(n_time: int, *, window: int, step: int) -> np.ndarray:
    """First step of every full window.

    Parameters
    ----------
    n_time
        Number of time steps.
    window
        Window length in steps, 1 .. ``n_time``.
    step
        Steps between two window starts, at least 1.

    Returns
    -------
    numpy.ndarray
        Start indices, shape ``(windows,)``, int64; the last window ends
        at or before ``n_time`` (a partial tail is left out).

    Examples
    --------
    >>> window_starts(10, window=4, step=3).tolist()
    [0, 3, 6]
    """
    if not 1 <= window <= n_time:
        raise ClusteringConfigError(
            f"window={window} steps for {n_time} steps; choose 1 <= window <= "
            "the number of steps"
        )
    if step < 1:
        raise ClusteringConfigError(f"step={step}; it must be at least 1")
    return np.arange(0, n_time - window + 1, step, dtype=np.int64)


def cell_features(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features of the complete cells of one window.

    Parameters
    ----------
    values
        The window's fields, shape ``(variables, time, lat, lon)``, ``NaN``
        where missing.

    Returns
    -------
    X : numpy.ndarray
        Shape ``(cells, variables * time)``, float64: per cell, each
        variable's z-scored series in turn.
    cells : numpy.ndarray
        Cells used, shape ``(lat, lon)``, bool: finite at every step of
        every variable.
    """
    # Complete cells.
    cells = np.isfinite(values).all(axis=(0, 1))
    if not cells.any():
        return np.zeros((0, values.shape[0] * values.shape[1])), cells

    # Per-variable z-score over the complete cells and all steps.
    kept = values[:, :, cells]
    mean = kept.mean(axis=(1, 2), keepdims=True)
    scale = kept.std(axis=(1, 2), keepdims=True)
    kept = (kept - mean) / np.where(scale > 0, scale, 1.0)

    # (variables, time, cells) to (cells, variables * time).
    X = kept.transpose(2, 0, 1).reshape(kept.shape[2], -1)
    return X, cells


def match_label_maps(maps: np.ndarray, *, reference: str = "previous") -> np.ndarray:
    """Renumber each map's labels to agree with another map's.

    Parameters
    ----------
    maps
        Label maps, shape ``(windows, lat, lon)``, int, ``-1`` for cells
        without a label.
    reference
        ``"previous"``: each map is matched to the (already matched) map
        before it, which follows slow drifts; ``"first"``: every map is
        matched to the first.

    Returns
    -------
    numpy.ndarray
        Same shape, int64; the partition of each map is unchanged, only
        its numbers. Clusters without a partner on the shared cells take
        numbers above the reference's largest.

    Examples
    --------
    >>> maps = np.array([[[0, 0, 1, -1]], [[1, 1, 0, -1]]])
    >>> match_label_maps(maps)[1].tolist()
    [[0, 0, 1, -1]]
    """
    if reference not in ("previous", "first"):
        raise ClusteringConfigError(
            f"reference={reference!r}; use 'previous' or 'first'"
        )
    maps = np.asarray(maps, dtype=np.int64)
    matched = maps.copy()
    for w in range(1, maps.shape[0]):
        target = matched[w - 1] if reference == "previous" else matched[0]
        matched[w] = _match_map(target, maps[w])
    return matched


def cluster_windows(
    cube: xr.Dataset,
    k: int,
    *,
    window: int,
    step: int,
    variables: Sequence[str] | None = None,
    algorithm: CellAlgorithm = kmeans_cells,
    seed: int = 0,
    reference: str = "previous",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> xr.DataArray:
    """Cluster the cells in each sliding window, labels matched over time.

    Parameters
    ----------
    cube
        Climate cube: dims ``("time", "lat", "lon")``, one variable per
        field, ``NaN`` over sea (see ``engine/data/CONVENTIONS.md``).
    k
        Number of cell clusters per window.
    window
        Window length in time steps.
    step
        Steps between two window starts.
    variables
        Fields to use; ``None`` uses every variable with a ``time`` dim.
    algorithm
        Base clustering ``(X, k, seed) -> labels`` on ``(cells,
        features)``; k-means with ten starts by default.
    seed
        Seed passed to ``algorithm`` in every window.
    reference
        Matching of the labels, see :func:`match_label_maps`.
    progress
        Called with ``{"stage": "windows", "fraction", "done", "total"}``
        after each window.
    cancel
        Token with ``is_set()``, checked before each window; once set,
        :class:`engine.clustering.errors.ClusteringCancelled` is raised.

    Returns
    -------
    xarray.DataArray
        Labels, dims ``("window_start", "lat", "lon")``, int64, ``-1``
        where a cell has no label (sea, or a gap in the window); the
        coordinate ``window_end`` (last step of each window) rides on
        ``window_start``.

    Raises
    ------
    ClusteringInputError
        The cube lacks a dim or a named variable, or a window has fewer
        complete cells than ``k``.
    ClusteringConfigError
        ``window`` or ``step`` is out of range.
    """
    # Step 1: the fields as one array (variables, time, lat, lon).
    for dim in ("time", "lat", "lon"):
        if dim not in cube.dims:
            raise ClusteringInputError(
                f"the cube has no {dim!r} dimension; dims are {tuple(cube.dims)}"
            )
    names = list(variables) if variables is not None else [
        str(name) for name, field in cube.data_vars.items() if "time" in field.dims
    ]
    missing = [name for name in names if name not in cube.data_vars]
    if missing or not names:
        raise ClusteringInputError(
            f"variables {missing or names} not usable; the cube holds "
            f"{sorted(map(str, cube.data_vars))}"
        )
    values = np.stack(
        [cube[name].transpose("time", "lat", "lon").values for name in names]
    ).astype(np.float64)
    starts = window_starts(values.shape[1], window=window, step=step)

    # Step 2: cluster each window's complete cells.
    maps = np.full((starts.size, *values.shape[2:]), NO_CELL, dtype=np.int64)
    for w, start in enumerate(starts):
        check_cancel(cancel)
        X, cells = cell_features(values[:, start : start + window])
        if X.shape[0] < k:
            raise ClusteringInputError(
                f"window {w} has {X.shape[0]} complete cells for k={k}; choose "
                "fewer clusters or fill the gaps"
            )
        maps[w][cells] = np.asarray(algorithm(X, k, seed), dtype=np.int64)
        report(
            progress, "windows", (w + 1) / starts.size, done=w + 1, total=starts.size
        )

    # Step 3: the same number for the same region from window to window.
    maps = match_label_maps(maps, reference=reference)

    # Step 4: as a labelled array.
    time = pd.DatetimeIndex(cube["time"].values)
    return xr.DataArray(
        maps,
        dims=("window_start", "lat", "lon"),
        coords={
            "window_start": time[starts].values,
            "window_end": ("window_start", time[starts + window - 1].values),
            "lat": cube["lat"].values,
            "lon": cube["lon"].values,
        },
        name="cell_cluster",
        attrs={
            "long_name": "cluster of each cell in the window",
            "units": "1",
            "missing_value": NO_CELL,
            "window_steps": window,
            "step_steps": step,
            "variables": ", ".join(names),
        },
    )


def _match_map(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered after ``reference`` on their shared cells."""
    # Cells labelled in both maps drive the pairing.
    shared = (reference != NO_CELL) & (labels != NO_CELL)
    present = labels != NO_CELL
    if not shared.any():
        return labels.copy()
    renumbered = relabel_to_match(reference[shared], labels[shared])

    # Old number to new number, from the shared cells.
    mapping = dict(zip(labels[shared].tolist(), renumbered.tolist(), strict=True))

    # Clusters absent from the shared cells take unused numbers.
    used = set(mapping.values()) | set(np.unique(reference[reference != NO_CELL]))
    next_free = max(used) + 1 if used else 0
    for old in np.unique(labels[present]).tolist():
        if old not in mapping:
            mapping[old] = next_free
            next_free += 1

    # Apply, keeping the cells without a label.
    out = np.full_like(labels, NO_CELL)
    out[present] = [mapping[old] for old in labels[present].tolist()]
    return out
