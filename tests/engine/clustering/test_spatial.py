"""Tests of the spatial mode, ``engine.clustering.spatial``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.metrics import adjusted_rand_score

from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
from engine.clustering.spatial import (
    cell_features,
    cluster_windows,
    match_label_maps,
    window_starts,
)
from engine.clustering.synthetic import make_planted


def _zoned_cube(seed: int = 0) -> tuple[xr.Dataset, np.ndarray]:
    """Three vertical zones of cells, each with its own series, sea on a row.

    Every zone follows its own sine phase in both variables, plus small
    noise; the last row is sea (NaN). Returns the cube and the zone map.
    """
    rng = np.random.default_rng(seed)
    n_time, n_lat, n_lon = 40, 6, 9
    zones = np.repeat(np.arange(3), 3)[None, :].repeat(n_lat, axis=0)
    t = np.arange(n_time)[:, None, None]
    phase = zones[None] * 2.0 * np.pi / 3.0
    signal = np.sin(2.0 * np.pi * t / 10.0 + phase)
    fields = {}
    for name, scale in (("t2m", 3.0), ("sp", 500.0)):
        values = scale * (signal + 0.05 * rng.standard_normal(signal.shape))
        values[:, -1, :] = np.nan
        fields[name] = (("time", "lat", "lon"), values)
    cube = xr.Dataset(
        fields,
        coords={
            "time": pd.date_range("2021-01-01", periods=n_time, freq="1D"),
            "lat": 33.0 + 0.25 * np.arange(n_lat),
            "lon": -33.0 + 0.25 * np.arange(n_lon),
        },
    )
    zones = zones.copy()
    zones[-1, :] = -1
    return cube, zones


def test_window_starts() -> None:
    """Full windows only; bad lengths are named."""
    assert window_starts(10, window=4, step=3).tolist() == [0, 3, 6]
    assert window_starts(4, window=4, step=1).tolist() == [0]
    with pytest.raises(ClusteringConfigError, match="window=5"):
        window_starts(4, window=5, step=1)
    with pytest.raises(ClusteringConfigError, match="step=0"):
        window_starts(4, window=2, step=0)


def test_cell_features_skip_incomplete_cells() -> None:
    """A cell with one NaN leaves the window; features are z-scored."""
    values = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    values[0, 1, 0, 0] = np.nan
    X, cells = cell_features(values)
    assert cells.tolist() == [[False, True], [True, True]]
    assert X.shape == (3, 6)

    # Per-variable z-score over cells and steps: zero mean (float64, 1e-12).
    assert X[:, :3].mean() == pytest.approx(0.0, abs=1e-12)


def test_hand_permuted_windows_are_matched_back() -> None:
    """Window 2 uses other numbers for the same regions: renumbered."""
    first = np.array([[0, 0, 1], [2, 2, -1]])
    permuted = np.array([[2, 2, 0], [1, 1, -1]])
    shifted = np.array([[5, 5, 7], [6, 6, -1]])
    matched = match_label_maps(np.stack([first, permuted, shifted]))
    for window in matched:
        np.testing.assert_array_equal(window, first)


def test_matching_keeps_sea_and_new_clusters() -> None:
    """Sea stays -1; a cluster with no partner takes a fresh number."""
    first = np.array([[0, 0, 1, 1]])
    split = np.array([[1, 1, 0, 2]])
    matched = match_label_maps(np.stack([first, split]))
    assert matched[1].tolist() == [[0, 0, 1, 2]]

    # Matching to the first map rather than the previous one.
    maps = np.stack([first, np.array([[1, 1, 0, 0]]), np.array([[0, 0, 1, 1]])])
    assert match_label_maps(maps, reference="first")[2].tolist() == [[0, 0, 1, 1]]


def test_zones_give_the_same_map_in_every_window() -> None:
    """Three zones: identical maps after matching, sea at -1."""
    cube, zones = _zoned_cube()
    maps = cluster_windows(cube, 3, window=10, step=5)

    # Seven full windows of 10 days, 5 apart, on the cube's grid.
    assert maps.dims == ("window_start", "lat", "lon")
    assert maps.sizes["window_start"] == 7
    assert str(maps["window_end"].values[0])[:10] == "2021-01-10"

    # Every window finds the zones (ARI 1: noise is 5 % of the signal) ...
    for window in maps.values:
        land = zones >= 0
        assert adjusted_rand_score(zones[land], window[land]) == 1.0
        np.testing.assert_array_equal(window[~land], -1)

    # ... and keeps the numbers of the first window.
    for window in maps.values[1:]:
        np.testing.assert_array_equal(window, maps.values[0])


def test_planted_cube_gives_stable_maps() -> None:
    """A planted cube with one regime: its pattern's zones are stable.

    One regime means every cell's series is its pattern value plus noise,
    so the same cells group together in every window.
    """
    planted = make_planted(
        seed=0, n_time=60, n_lat=8, n_lon=10, n_regimes=1, noise_ratio=0.1
    )
    maps = cluster_windows(planted.cube, 3, window=20, step=10).values

    # Consecutive maps keep at least 90 % of the land cells' numbers: the
    # noise is a tenth of the pattern, so only cells at a zone border move.
    land = planted.land
    for before, after in zip(maps[:-1], maps[1:], strict=True):
        assert (before[land] == after[land]).mean() >= 0.9
        np.testing.assert_array_equal(after[~land], -1)


def test_pluggable_algorithm_and_errors() -> None:
    """A custom algorithm is called per window; bad inputs are named."""
    cube, _ = _zoned_cube()
    calls: list[int] = []

    def first_feature(X: np.ndarray, k: int, seed: int) -> np.ndarray:
        calls.append(X.shape[0])
        return (X[:, 0] > np.median(X[:, 0])).astype(np.int64)

    cluster_windows(cube, 2, window=20, step=20, algorithm=first_feature)
    assert calls == [45, 45]
    with pytest.raises(ClusteringInputError, match="complete cells"):
        cluster_windows(cube, 50, window=20, step=20)
    with pytest.raises(ClusteringInputError, match="not usable"):
        cluster_windows(cube, 2, window=20, step=20, variables=["nope"])
