"""HEDGTC: hybrid ensemble deep graph temporal clustering.

Clusters time steps (each sample is a day's maps of several variables) in
the stages of ``METHODS.md`` section 3, every stage kept in the result:

1. **base runs**: each base algorithm (k-means, Gaussian mixture, Ward
   agglomerative; DEC and DSC when ``engine.clustering.dec`` and
   ``engine.clustering.dsc`` provide them, opt-in by name) run with
   several seeds, in parallel on a Dask cluster when asked
   (:func:`run_members`);
2. **homogeneous ensembles**: each algorithm's runs merged by their
   co-association, thresholded, then spectral clustering
   (:func:`engine.clustering.consensus.spectral_consensus`);
3. **heterogeneous ensemble** over the per-algorithm consensus labels,
   with the *dual consensus*: their co-occurrence cut by spectral
   clustering, and the NMF of the co-occurrence; both kept, with their
   agreement (ARI);
4. **graph attention autoencoder** on the co-occurrence graph
   (:mod:`engine.clustering.gat`), whose embedding is clustered by
   Student's t self-training into the final labels;
5. optionally (``temporal_whiten``, ``temporal_window``,
   ``temporal_refine``; our addition, not the paper's) persistence in
   time: base members and the network on samples whitened by the noise
   seen between consecutive steps and/or smoothed over neighbouring
   steps, and a last stage that refines the GAT labels and the
   consensus labels of every stage by a sticky hidden Markov model,
   keeping the refinement the model finds most likely
   (:mod:`engine.clustering.temporal`).

Base algorithms are *members*: plain functions ``(X, k, seed) -> labels``
of module level, so that they pickle to Dask workers. :data:`MEMBERS`
holds the built-in ones by name; any other such callable can be passed to
:func:`run_hedgtc` through ``members``.

Typical use::

    from engine.clustering.hedgtc import HEDGTCConfig, run_hedgtc

    result = run_hedgtc(samples, 4, HEDGTCConfig.quick())
    result.labels                       # (time,) final regimes
    result.heterogeneous_spectral       # one half of the dual consensus
    result.attention[0][1]              # (E, heads) first-layer attention

The members and their Dask runner live in
:mod:`engine.clustering.members` (no torch import, so workers start
fast) and are re-exported here.

References
----------
.. [1] HEDGTC: hybrid ensemble deep graph temporal clustering,
   arXiv:2409.12590.
.. [2] Strehl, A. and Ghosh, J. (2002). Cluster ensembles. JMLR 3.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from engine.clustering.consensus import (
    co_association,
    nmf_consensus,
    relabel_to_match,
    spectral_consensus,
)
from engine.clustering.control import (
    Cancel,
    ClusteringCancelled,
    Progress,
    check_cancel,
    report,
    scaled_progress,
)
from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
from engine.clustering.gat import GATConfig, fit_gat_clusters
from engine.clustering.members import (
    MEMBERS,
    Member,
    MemberTask,
    dec_member,
    deep_members,
    dsc_member,
    gmm_member,
    kmeans_member,
    run_members,
    ward_member,
)
from engine.clustering.prepare import Samples
from engine.clustering.temporal import (
    refine_best,
    smooth_in_time,
    whiten_by_differences,
)

__all__ = [
    "MEMBERS",
    "ClusteringCancelled",
    "HEDGTCConfig",
    "HEDGTCResult",
    "Member",
    "MemberTask",
    "dec_member",
    "deep_members",
    "dsc_member",
    "gmm_member",
    "kmeans_member",
    "member_seeds",
    "run_hedgtc",
    "run_members",
    "ward_member",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Configuration and result
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HEDGTCConfig:
    """Settings of :func:`run_hedgtc`.

    Parameters
    ----------
    k
        Number of clusters (regimes) at every stage; ``run_hedgtc``'s
        ``k`` overrides it. 7 as in DSC's and HEDGTC's ERA5 runs.
    algorithms
        Names of the base members, keys of :data:`MEMBERS`,
        :func:`deep_members` or ``run_hedgtc``'s ``members``.
    n_runs
        Runs (seeds) per algorithm.
    deep_runs
        Runs per deep member (DEC, DSC: members that take prepared
        samples), which train a network each and take seconds to a minute
        where the others take milliseconds; ``None`` uses ``n_runs``.
    seed
        Run ``r`` of every algorithm uses seed ``seed + r``; the consensus
        and the network use ``seed``.
    threshold
        Co-associations below it are cut before each homogeneous spectral
        consensus (0.5: pairs together in fewer than half the runs).
    heterogeneous_threshold
        The same for the spectral half of the dual consensus.
    gat
        Settings of the graph attention autoencoder.
    n_workers
        Dask worker processes of a local cluster for the base runs; 0
        runs them serially (no Dask needed).
    scheduler_address
        Address of a running Dask scheduler to use instead of a local
        cluster.
    temporal_whiten
        Give the base members and the network the samples whitened by
        the noise covariance of consecutive steps
        (:func:`whiten_by_differences`) instead of the samples; deep
        members get the samples unchanged.
    temporal_window
        Half-width ``w`` of the running mean in time applied to the
        samples the base members see (:func:`smooth_in_time`, after the
        whitening when asked); 0 gives them single steps. Deep members
        get the samples unsmoothed (DSC has its own window).
    temporal_refine
        Add a last stage: the GAT labels and the consensus labels of
        every stage each refined by a sticky hidden Markov model over
        time on the samples, keeping the most likely refinement
        (:func:`refine_best`).
    """

    k: int = 7
    algorithms: tuple[str, ...] = ("kmeans", "gmm", "ward")
    n_runs: int = 10
    deep_runs: int | None = None
    seed: int = 0
    threshold: float = 0.5
    heterogeneous_threshold: float = 0.5
    gat: GATConfig = field(default_factory=GATConfig)
    n_workers: int = 0
    scheduler_address: str | None = None
    temporal_whiten: bool = False
    temporal_window: int = 0
    temporal_refine: bool = False

    def __post_init__(self) -> None:
        """Check the ranges, naming the bad setting."""
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        checks = [
            (self.k >= 1, "k must be at least 1"),
            (len(self.algorithms) >= 1, "give at least one algorithm"),
            (
                len(set(self.algorithms)) == len(self.algorithms),
                "algorithms must not repeat",
            ),
            (self.n_runs >= 1, "n_runs must be at least 1"),
            (
                self.deep_runs is None or self.deep_runs >= 1,
                "deep_runs must be at least 1 (or None: n_runs)",
            ),
            (0.0 <= self.threshold <= 1.0, "threshold must be in [0, 1]"),
            (
                0.0 <= self.heterogeneous_threshold <= 1.0,
                "heterogeneous_threshold must be in [0, 1]",
            ),
            (self.n_workers >= 0, "n_workers must be >= 0 (0: serial)"),
            (self.temporal_window >= 0, "temporal_window must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ClusteringConfigError(f"HEDGTCConfig: {message}")

    @classmethod
    def quick(cls, **overrides: Any) -> HEDGTCConfig:
        """A preset that runs in seconds on a few hundred days.

        Five runs per algorithm and a shorter network training (100
        pretraining and at most 50 self-training epochs); any field can
        be overridden by keyword.
        """
        gat = GATConfig(pretrain_epochs=100, cluster_epochs=50)
        return replace(cls(n_runs=5, gat=gat), **overrides)


@dataclass
class HEDGTCResult:
    """Every stage of one HEDGTC run.

    Consensus labels of every stage are renumbered (Hungarian matching)
    to agree best with ``heterogeneous_spectral``, so that one regime has
    one number, hence one colour, across stages. Base runs keep their own
    numbers.

    Attributes
    ----------
    k
        Number of clusters asked for.
    base_labels
        Algorithm name to the labels of its runs, each ``(samples,)``.
    seeds
        Algorithm name to the seed of each run, in the same order.
    homogeneous_co_association
        Algorithm name to its runs' co-association, ``(samples,
        samples)`` in [0, 1].
    homogeneous_labels
        Algorithm name to its homogeneous consensus, ``(samples,)``.
    all_runs_co_association
        Co-association over every base run of every algorithm,
        ``(samples, samples)``; breaks ties when the graph is built.
    co_occurrence
        Heterogeneous co-occurrence of the homogeneous consensus labels,
        ``(samples, samples)``, values in multiples of ``1 /
        algorithms``.
    heterogeneous_spectral
        Spectral half of the dual consensus, ``(samples,)``.
    heterogeneous_nmf
        NMF half of the dual consensus, ``(samples,)``.
    dual_agreement
        ARI between the two halves, 1 when they agree.
    edge_index
        Graph of the autoencoder, ``(2, E)`` int64 (``j -> i``,
        self-loops included).
    edge_weight
        Consensus weight of each edge, ``(E,)``.
    features
        Node features fed to the network, ``(samples, F)``.
    embedding
        Node embedding, ``(samples, D)``.
    soft_assignment
        Student's t assignment of the embedding, ``(samples, k)``.
    attention
        Per GAT layer ``(edge_index (2, E), alpha (E, heads))``.
    labels
        Final cluster of each sample, ``(samples,)`` int64.
    history
        One dict per stage: ``stage``, ``seconds`` and stage figures.
    gat_history
        One dict per network epoch (see
        :class:`engine.clustering.gat.GATClustering`).
    config
        The settings used, with ``k`` as run.
    """

    k: int
    base_labels: dict[str, list[np.ndarray]]
    seeds: dict[str, list[int]]
    homogeneous_co_association: dict[str, np.ndarray]
    homogeneous_labels: dict[str, np.ndarray]
    all_runs_co_association: np.ndarray
    co_occurrence: np.ndarray
    heterogeneous_spectral: np.ndarray
    heterogeneous_nmf: np.ndarray
    dual_agreement: float
    edge_index: np.ndarray
    edge_weight: np.ndarray
    features: np.ndarray
    embedding: np.ndarray
    soft_assignment: np.ndarray
    attention: list[tuple[np.ndarray, np.ndarray]]
    labels: np.ndarray
    history: list[dict[str, Any]]
    gat_history: list[dict[str, float | str]]
    config: HEDGTCConfig

    def stage_labels(self) -> dict[str, np.ndarray]:
        """Labels of every consensus stage, by name, for comparison.

        Returns
        -------
        dict
            ``"homogeneous:<algorithm>"`` per algorithm,
            ``"heterogeneous_spectral"``, ``"heterogeneous_nmf"`` and
            ``"final"``, each ``(samples,)``.
        """
        stages = {
            f"homogeneous:{name}": labels
            for name, labels in self.homogeneous_labels.items()
        }
        stages["heterogeneous_spectral"] = self.heterogeneous_spectral
        stages["heterogeneous_nmf"] = self.heterogeneous_nmf
        stages["final"] = self.labels
        return stages


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def member_seeds(
    config: HEDGTCConfig, members: Mapping[str, Member]
) -> dict[str, list[int]]:
    """The seeds of each algorithm's base runs.

    Parameters
    ----------
    config
        Its ``algorithms``, ``n_runs``, ``deep_runs`` and ``seed``.
    members
        Name to member for every algorithm of the config; members that
        take prepared samples (``needs_samples``: DEC, DSC) are the deep
        ones.

    Returns
    -------
    dict
        Algorithm name to ``[seed, seed + 1, ...]``: ``deep_runs`` seeds
        for a deep member (``n_runs`` when ``deep_runs`` is None),
        ``n_runs`` for the others.
    """
    seeds = {}
    for name in config.algorithms:
        deep = getattr(members[name], "needs_samples", False)
        count = config.deep_runs if deep and config.deep_runs else config.n_runs
        seeds[name] = [config.seed + run for run in range(count)]
    return seeds


def run_hedgtc(
    samples_or_X: Samples | np.ndarray,
    k: int | None = None,
    config: HEDGTCConfig | None = None,
    *,
    members: Mapping[str, Member] | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    client: Any | None = None,
) -> HEDGTCResult:
    """Cluster samples by HEDGTC, keeping every stage.

    Parameters
    ----------
    samples_or_X
        Prepared samples (:class:`engine.clustering.prepare.Samples`) or
        their feature matrix ``(samples, features)``, finite.
    k
        Number of clusters; ``None`` takes ``config.k``.
    config
        Settings; ``None`` uses the defaults of :class:`HEDGTCConfig`.
    members
        Extra or replacing members by name, each ``(X, k, seed) ->
        labels`` at module level (to pickle for Dask); looked up before
        :data:`MEMBERS` and :func:`deep_members`.
    progress
        Called with one dict per report: ``"stage"`` (``"members"``,
        ``"homogeneous"``, ``"heterogeneous"`` or ``"gat"``) and
        ``"fraction"`` of the whole run (members up to 0.6, the
        consensus stages to 0.7, the network to 1), plus the stage's own
        entries.
    cancel
        Token with ``is_set()``, checked between steps; once set,
        :class:`ClusteringCancelled` is raised.
    client
        A ``distributed.Client`` for the base runs; otherwise
        ``config.scheduler_address`` or ``config.n_workers`` decide.

    Returns
    -------
    HEDGTCResult
        Base runs, consensus matrices and labels of each stage, graph,
        embedding, attention, final labels and history.

    Raises
    ------
    ClusteringInputError
        ``X`` is not finite and 2-D, or ``k`` does not fit the samples.
    ClusteringConfigError
        An algorithm name is unknown.
    ClusteringCancelled
        ``cancel()`` returned True.
    """
    # Step 1: inputs, members and settings.
    config = config or HEDGTCConfig()
    k = config.k if k is None else int(k)
    config = replace(config, k=k)
    X = samples_or_X.X if isinstance(samples_or_X, Samples) else samples_or_X
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ClusteringInputError(
            f"X must be finite (samples, features), got shape {X.shape}; "
            "prepare it with engine.clustering.prepare.prepare_samples"
        )
    if not 2 <= k <= X.shape[0]:
        raise ClusteringInputError(
            f"k={k} clusters for {X.shape[0]} samples; choose 2 <= k <= samples"
        )
    available = {**MEMBERS, **deep_members(), **(members or {})}
    unknown = [name for name in config.algorithms if name not in available]
    if unknown:
        raise ClusteringConfigError(
            f"unknown algorithm(s) {unknown}; available: {sorted(available)}"
        )

    # Deep members (DEC, DSC) take the prepared samples, the others X,
    # whitened and smoothed in time when asked; the network sees X or
    # its whitened form.
    network_X = (
        whiten_by_differences(X, seed=config.seed) if config.temporal_whiten else X
    )
    member_X = smooth_in_time(network_X, window=config.temporal_window)
    inputs: dict[str, Any] = {}
    for name in config.algorithms:
        if getattr(available[name], "needs_samples", False):
            if not isinstance(samples_or_X, Samples):
                raise ClusteringInputError(
                    f"algorithm {name!r} needs prepared Samples, not a bare "
                    "feature matrix; pass prepare_samples(...) to run_hedgtc"
                )
            inputs[name] = samples_or_X
        else:
            inputs[name] = member_X
    history: list[dict[str, Any]] = []

    # Step 2: base runs, every algorithm with every seed.
    start = time.perf_counter()
    seeds = member_seeds(config, available)
    tasks = [
        MemberTask(name, available[name], inputs[name], k, seed)
        for name in config.algorithms
        for seed in seeds[name]
    ]
    members_progress = scaled_progress(progress, 0.0, 0.6)
    if client is not None:
        runs = run_members(
            tasks, client=client, progress=members_progress, cancel=cancel
        )
    else:
        runs = run_members(
            tasks,
            scheduler_address=config.scheduler_address,
            n_workers=config.n_workers,
            progress=members_progress,
            cancel=cancel,
        )
    base_labels, first = {}, 0
    for name in config.algorithms:
        base_labels[name] = runs[first : first + len(seeds[name])]
        first += len(seeds[name])
    history.append(
        {"stage": "members", "seconds": time.perf_counter() - start, "runs": len(runs)}
    )

    # Step 3: homogeneous ensembles, one consensus per algorithm.
    start = time.perf_counter()
    co_associations: dict[str, np.ndarray] = {}
    homogeneous: dict[str, np.ndarray] = {}
    for done, name in enumerate(config.algorithms, start=1):
        check_cancel(cancel)
        co_associations[name] = co_association(base_labels[name])
        homogeneous[name] = spectral_consensus(
            base_labels[name], k, threshold=config.threshold, seed=config.seed
        )
        report(
            progress,
            "homogeneous",
            0.6 + 0.05 * done / len(config.algorithms),
            algorithm=name,
        )
    history.append({"stage": "homogeneous", "seconds": time.perf_counter() - start})

    # Step 4: heterogeneous ensemble with the dual consensus.
    start = time.perf_counter()
    check_cancel(cancel)
    consensus_runs = [homogeneous[name] for name in config.algorithms]
    co_occurrence = co_association(consensus_runs)
    spectral = spectral_consensus(
        consensus_runs, k, threshold=config.heterogeneous_threshold, seed=config.seed
    )
    nmf = relabel_to_match(spectral, nmf_consensus(consensus_runs, k, seed=config.seed))
    agreement = float(adjusted_rand_score(spectral, nmf))
    all_runs = co_association(runs)
    report(progress, "heterogeneous", 0.7, dual_agreement=agreement)
    history.append(
        {
            "stage": "heterogeneous",
            "seconds": time.perf_counter() - start,
            "dual_agreement": agreement,
        }
    )

    # Step 5: graph attention autoencoder and Student's t self-training.
    start = time.perf_counter()
    network = fit_gat_clusters(
        network_X,
        co_occurrence,
        k,
        config.gat,
        tie_breaker=all_runs,
        progress=scaled_progress(progress, 0.7, 1.0),
        cancel=cancel,
    )
    history.append(
        {
            "stage": "gat",
            "seconds": time.perf_counter() - start,
            "edges": int(network.edge_index.shape[1]),
            "epochs": len(network.history),
        }
    )

    # Step 6: optional refinement by persistence in time, started from
    # the network's labels and from every consensus, the most likely kept.
    start = time.perf_counter()
    final = network.labels
    if config.temporal_refine:
        check_cancel(cancel)
        starts = {
            "gat": network.labels,
            "heterogeneous_spectral": spectral,
            "heterogeneous_nmf": nmf,
            **{f"homogeneous:{name}": homogeneous[name] for name in config.algorithms},
        }
        final, best, scores = refine_best(X, list(starts.values()), k, seed=config.seed)
        history.append(
            {
                "stage": "temporal",
                "seconds": time.perf_counter() - start,
                "start": list(starts)[best],
                "log_likelihood": dict(zip(starts, scores, strict=True)),
                "ari_refined_vs_gat": float(adjusted_rand_score(network.labels, final)),
            }
        )

    # Step 7: one number per regime across stages.
    homogeneous = {
        name: relabel_to_match(spectral, labels) for name, labels in homogeneous.items()
    }
    final = relabel_to_match(spectral, final)
    history.append(
        {
            "stage": "final",
            "seconds": 0.0,
            "ari_final_vs_spectral": float(adjusted_rand_score(spectral, final)),
        }
    )
    logger.debug("HEDGTC stages: %s", history)

    return HEDGTCResult(
        k=k,
        base_labels=base_labels,
        seeds={name: list(seeds[name]) for name in config.algorithms},
        homogeneous_co_association=co_associations,
        homogeneous_labels=homogeneous,
        all_runs_co_association=all_runs,
        co_occurrence=co_occurrence,
        heterogeneous_spectral=spectral,
        heterogeneous_nmf=nmf,
        dual_agreement=agreement,
        edge_index=network.edge_index,
        edge_weight=network.edge_weight,
        features=network.features,
        embedding=network.embedding,
        soft_assignment=network.soft_assignment,
        attention=network.attention,
        labels=final,
        history=history,
        gat_history=network.history,
        config=config,
    )
