"""Tests of the HEDGTC driver and its Dask members, ``engine.clustering.hedgtc``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from engine.clustering.errors import (
    ClusteringConfigError,
    ClusteringInputError,
    ClusteringWarning,
)
from engine.clustering.gat import GATConfig
from engine.clustering.hedgtc import (
    MEMBERS,
    ClusteringCancelled,
    HEDGTCConfig,
    MemberTask,
    kmeans_member,
    run_hedgtc,
    run_members,
    ward_member,
)
from engine.clustering.prepare import prepare_samples
from engine.clustering.synthetic import make_planted
from engine.dask_local import local_cluster

distributed = pytest.importorskip("distributed")

#: A small network and three runs per algorithm: about a second a run.
TINY = HEDGTCConfig(
    n_runs=3,
    gat=GATConfig(
        n_neighbours=5,
        pca_components=8,
        hidden=8,
        heads=2,
        embedding_dim=4,
        pretrain_epochs=30,
        cluster_epochs=20,
    ),
)


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray]:
    """60 days on 8 x 10 cells, 3 regimes, low noise: samples and truth."""
    planted = make_planted(
        seed=0, n_time=60, n_lat=8, n_lon=10, n_regimes=3, noise_ratio=0.3
    )
    return prepare_samples(planted.cube).X, planted.regime


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """One loopback LocalCluster of 2 single-thread workers per module."""
    cluster = local_cluster(2)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _tasks(X: np.ndarray) -> list[MemberTask]:
    """Every built-in member with two seeds."""
    return [
        MemberTask(name, member, X, 3, seed)
        for name, member in MEMBERS.items()
        for seed in (0, 1)
    ]


def test_hedgtc_recovers_planted_regimes(planted: tuple) -> None:
    """Low noise: every consensus stage and the final labels find them."""
    X, truth = planted
    result = run_hedgtc(X, 3, TINY)

    # ARI > 0.9: at noise 0.3 the three regimes are far apart; the margin
    # allows a day or two on a regime change to go either way.
    assert adjusted_rand_score(truth, result.labels) > 0.9
    assert adjusted_rand_score(truth, result.heterogeneous_spectral) > 0.9
    assert adjusted_rand_score(truth, result.heterogeneous_nmf) > 0.9


def test_every_stage_is_in_the_result(planted: tuple) -> None:
    """Base runs, matrices, dual consensus, graph, embedding, attention."""
    X, _ = planted
    result = run_hedgtc(X, 3, TINY)
    n = X.shape[0]

    # Base runs and homogeneous ensembles, per algorithm.
    assert set(result.base_labels) == {"kmeans", "gmm", "ward"}
    for name, runs in result.base_labels.items():
        assert len(runs) == 3 and all(run.shape == (n,) for run in runs)
        assert result.seeds[name] == [0, 1, 2]
        assert result.homogeneous_co_association[name].shape == (n, n)
        assert result.homogeneous_labels[name].shape == (n,)

    # Heterogeneous ensemble and its dual consensus.
    assert result.co_occurrence.shape == (n, n)
    np.testing.assert_array_equal(np.diag(result.co_occurrence), 1.0)
    assert result.heterogeneous_spectral.shape == (n,)
    assert result.heterogeneous_nmf.shape == (n,)
    assert -1.0 <= result.dual_agreement <= 1.0

    # Graph, embedding, attention, labels and history.
    n_edges = result.edge_index.shape[1]
    assert result.edge_weight.shape == (n_edges,)
    assert result.embedding.shape == (n, 4)
    assert result.soft_assignment.shape == (n, 3)
    assert [alpha.shape for _, alpha in result.attention] == [(n_edges, 2)] * 2
    assert result.labels.shape == (n,)
    assert [entry["stage"] for entry in result.history] == [
        "members",
        "homogeneous",
        "heterogeneous",
        "gat",
        "final",
    ]
    assert len(result.gat_history) >= TINY.gat.pretrain_epochs
    assert set(result.stage_labels()) >= {"final", "homogeneous:ward"}


def test_stage_labels_share_numbers(planted: tuple) -> None:
    """Consensus stages are renumbered after the spectral consensus."""
    X, _ = planted
    result = run_hedgtc(X, 3, TINY)

    # Clean input: the stages agree, so the numbers must be equal outright.
    np.testing.assert_array_equal(result.labels, result.heterogeneous_spectral)
    np.testing.assert_array_equal(
        result.homogeneous_labels["kmeans"], result.heterogeneous_spectral
    )


def test_dask_members_match_the_serial_path(planted: tuple, client: object) -> None:
    """Two loopback workers give the labels of the serial path, exactly."""
    X, _ = planted
    serial = run_members(_tasks(X), n_workers=0)
    parallel = run_members(_tasks(X), client=client)
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(one, other)


def test_repeated_calls_on_the_same_samples(planted: tuple, client: object) -> None:
    """Back-to-back calls with the same samples never share their data.

    A call's scattered samples are released as it returns; were they keyed
    by content, the next call's tasks could lose them ("lost
    dependencies"). Ten rounds give the race its chances.
    """
    X, _ = planted
    tasks = _tasks(X)[:2]
    first = run_members(tasks, client=client)
    for _ in range(10):
        again = run_members(tasks, client=client)
        for one, other in zip(first, again, strict=True):
            np.testing.assert_array_equal(one, other)


def test_dask_by_scheduler_address(planted: tuple, client: object) -> None:
    """Connecting by address gives the same labels as the serial path."""
    X, _ = planted
    address = client.scheduler.address  # type: ignore[attr-defined]
    serial = run_members(_tasks(X)[:2], n_workers=0)
    remote = run_members(_tasks(X)[:2], scheduler_address=address)
    for one, other in zip(serial, remote, strict=True):
        np.testing.assert_array_equal(one, other)


def test_hedgtc_on_dask_matches_serial(planted: tuple, client: object) -> None:
    """The whole driver with a client: same base runs, same final labels."""
    X, _ = planted
    serial = run_hedgtc(X, 3, TINY)
    parallel = run_hedgtc(X, 3, TINY, client=client)
    for name in serial.base_labels:
        for one, other in zip(
            serial.base_labels[name], parallel.base_labels[name], strict=True
        ):
            np.testing.assert_array_equal(one, other)
    np.testing.assert_array_equal(serial.labels, parallel.labels)


def test_workers_run_one_torch_thread(client: object) -> None:
    """The driver's thread limit holds in every worker."""
    from engine.clustering.members import _limit_threads

    client.run(_limit_threads)  # type: ignore[attr-defined]
    threads = client.run(  # type: ignore[attr-defined]
        lambda: __import__("torch").get_num_threads()
    )
    assert set(threads.values()) == {1}


def test_serial_fallback_without_dask(
    planted: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No distributed package: a warning, then the serial labels."""
    X, _ = planted
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.warns(ClusteringWarning, match="Dask is not installed"):
        labels = run_members(_tasks(X)[:1], n_workers=2)
    np.testing.assert_array_equal(labels[0], kmeans_member(X, 3, 0))


def test_ward_member_varies_with_the_seed() -> None:
    """Random subspaces make the deterministic linkage an ensemble."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 30))

    # On noise, different subspaces give different partitions.
    assert not np.array_equal(ward_member(X, 4, 0), ward_member(X, 4, 1))
    np.testing.assert_array_equal(ward_member(X, 4, 0), ward_member(X, 4, 0))


def test_custom_member_is_pluggable(planted: tuple) -> None:
    """A member passed by name is run like the built-in ones."""
    X, _ = planted
    config = HEDGTCConfig(
        algorithms=("kmeans", "first_feature"), n_runs=2, gat=TINY.gat
    )
    result = run_hedgtc(X, 3, config, members={"first_feature": _split_first})
    assert set(result.base_labels) == {"kmeans", "first_feature"}


def _split_first(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A toy member: quantile bins of the first feature."""
    edges = np.quantile(X[:, 0], np.linspace(0, 1, k + 1)[1:-1])
    return np.digitize(X[:, 0], edges)


def test_progress_and_cancel(planted: tuple) -> None:
    """Progress names each stage; cancel stops the run."""
    X, _ = planted
    seen: list[dict] = []
    run_hedgtc(X, 3, TINY, progress=seen.append)
    stages = {event["stage"] for event in seen}
    assert {"members", "homogeneous", "heterogeneous", "gat"} <= stages

    # One fraction of the whole run, never decreasing, ending at 1.
    fractions = [event["fraction"] for event in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ClusteringCancelled):
        run_hedgtc(X, 3, TINY, cancel=cancel)


def test_bad_inputs_are_named(planted: tuple) -> None:
    """Unknown algorithm, k out of range, bad settings."""
    X, _ = planted
    with pytest.raises(ClusteringConfigError, match="unknown algorithm"):
        run_hedgtc(X, 3, HEDGTCConfig(algorithms=("nope",)))
    with pytest.raises(ClusteringInputError, match="k=100"):
        run_hedgtc(X, 100, TINY)
    with pytest.raises(ClusteringConfigError, match="n_runs"):
        HEDGTCConfig(n_runs=0)


def test_quick_preset_overrides() -> None:
    """quick() is shorter than the default and takes overrides."""
    quick = HEDGTCConfig.quick(k=4)
    assert quick.k == 4
    assert quick.n_runs < HEDGTCConfig().n_runs
    assert quick.gat.pretrain_epochs < HEDGTCConfig().gat.pretrain_epochs


def test_deep_members_join_when_available() -> None:
    """DEC and DSC take the prepared samples and find the regimes."""
    from engine.clustering.hedgtc import deep_members

    if set(deep_members()) != {"dec", "dsc"}:
        pytest.skip("engine.clustering.dec / dsc not importable")
    planted = make_planted(
        seed=0, n_time=60, n_lat=8, n_lon=10, n_regimes=3, noise_ratio=0.3
    )
    samples = prepare_samples(planted.cube)
    config = HEDGTCConfig(
        algorithms=("kmeans", "dec", "dsc"), n_runs=2, gat=TINY.gat
    )
    result = run_hedgtc(samples, 3, config)

    # Same margin as the classic members: two days may go either way.
    for name in ("dec", "dsc"):
        labels = result.homogeneous_labels[name]
        assert adjusted_rand_score(planted.regime, labels) > 0.9

    # A bare feature matrix cannot feed them: a named error.
    with pytest.raises(ClusteringInputError, match="needs prepared Samples"):
        run_hedgtc(samples.X, 3, config)


def _samples_member(samples: object, k: int, seed: int) -> np.ndarray:
    """A toy deep-like member: takes prepared samples, bins a feature."""
    return _split_first(samples.X, k, seed)


_samples_member.needs_samples = True  # type: ignore[attr-defined]


def test_deep_runs_count_separately() -> None:
    """Members taking samples run deep_runs times, the others n_runs."""
    planted = make_planted(
        seed=1, n_time=40, n_lat=6, n_lon=8, n_regimes=3, noise_ratio=0.3
    )
    samples = prepare_samples(planted.cube)
    config = HEDGTCConfig(
        algorithms=("kmeans", "toy_deep", "gmm"),
        n_runs=3,
        deep_runs=1,
        seed=5,
        gat=TINY.gat,
    )
    result = run_hedgtc(samples, 3, config, members={"toy_deep": _samples_member})

    # Runs and seeds per algorithm, each algorithm's runs its own.
    assert {name: len(runs) for name, runs in result.base_labels.items()} == {
        "kmeans": 3,
        "toy_deep": 1,
        "gmm": 3,
    }
    assert result.seeds == {"kmeans": [5, 6, 7], "toy_deep": [5], "gmm": [5, 6, 7]}
    np.testing.assert_array_equal(
        result.base_labels["toy_deep"][0], _samples_member(samples, 3, 5)
    )
    with pytest.raises(ClusteringConfigError, match="deep_runs"):
        HEDGTCConfig(deep_runs=0)
