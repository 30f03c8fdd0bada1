"""Tests of the one clustering call: run, write, read back, refuse."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
from engine.clustering.metrics import evaluate
from engine.clustering.prepare import PrepareConfig, prepare_samples
from engine.clustering.runner import (
    ClusteringConfig,
    compare_methods,
    load_clustering,
    method_settings,
    run_clustering,
    sweep_k,
)
from engine.clustering.synthetic import make_planted
from engine.clustering.temporal import refine_in_time, smooth_in_time, viterbi

# Tiny, well separated: every method should find the three regimes.
PLANTED = make_planted(seed=1, n_time=48, n_lat=8, n_lon=10, n_regimes=3)
EVERY_FILE = {
    "config.json",
    "labels.nc",
    "labels.csv",
    "composites.nc",
    "metrics.json",
    "metrics.csv",
    "history.json",
}


@pytest.mark.parametrize("method", ["kmeans", "hedgtc"])
def test_run_writes_and_reads_back(tmp_path: Path, method: str) -> None:
    """Every file is written, no temporary is left, labels read back."""
    seeds = 2 if method == "kmeans" else 1
    config = ClusteringConfig(method=method, k=3, seeds=seeds)
    result = run_clustering(PLANTED.cube, config, run_dir=tmp_path)

    # Files, and no leftover temporary names (".name.xxxx").
    names = {path.name for path in tmp_path.iterdir()}
    hedgtc_files = {"stages.npz", "attention.csv"}
    expected = EVERY_FILE | (hedgtc_files if method == "hedgtc" else set())
    assert names == expected

    # Read back: labels, config and metrics equal.
    back = load_clustering(tmp_path)
    np.testing.assert_array_equal(back.labels.values, result.labels.values)
    assert back.config == config
    assert back.metrics["ari"] == pytest.approx(result.metrics["ari"])
    if method == "kmeans":
        assert result.metrics["ari"] > 0.9  # well-separated regimes

    # NetCDF keeps CF units; the CSV has one row per step.
    with xr.open_dataset(tmp_path / "composites.nc") as composites:
        assert composites["t2m"].attrs["units"] == "K"
    assert (tmp_path / "labels.csv").read_text().splitlines()[0] == "time,label"
    assert json.loads((tmp_path / "config.json").read_text())["method"] == method


def test_hedgtc_stages_round_trip(tmp_path: Path) -> None:
    """Co-associations, consensus labels, agreement and attention."""
    config = ClusteringConfig(method="hedgtc", k=3, seeds=1)
    result = run_clustering(PLANTED.cube, config, run_dir=tmp_path)
    n = PLANTED.cube.sizes["time"]

    back = load_clustering(tmp_path).stages
    assert set(back) == {"co_association", "consensus", "agreement", "attention"}
    assert all(m.shape == (n, n) for m in back["co_association"].values())
    np.testing.assert_array_equal(
        back["consensus"]["final"], result.stages["consensus"]["final"]
    )
    assert -1.0 <= back["agreement"] <= 1.0
    assert list(back["attention"].columns) == ["source_time", "target_time", "weight"]


def test_metrics_are_computed_in_the_input_space() -> None:
    """The runner's scores equal evaluate() on the prepared samples."""
    config = ClusteringConfig(method="kmeans", k=3, seeds=1)
    result = run_clustering(PLANTED.cube, config)
    samples = prepare_samples(PLANTED.cube, config.prepare)
    expected = evaluate(samples.X, result.labels.values, truth=PLANTED.regime)

    for name in ("silhouette_cosine", "davies_bouldin", "ari"):
        assert result.metrics[name] == pytest.approx(expected[name])
    assert result.metrics["space"].startswith("input")
    assert np.isnan(result.metrics["stability"])  # one seed: no stability


def test_composites_have_cluster_lat_lon() -> None:
    """Temporal composites: one map per cluster and variable, sea NaN."""
    result = run_clustering(PLANTED.cube, ClusteringConfig(method="ward", k=3, seeds=1))
    composites = result.composites

    assert composites["t2m"].dims == ("cluster", "lat", "lon")
    assert composites.sizes["cluster"] == 3
    assert int(composites["n_steps"].sum()) == PLANTED.cube.sizes["time"]
    assert np.isnan(composites["t2m"].values[:, ~PLANTED.land]).all()


def test_spatial_mode_maps_cells(tmp_path: Path) -> None:
    """Spatial labels are (window_start, lat, lon) with -1 on sea."""
    config = ClusteringConfig(method="kmeans", k=3, mode="spatial", window=12, step=12)
    result = run_clustering(PLANTED.cube, config, run_dir=tmp_path)

    assert result.labels.dims == ("window_start", "lat", "lon")
    assert result.labels.sizes["window_start"] == 4
    assert (result.labels.values[:, ~PLANTED.land] == -1).all()
    assert (result.labels.values[:, PLANTED.land] >= 0).all()
    assert result.composites["t2m"].dims == ("window_start", "cluster")
    back = load_clustering(tmp_path)
    np.testing.assert_array_equal(back.labels.values, result.labels.values)


@pytest.mark.parametrize("method", ["kmeans", "dsc"])
def test_cancel_returns_a_cancelled_result(tmp_path: Path, method: str) -> None:
    """A set token stops the run; nothing is written."""
    cancel = threading.Event()
    cancel.set()
    result = run_clustering(
        PLANTED.cube,
        ClusteringConfig(method=method, k=3),
        run_dir=tmp_path,
        cancel=cancel,
    )
    assert result.cancelled
    assert not any(tmp_path.iterdir())


def test_progress_fraction_runs_to_one() -> None:
    """One fraction of the whole run, never decreasing, ending at 1."""
    events: list[dict] = []
    run_clustering(
        PLANTED.cube,
        ClusteringConfig(method="dec", k=3, seeds=2),
        progress=events.append,
    )
    fractions = [event["fraction"] for event in events]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert {"pretrain", "cluster", "done"} <= {event["stage"] for event in events}


def test_sweep_k_and_compare_methods() -> None:
    """One row per k; one row per method on the same samples."""
    table = sweep_k(PLANTED.cube, PrepareConfig(), [2, 3, 4])
    assert list(table["k"]) == [2, 3, 4]
    assert (np.diff(table["inertia"]) < 0).all()  # more clusters, less inertia

    config = ClusteringConfig(k=3, seeds=1)
    comparison = compare_methods(PLANTED.cube, config, ["kmeans", "ward", "gmm"])
    assert list(comparison.index) == ["kmeans", "ward", "gmm"]
    assert {"silhouette_cosine", "davies_bouldin", "ari", "seconds"} <= set(
        comparison.columns
    )


def test_bad_inputs_are_named() -> None:
    """No time axis, too few steps, k < 2, unknown method or mode."""
    no_time = PLANTED.cube.isel(time=0, drop=True)
    with pytest.raises(ClusteringInputError, match="no time"):
        run_clustering(no_time, ClusteringConfig(method="kmeans", k=3))
    short = PLANTED.cube.isel(time=slice(0, 2))
    with pytest.raises(ClusteringInputError, match="2 time steps for 3 clusters"):
        run_clustering(short, ClusteringConfig(method="kmeans", k=3))
    with pytest.raises(ClusteringConfigError, match="at least 2 clusters"):
        ClusteringConfig(k=1)
    with pytest.raises(ClusteringConfigError, match="method='nope'"):
        ClusteringConfig(method="nope")
    with pytest.raises(ClusteringConfigError, match="spatial mode"):
        ClusteringConfig(method="hedgtc", mode="spatial")
    with pytest.raises(ClusteringInputError, match="missing"):
        load_clustering("/nonexistent/run")


def test_longer_hedgtc_adds_deep_members_on_dask() -> None:
    """The longer preset holds DEC and DSC members and two workers."""
    quick = method_settings("hedgtc", quick=True, seed=0)
    longer = method_settings("hedgtc", quick=False, seed=0)
    assert set(quick.algorithms) == {"kmeans", "gmm", "ward"}
    assert quick.n_workers == 0
    assert {"kmeans", "gmm", "ward", "dec", "dsc"} == set(longer.algorithms)
    assert longer.deep_runs == 3 and longer.n_workers == 2
    with pytest.raises(ClusteringConfigError, match="workers=-1"):
        ClusteringConfig(workers=-1)


def test_config_round_trips_through_a_dict() -> None:
    """to_dict / from_dict give back an equal config."""
    config = ClusteringConfig(
        method="dsc", prepare=PrepareConfig(variables=("t2m",), resample="1D")
    )
    values = json.loads(json.dumps(config.to_dict()))
    assert ClusteringConfig.from_dict(values) == config
    config = ClusteringConfig(method="hedgtc", workers=2, quick=False)
    values = json.loads(json.dumps(config.to_dict()))
    assert ClusteringConfig.from_dict(values) == config


def test_viterbi_prefers_persistence() -> None:
    """A lone step that fits another state slightly better is kept."""
    log_likelihood = np.array([[0.0, -5.0], [0.0, -5.0], [-1.0, 0.0], [0.0, -5.0]])
    assert viterbi(log_likelihood, 0.9).tolist() == [0, 0, 0, 0]
    assert viterbi(log_likelihood, 0.5).tolist() == [0, 0, 1, 0]


def test_temporal_refinement_repairs_noisy_labels() -> None:
    """Refinement from labels with a tenth flipped recovers the regimes."""
    planted = make_planted(seed=2, n_time=120, n_lat=8, n_lon=10, noise_ratio=1.0)
    X = prepare_samples(planted.cube).X
    noisy = planted.regime.copy()
    flipped = np.random.default_rng(0).choice(noisy.size, 12, replace=False)
    noisy[flipped] = (noisy[flipped] + 1) % 4

    refined = refine_in_time(X, noisy, 4)
    assert (refined == planted.regime).mean() > (noisy == planted.regime).mean()
    assert smooth_in_time(X, window=1).shape == X.shape


def test_hedgtc_seeds_share_one_local_cluster(monkeypatch) -> None:
    """Several HEDGTC seeds on Dask start one cluster, not one per seed."""
    import engine.dask_local as dask_local

    pytest.importorskip("distributed", reason="needs the dask extra")
    started = []
    real = dask_local.local_cluster

    def counting(n_workers: int, threads_per_worker: int = 1):
        started.append(n_workers)
        return real(n_workers, threads_per_worker)

    monkeypatch.setattr(dask_local, "local_cluster", counting)
    config = ClusteringConfig(method="hedgtc", k=3, seeds=2, workers=1)
    result = run_clustering(PLANTED.cube, config)
    assert started == [1]
    assert not np.isnan(result.metrics["stability"])
