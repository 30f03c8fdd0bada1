"""Base members of HEDGTC's ensembles and their Dask runner.

A *member* is a base clustering algorithm as a plain function ``(X, k,
seed) -> labels``, defined at module level so that it pickles to Dask
workers, and pure, so that the same arguments give the same labels
wherever it runs. :data:`MEMBERS` holds the built-in ones (k-means,
Gaussian mixture, Ward agglomerative); :func:`deep_members` adds DEC and
DSC when ``engine.clustering.dsc`` provides them. :func:`run_members` runs
a list of :class:`MemberTask` on a Dask cluster (a loopback
``LocalCluster`` it starts, a scheduler address, or a given client) or
serially.

This module imports neither torch nor torch-geometric, so that workers
start fast; a deep member imports torch itself, with one thread.

Notes
-----
Ward linkage is deterministic, so its seeds would all give the same
partition; its member therefore clusters a seeded random subspace (70 %)
of the features, the usual way to make a deterministic algorithm give an
ensemble. k-means members use one start each (``n_init=1``): the ensemble,
not the member, does the averaging over starts.
"""

from __future__ import annotations

import os
import sys
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.clustering.baselines import run_gmm, run_kmeans, run_ward
from engine.clustering.control import Cancel, Progress, check_cancel, report
from engine.clustering.errors import ClusteringWarning

__all__ = [
    "MEMBERS",
    "Member",
    "MemberTask",
    "dec_member",
    "deep_members",
    "dsc_member",
    "gmm_member",
    "kmeans_member",
    "run_members",
    "ward_member",
]

#: A base algorithm: ``member(X, k, seed) -> labels`` with ``X`` of shape
#: ``(samples, features)`` and labels ``(samples,)``; must be a pure
#: function of its arguments, defined at module level so that it pickles.
Member = Callable[[np.ndarray, int, int], np.ndarray]

# Share of the features each Ward member sees.
_WARD_SUBSPACE = 0.7


# ---------------------------------------------------------------------------
# Members
# ---------------------------------------------------------------------------


def kmeans_member(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means with one k-means++ start drawn from ``seed``.

    Shapes
    ------
    - X: ``(samples, features)``
    - output: ``(samples,)`` int64
    """
    return run_kmeans(X, k, seed=seed, n_init=1)


def gmm_member(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Diagonal Gaussian mixture initialised from ``seed``.

    Shapes
    ------
    - X: ``(samples, features)``
    - output: ``(samples,)`` int64
    """
    return run_gmm(X, k, seed=seed)


def ward_member(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Ward agglomerative clustering of a seeded 70 % feature subspace.

    Shapes
    ------
    - X: ``(samples, features)``
    - output: ``(samples,)`` int64
    """
    # A seeded random subset of the features (all of them for one feature).
    rng = np.random.default_rng(seed)
    n_features = np.shape(X)[1]
    n_kept = max(1, int(round(_WARD_SUBSPACE * n_features)))
    columns = np.sort(rng.choice(n_features, size=n_kept, replace=False))

    # Deterministic linkage on that subspace.
    return run_ward(np.asarray(X)[:, columns], k)


#: Built-in members by name; ``deep_members()`` adds DEC and DSC.
MEMBERS: dict[str, Member] = {
    "kmeans": kmeans_member,
    "gmm": gmm_member,
    "ward": ward_member,
}


def deep_members() -> dict[str, Member]:
    """DEC and DSC members, when their modules import.

    Returns
    -------
    dict
        ``{"dec": dec_member, "dsc": dsc_member}`` for the runners that
        import (``engine.clustering.dec.run_dec``,
        ``engine.clustering.dsc.run_dsc``); empty when neither does.

    Notes
    -----
    Both runners take prepared :class:`engine.clustering.prepare.Samples`,
    not a feature matrix (DSC rebuilds its grid from ``X`` and the land
    mask when the samples carry none, so ``PrepareConfig(grid=True)`` is
    not needed): their members carry ``needs_samples = True`` and
    :func:`engine.clustering.hedgtc.run_hedgtc` hands them the samples.
    Each run uses ``DSCConfig.quick(seed=seed, threads=1)``; DSC's LSTM
    sees a window of 2 steps either side, DEC no temporal context.
    """
    found: dict[str, Member] = {}
    try:
        from engine.clustering.dec import run_dec  # noqa: F401

        found["dec"] = dec_member
    except ImportError:
        pass
    try:
        from engine.clustering.dsc import run_dsc  # noqa: F401

        found["dsc"] = dsc_member
    except ImportError:
        pass
    return found


def dec_member(samples: Any, k: int, seed: int) -> np.ndarray:
    """DEC (``engine.clustering.dec.run_dec``), quick preset, one thread.

    Shapes
    ------
    - samples: prepared samples with ``X (samples, features)``
    - output: ``(samples,)`` int64
    """
    from engine.clustering.dec import run_dec
    from engine.clustering.dsc import DSCConfig

    result = run_dec(samples, k, DSCConfig.quick(seed=seed, threads=1))
    return np.asarray(result.labels, dtype=np.int64)


def dsc_member(samples: Any, k: int, seed: int) -> np.ndarray:
    """DSC (``engine.clustering.dsc.run_dsc``), quick preset, one thread.

    Shapes
    ------
    - samples: prepared samples with ``X (samples, features)`` and mask
    - output: ``(samples,)`` int64
    """
    from engine.clustering.dsc import DSCConfig, run_dsc

    result = run_dsc(samples, k, DSCConfig.quick(seed=seed, threads=1))
    return np.asarray(result.labels, dtype=np.int64)


# The deep members take prepared samples rather than a feature matrix.
dec_member.needs_samples = True  # type: ignore[attr-defined]
dsc_member.needs_samples = True  # type: ignore[attr-defined]


@dataclass(frozen=True)
class MemberTask:
    """One base run: a member applied to samples with one seed.

    Attributes
    ----------
    algorithm
        Name of the member, the key of the run in the result.
    member
        The member function ``(X, k, seed) -> labels``.
    X
        Samples, shape ``(samples, features)``, or the prepared
        :class:`engine.clustering.prepare.Samples` for a member with
        ``needs_samples``; the same object in several tasks is sent to
        the Dask workers once.
    k
        Number of clusters.
    seed
        Seed of this run.
    """

    algorithm: str
    member: Member
    X: Any
    k: int
    seed: int


def run_members(
    tasks: Sequence[MemberTask],
    *,
    client: Any | None = None,
    scheduler_address: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> list[np.ndarray]:
    """Run base members, on a Dask cluster or one after the other.

    Parameters
    ----------
    tasks
        The runs, each a pure function of its fields.
    client
        A ``distributed.Client`` to use as it is (not closed here).
    scheduler_address
        Address of a running scheduler (``"tcp://host:8786"``) to connect
        to, when no ``client`` is given.
    n_workers
        Worker processes of the ``LocalCluster`` started (on 127.0.0.1,
        dashboard off) and closed here when neither ``client`` nor
        ``scheduler_address`` is given; 0 runs the tasks serially in this
        process.
    threads_per_worker
        Threads per worker of that cluster; 1 keeps members (and torch in
        them) from competing for cores.
    progress
        Called with ``{"stage": "members", "fraction", "done",
        "total"}`` as each run finishes.
    cancel
        Token with ``is_set()``, checked between runs; once set, the rest
        is cancelled and :class:`ClusteringCancelled` raised.

    Returns
    -------
    list of numpy.ndarray
        Labels of each task, in task order, each ``(samples,)`` int64.

    Warns
    -----
    ClusteringWarning
        Dask (the optional ``dask`` extra) is not installed: the tasks run
        serially.

    Notes
    -----
    Workers get ``OMP_NUM_THREADS=1`` (and MKL, OpenBLAS) and, when torch
    is loaded, ``torch.set_num_threads(1)``. The results do not depend on
    where a task runs: a member is a pure function of its arguments.
    """
    # Serial when asked, or when Dask is missing.
    tasks = list(tasks)
    if client is None and scheduler_address is None and n_workers == 0:
        return _run_serial(tasks, progress=progress, cancel=cancel)
    try:
        import distributed
    except ImportError:
        warnings.warn(
            "Dask is not installed, so the ensemble runs serially; install "
            "the optional extra (pip install 'greenbed[dask]') to run it in "
            "parallel",
            ClusteringWarning,
            stacklevel=2,
        )
        return _run_serial(tasks, progress=progress, cancel=cancel)

    # The client: given, connected to an address, or on a new local cluster.
    cluster = own_client = None
    if client is None:
        if scheduler_address is not None:
            own_client = client = distributed.Client(scheduler_address)
        else:
            from engine.dask_local import local_cluster

            cluster = local_cluster(n_workers, threads_per_worker)
            own_client = client = distributed.Client(cluster)
    try:
        return _run_on_client(client, tasks, progress=progress, cancel=cancel)
    finally:
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()


def _run_serial(
    tasks: list[MemberTask], *, progress: Progress | None, cancel: Cancel | None
) -> list[np.ndarray]:
    """Each task in turn, in this process."""
    labels = []
    for done, task in enumerate(tasks, start=1):
        check_cancel(cancel)
        labels.append(_execute(task.member, task.X, task.k, task.seed))
        if progress is not None:
            report(progress, "members", done / len(tasks), done=done, total=len(tasks))
    return labels


def _run_on_client(
    client: Any,
    tasks: list[MemberTask],
    *,
    progress: Progress | None,
    cancel: Cancel | None,
) -> list[np.ndarray]:
    """Submit every task, then gather them in order as they complete."""
    import distributed

    # One thread per worker for numerical libraries and torch.
    client.run(_limit_threads)

    # Each distinct sample array sent once, under a key of this call: with
    # content-hashed keys, a repeated call on the same samples shares the
    # key of a previous call's data, which the scheduler may be releasing
    # as the new tasks arrive (they then fail with "lost dependencies").
    scattered: dict[int, Any] = {}
    for task in tasks:
        if id(task.X) not in scattered:
            scattered[id(task.X)] = client.scatter(task.X, hash=False)

    # Submit, with unique keys so that repeated calls never share results.
    batch = uuid.uuid4().hex[:8]
    futures = [
        client.submit(
            _execute,
            task.member,
            scattered[id(task.X)],
            task.k,
            task.seed,
            key=f"hedgtc-{task.algorithm}-{task.seed}-{i}-{batch}",
        )
        for i, task in enumerate(tasks)
    ]

    # Wait, reporting progress and honouring cancel.
    position = {future.key: i for i, future in enumerate(futures)}
    labels: list[np.ndarray | None] = [None] * len(futures)
    try:
        for done, future in enumerate(distributed.as_completed(futures), start=1):
            check_cancel(cancel)
            labels[position[future.key]] = future.result()
            report(
                progress,
                "members",
                done / len(futures),
                done=done,
                total=len(futures),
            )
    except BaseException:
        client.cancel(futures)
        raise
    return [np.asarray(run, dtype=np.int64) for run in labels]


def _execute(member: Member, X: Any, k: int, seed: int) -> np.ndarray:
    """Run one member, as a worker does (one numerical thread)."""
    _limit_threads()
    return np.asarray(member(X, k, seed), dtype=np.int64).ravel()


def _limit_threads() -> None:
    """One thread for OpenMP, BLAS and torch in this (worker) process."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
