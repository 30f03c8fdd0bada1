"""Consensus of several clusterings of the same samples.

HEDGTC merges many runs of its base algorithms in two levels: each
algorithm's runs (different seeds) by a *homogeneous* consensus, then the
algorithms' results by a *heterogeneous* one. Every function here takes
the runs as labels, shape ``(runs, samples)``, and returns one partition:

- :func:`co_association`: the share of runs in which two samples share a
  cluster, the matrix all the graph-based consensus functions start from;
- :func:`spectral_consensus`: HEDGTC's homogeneous step (and one half of
  its dual heterogeneous step): the co-association thresholded, then
  spectral clustering on it as a precomputed affinity;
- :func:`nmf_consensus`: the other half, non-negative matrix factorisation
  of the co-association, each sample going to its largest factor;
- :func:`cspa` and :func:`mcla` (Strehl and Ghosh, 2002) and :func:`hbgf`
  (Fern and Brodley, 2004), the classic consensus functions HEDGTC is
  compared with, written here from their definitions;
- :func:`relabel_to_match`: renumbers a partition to agree best with a
  reference (Hungarian assignment), so that a cluster keeps its colour
  from one run to the next on a page.

Notes
-----
No maintained ClusterEnsembles library installs here: ``ensembleclustering``
pins an old scikit-learn that has to be built from source, so the classic
functions are written here from their papers. The graph partitioning that
the papers hand to METIS (CSPA's similarity graph, MCLA's meta-graph) is
done by spectral clustering and average-linkage clustering instead, which
cut the same graphs without balancing the cluster sizes; results can
differ from METIS's on hard cases, not on clean ones. HGPA (hypergraph
partitioning) needs hMETIS and is not provided.

References
----------
.. [1] Strehl, A. and Ghosh, J. (2002). Cluster ensembles: a knowledge
   reuse framework for combining multiple partitions. JMLR 3, 583-617.
.. [2] Fern, X. Z. and Brodley, C. E. (2004). Solving cluster ensemble
   problems by bipartite graph partitioning. ICML.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.decomposition import NMF

from engine.clustering.errors import ClusteringInputError

__all__ = [
    "co_association",
    "cspa",
    "hbgf",
    "mcla",
    "nmf_consensus",
    "relabel_to_match",
    "spectral_consensus",
]

#: Labels of several runs: shape (runs, samples), or a list of (samples,).
LabelRuns = Sequence[np.ndarray] | np.ndarray


def co_association(label_runs: LabelRuns) -> np.ndarray:
    """Share of runs in which each pair of samples shares a cluster.

    Parameters
    ----------
    label_runs
        Labels of each run, shape ``(runs, samples)``; any integers, each
        distinct value of a run being one cluster.

    Returns
    -------
    numpy.ndarray
        Symmetric matrix, shape ``(samples, samples)``, float64 in [0, 1],
        ones on the diagonal.
    """
    # Sum over runs of "same cluster" indicators, H H^T per run.
    runs = _as_runs(label_runs)
    together = np.zeros((runs.shape[1], runs.shape[1]))
    for run in runs:
        members = _indicator(run)
        together += members @ members.T
    return together / runs.shape[0]


def spectral_consensus(
    label_runs: LabelRuns,
    k: int,
    *,
    threshold: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Spectral clustering of the thresholded co-association.

    Parameters
    ----------
    label_runs
        Labels of each run, shape ``(runs, samples)``.
    k
        Number of consensus clusters.
    threshold
        Co-associations below it are set to 0, cutting the links between
        samples that share a cluster in fewer than that share of the runs
        (0.5: a minority of runs); 0 keeps the whole matrix.
    seed
        Seed of the spectral embedding.

    Returns
    -------
    numpy.ndarray
        Consensus cluster of each sample, shape ``(samples,)``, int64 in
        ``0 .. k-1``.
    """
    # Co-association, with weak links cut.
    affinity = co_association(label_runs)
    affinity = np.where(affinity >= threshold, affinity, 0.0)
    return _spectral(affinity, k, seed=seed)


def nmf_consensus(label_runs: LabelRuns, k: int, *, seed: int = 0) -> np.ndarray:
    """Non-negative factorisation of the co-association, ``M ~ W H``.

    Parameters
    ----------
    label_runs
        Labels of each run, shape ``(runs, samples)``.
    k
        Number of factors, hence at most ``k`` consensus clusters.
    seed
        Seed of the factorisation.

    Returns
    -------
    numpy.ndarray
        Consensus cluster of each sample (its largest entry of ``W``),
        shape ``(samples,)``, int64, renumbered ``0 .. m-1`` where ``m <=
        k`` is the number of factors that win a sample.
    """
    # Factorise the co-association; each row of W weighs the k factors.
    matrix = co_association(label_runs)
    _check_k(k, matrix.shape[0])
    model = NMF(n_components=k, init="nndsvda", max_iter=1000, random_state=seed)
    weights = model.fit_transform(matrix)

    # Each sample to its largest factor.
    return _compact(np.argmax(weights, axis=1))


def cspa(label_runs: LabelRuns, k: int, *, seed: int = 0) -> np.ndarray:
    """Cluster-based similarity partitioning (Strehl and Ghosh, 2002).

    The co-association is read as a similarity graph over the samples and
    cut into ``k`` parts. The original cuts it with METIS; here spectral
    clustering cuts the whole (unthresholded) matrix.

    Parameters
    ----------
    label_runs
        Labels of each run, shape ``(runs, samples)``.
    k
        Number of consensus clusters.
    seed
        Seed of the spectral embedding.

    Returns
    -------
    numpy.ndarray
        Consensus cluster of each sample, shape ``(samples,)``, int64.
    """
    return _spectral(co_association(label_runs), k, seed=seed)


def mcla(label_runs: LabelRuns, k: int) -> np.ndarray:
    """Meta-clustering algorithm (Strehl and Ghosh, 2002).

    Steps: every cluster of every run is a hyperedge (the indicator
    vector of its members); hyperedges are compared by the Jaccard index
    of their member sets; that meta-graph is cut into ``k`` meta-clusters
    (METIS in the original, average-linkage clustering of ``1 - Jaccard``
    here); each meta-cluster's association with a sample is the share of
    its hyperedges that hold the sample; each sample goes to the
    meta-cluster it is most associated with (the lowest-numbered one on
    a tie, where the original breaks ties at random).

    Parameters
    ----------
    label_runs
        Labels of each run, shape ``(runs, samples)``.
    k
        Number of meta-clusters; fewer consensus clusters come out when a
        meta-cluster wins no sample, and at most the number of hyperedges.

    Returns
    -------
    numpy.ndarray
        Consensus cluster of each sample, shape ``(samples,)``, int64,
        renumbered ``0 .. m-1``.
    """
    # Hyperedges: one indicator column per cluster of each run.
    runs = _as_runs(label_runs)
    _check_k(k, runs.shape[1])
    edges = np.hstack([_indicator(run) for run in runs])

    # Jaccard similarity between the hyperedges' member sets.
    shared = edges.T @ edges
    sizes = np.diag(shared)
    jaccard = shared / (sizes[:, None] + sizes[None, :] - shared)

    # Meta-clusters of hyperedges, by average linkage on 1 - Jaccard.
    n_meta = min(k, edges.shape[1])
    if n_meta == 1:
        meta = np.zeros(edges.shape[1], dtype=np.int64)
    else:
        linkage = AgglomerativeClustering(
            n_clusters=n_meta, metric="precomputed", linkage="average"
        )
        meta = linkage.fit_predict(1.0 - jaccard)

    # Association of each sample with each meta-cluster, then the winner.
    association = np.stack(
        [edges[:, meta == m].mean(axis=1) for m in range(n_meta)], axis=1
    )
    return _compact(np.argmax(association, axis=1))


def hbgf(label_runs: LabelRuns, k: int, *, seed: int = 0) -> np.ndarray:
    """Hybrid bipartite graph formulation (Fern and Brodley, 2004).

    Samples and clusters are the two sides of a bipartite graph, a sample
    linked to each cluster that holds it. The graph is partitioned
    spectrally, as in the paper: the normalised biadjacency ``D_s^-1/2 A
    D_c^-1/2`` (``A`` the ``samples x clusters`` membership matrix,
    ``D_s``, ``D_c`` the degrees) has the leading singular vectors ``U``
    (samples) and ``V`` (clusters); together they embed both kinds of
    vertex, rows normalised to unit length, and k-means on the stacked
    embedding gives the parts. Samples take their vertex's part.

    Parameters
    ----------
    label_runs
        Labels of each run, shape ``(runs, samples)``.
    k
        Number of consensus clusters.
    seed
        Seed of the k-means on the embedding.

    Returns
    -------
    numpy.ndarray
        Consensus cluster of each sample, shape ``(samples,)``, int64,
        renumbered ``0 .. m-1`` (``m <= k``; a part holding only cluster
        vertices leaves no sample label).
    """
    # Membership matrix of samples in the clusters of every run.
    runs = _as_runs(label_runs)
    n_samples = runs.shape[1]
    _check_k(k, n_samples)
    members = np.hstack([_indicator(run) for run in runs])

    # Normalised biadjacency and its leading singular vectors.
    sample_degree = members.sum(axis=1)
    cluster_degree = members.sum(axis=0)
    normalised = members / np.sqrt(sample_degree[:, None] * cluster_degree[None, :])
    left, _, right_t = np.linalg.svd(normalised, full_matrices=False)
    n_vectors = min(k, left.shape[1])
    embedding = np.vstack([left[:, :n_vectors], right_t[:n_vectors].T])

    # Unit rows, then k-means on samples and clusters together.
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = embedding / np.where(norms > 0, norms, 1.0)
    parts = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embedding)
    return _compact(parts[:n_samples])


def relabel_to_match(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Renumber ``labels`` to agree as much as possible with ``reference``.

    The clusters of the two partitions are paired by the Hungarian
    assignment (``scipy.optimize.linear_sum_assignment``) that maximises
    the number of samples whose paired labels agree; each cluster of
    ``labels`` takes its partner's number. Clusters left without a
    partner (``labels`` has more clusters) take new numbers above the
    largest of ``reference``, in order of their old numbers. The partition
    itself does not change.

    Parameters
    ----------
    reference
        Labels to match, shape ``(samples,)``, integers.
    labels
        Labels to renumber, shape ``(samples,)``, integers.

    Returns
    -------
    numpy.ndarray
        ``labels`` renumbered, shape ``(samples,)``, int64.

    Examples
    --------
    >>> reference = np.array([0, 0, 1, 1])
    >>> relabel_to_match(reference, np.array([5, 5, 2, 2])).tolist()
    [0, 0, 1, 1]
    """
    # Contingency table: samples in reference cluster i and labels cluster j.
    reference = np.asarray(reference).ravel()
    labels = np.asarray(labels).ravel()
    if reference.shape != labels.shape:
        raise ClusteringInputError(
            f"{labels.size} labels to match against {reference.size} references"
        )
    ref_values, ref_index = np.unique(reference, return_inverse=True)
    lab_values, lab_index = np.unique(labels, return_inverse=True)
    table = np.zeros((ref_values.size, lab_values.size), dtype=np.int64)
    np.add.at(table, (ref_index, lab_index), 1)

    # Pairing that maximises the agreeing samples.
    ref_rows, lab_cols = linear_sum_assignment(table, maximize=True)
    new_values = np.empty(lab_values.size, dtype=np.int64)
    new_values[lab_cols] = ref_values[ref_rows]

    # New numbers for the clusters without a partner.
    unpaired = np.setdiff1d(np.arange(lab_values.size), lab_cols)
    start = int(ref_values.max()) + 1 if ref_values.size else 0
    new_values[unpaired] = start + np.arange(unpaired.size)
    return new_values[lab_index]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _as_runs(label_runs: LabelRuns) -> np.ndarray:
    """Runs as an int array (runs, samples), checked."""
    runs = [np.asarray(run).ravel() for run in label_runs]
    if not runs:
        raise ClusteringInputError("no label runs given; pass at least one run")
    if len({run.size for run in runs}) > 1:
        raise ClusteringInputError(
            "runs label different numbers of samples: "
            f"{sorted({run.size for run in runs})}"
        )
    if runs[0].size == 0:
        raise ClusteringInputError("the runs label no sample")
    return np.stack(runs)


def _indicator(run: np.ndarray) -> np.ndarray:
    """Membership matrix (samples, clusters) of one run, float64 0/1."""
    _, index = np.unique(run, return_inverse=True)
    members = np.zeros((run.size, index.max() + 1))
    members[np.arange(run.size), index] = 1.0
    return members


def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0 .. m-1 in increasing order of the old values."""
    _, index = np.unique(labels, return_inverse=True)
    return index.astype(np.int64)


def _check_k(k: int, n_samples: int) -> None:
    """A cluster count between 1 and the number of samples."""
    if not 1 <= k <= n_samples:
        raise ClusteringInputError(
            f"k={k} consensus clusters for {n_samples} samples; choose "
            "1 <= k <= samples"
        )


def _spectral(affinity: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """Spectral clustering of a precomputed affinity, labels 0 .. k-1."""
    # A single cluster needs no embedding.
    _check_k(k, affinity.shape[0])
    if k == 1:
        return np.zeros(affinity.shape[0], dtype=np.int64)

    # A block-diagonal consensus (runs that agree) is a disconnected graph,
    # which is the easy case for spectral clustering: silence its warning.
    model = SpectralClustering(
        n_clusters=k,
        affinity="precomputed",
        assign_labels="cluster_qr",
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        labels = model.fit_predict(affinity)
    return _compact(labels)
