"""Scores of a clustering: internal, stability, and against known labels.

The internal scores are those reported by DSC and HEDGTC: the silhouette
(cosine distance, as the papers, and Euclidean), the Davies-Bouldin and
Calinski-Harabasz indices (scikit-learn), and three of the papers' own:
the within-cluster RMSE, the within-cluster variance and the mean distance
between centroids. Stability is the mean adjusted Rand index (ARI) between
runs that differ only in their seed. Against known labels (a planted set)
the ARI and the normalised mutual information (NMI) are given.

Internal scores must be computed in the **input space** (the prepared
samples ``X``), never in a network's latent space: a model trained to pull
its embeddings towards its own centroids (DEC, DSC) makes the latent
clusters compact by construction, so a latent-space silhouette is inflated
and not comparable with k-means on the inputs.

Notes
-----
The papers name the within-cluster RMSE, variance and inter-centroid
distance without a formula we could check; the definitions used here are
given in each function and are the plainest reading of the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from sklearn import metrics as skm

from engine.clustering.errors import ClusteringInputError

__all__ = [
    "centroids",
    "evaluate",
    "inter_centroid_distance",
    "stability",
    "within_cluster_rmse",
    "within_cluster_variance",
]


def evaluate(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    truth: np.ndarray | None = None,
) -> dict[str, float]:
    """All scores of one clustering of samples ``X``.

    Parameters
    ----------
    X
        Samples in the **input space**, shape ``(samples, features)``, as
        prepared (z-scored); not a latent embedding (see the module
        docstring).
    labels
        Cluster of each sample, shape ``(samples,)``, any integers.
    truth
        Known labels, shape ``(samples,)``, to add ``ari`` and ``nmi``.

    Returns
    -------
    dict
        ``n_clusters``; ``silhouette_cosine`` and ``silhouette_euclidean``
        in [-1, 1], higher is better; ``davies_bouldin`` >= 0, lower is
        better; ``calinski_harabasz`` >= 0, higher is better;
        ``within_rmse``, ``within_variance`` and
        ``inter_centroid_distance`` in the units of ``X`` (squared for the
        variance); with ``truth``, ``ari`` (1 is perfect, about 0 is
        chance) and ``nmi`` in [0, 1]. The scores that need two clusters
        or more (silhouettes, Davies-Bouldin, Calinski-Harabasz,
        inter-centroid distance) are ``NaN`` for a single cluster; the
        silhouettes are also ``NaN`` when every sample is its own cluster.

    Raises
    ------
    ClusteringInputError
        ``X`` is not 2-D or not finite, or the lengths differ.
    """
    X, labels = _check(X, labels)
    n_clusters = int(np.unique(labels).size)

    # The papers' own scores, defined for any number of clusters.
    scores: dict[str, float] = {
        "n_clusters": float(n_clusters),
        "within_rmse": within_cluster_rmse(X, labels),
        "within_variance": within_cluster_variance(X, labels),
        "inter_centroid_distance": inter_centroid_distance(X, labels),
    }

    # scikit-learn's indices, which need 2 .. samples - 1 clusters.
    silhouettes_defined = 2 <= n_clusters <= len(labels) - 1
    for metric in ("cosine", "euclidean"):
        scores[f"silhouette_{metric}"] = (
            float(skm.silhouette_score(X, labels, metric=metric))
            if silhouettes_defined
            else float("nan")
        )
    several = n_clusters >= 2
    scores["davies_bouldin"] = (
        float(skm.davies_bouldin_score(X, labels)) if several else float("nan")
    )
    scores["calinski_harabasz"] = (
        float(skm.calinski_harabasz_score(X, labels)) if several else float("nan")
    )

    # Agreement with the known labels.
    if truth is not None:
        truth = np.asarray(truth).ravel()
        if truth.shape != labels.shape:
            raise ClusteringInputError(
                f"truth has {truth.size} labels for {labels.size} samples"
            )
        scores["ari"] = float(skm.adjusted_rand_score(truth, labels))
        scores["nmi"] = float(skm.normalized_mutual_info_score(truth, labels))
    return scores


def centroids(X: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each cluster's members.

    Parameters
    ----------
    X
        Samples, shape ``(samples, features)``.
    labels
        Cluster of each sample, shape ``(samples,)``.

    Returns
    -------
    clusters : numpy.ndarray
        Sorted distinct labels, shape ``(clusters,)``.
    centres : numpy.ndarray
        Centroid of each, shape ``(clusters, features)``, float64.
    """
    # Index each sample's cluster, then sum members per cluster.
    X, labels = _check(X, labels)
    clusters, index = np.unique(labels, return_inverse=True)
    sums = np.zeros((clusters.size, X.shape[1]))
    np.add.at(sums, index, X)
    counts = np.bincount(index, minlength=clusters.size)
    return clusters, sums / counts[:, None]


def within_cluster_rmse(X: np.ndarray, labels: np.ndarray) -> float:
    """Root mean squared deviation of members from their centroid.

    ``sqrt(mean over samples i and features f of (X[i, f] - c[l_i, f])**2)``
    : every sample weighs the same, and the result is per feature, in the
    units of ``X`` (z-score units for prepared samples), so that it does
    not grow with the number of cells.

    Parameters
    ----------
    X
        Samples, shape ``(samples, features)``.
    labels
        Cluster of each sample, shape ``(samples,)``.

    Returns
    -------
    float
        RMSE >= 0, in the units of ``X``; lower is more compact.
    """
    # Deviation of each sample from its own cluster's centroid.
    X, labels = _check(X, labels)
    clusters, centres = centroids(X, labels)
    own = centres[np.searchsorted(clusters, labels)]
    return float(np.sqrt(np.mean((X - own) ** 2)))


def within_cluster_variance(X: np.ndarray, labels: np.ndarray) -> float:
    """Mean over clusters of each cluster's variance about its centroid.

    Each cluster's variance is the mean over its members and the features
    of the squared deviation from the centroid; the clusters are then
    averaged **unweighted**, so that a small loose cluster counts as much
    as a large tight one (unlike :func:`within_cluster_rmse`, where every
    sample counts the same).

    Parameters
    ----------
    X
        Samples, shape ``(samples, features)``.
    labels
        Cluster of each sample, shape ``(samples,)``.

    Returns
    -------
    float
        Variance >= 0, in the squared units of ``X``.
    """
    # Squared deviations, then their mean per cluster, then across clusters.
    X, labels = _check(X, labels)
    clusters, centres = centroids(X, labels)
    index = np.searchsorted(clusters, labels)
    squared = np.mean((X - centres[index]) ** 2, axis=1)
    per_cluster = np.bincount(index, weights=squared) / np.bincount(index)
    return float(per_cluster.mean())


def inter_centroid_distance(X: np.ndarray, labels: np.ndarray) -> float:
    """Mean Euclidean distance between pairs of centroids.

    Parameters
    ----------
    X
        Samples, shape ``(samples, features)``.
    labels
        Cluster of each sample, shape ``(samples,)``.

    Returns
    -------
    float
        Mean over the ``k (k - 1) / 2`` pairs, in the units of ``X``;
        higher is better separated. ``NaN`` for a single cluster.
    """
    # Every pairwise centroid distance, upper triangle only.
    _, centres = centroids(X, labels)
    if len(centres) < 2:
        return float("nan")
    difference = centres[:, None, :] - centres[None, :, :]
    distance = np.sqrt(np.sum(difference**2, axis=-1))
    upper = np.triu_indices(len(centres), k=1)
    return float(distance[upper].mean())


def stability(label_runs: Sequence[np.ndarray] | np.ndarray) -> float:
    """Mean pairwise adjusted Rand index between runs.

    Runs of the same method on the same samples with different seeds; a
    stable method gives the same partition whatever the seed (ARI 1),
    whatever the label numbers.

    Parameters
    ----------
    label_runs
        Labels of each run, shape ``(runs, samples)`` or a sequence of
        ``(samples,)`` arrays, at least two runs.

    Returns
    -------
    float
        Mean ARI over the ``runs (runs - 1) / 2`` pairs, at most 1.

    Raises
    ------
    ClusteringInputError
        Fewer than two runs, or runs of different lengths.
    """
    # Check the runs line up.
    runs = [np.asarray(run).ravel() for run in label_runs]
    if len(runs) < 2:
        raise ClusteringInputError(
            f"stability needs at least two runs, got {len(runs)}; run the "
            "method again with other seeds"
        )
    if len({run.size for run in runs}) > 1:
        raise ClusteringInputError("runs label different numbers of samples")

    # Mean ARI over every pair.
    scores = [skm.adjusted_rand_score(a, b) for a, b in combinations(runs, 2)]
    return float(np.mean(scores))


def _check(X: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples as a finite 2-D float64 array and labels as a matching 1-D."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels).ravel()
    if X.ndim != 2:
        raise ClusteringInputError(
            f"X must be (samples, features), got shape {X.shape}"
        )
    if X.shape[0] != labels.size:
        raise ClusteringInputError(
            f"{labels.size} labels for {X.shape[0]} samples"
        )
    if not np.isfinite(X).all():
        raise ClusteringInputError(
            "X holds NaN or infinite values; prepare it with "
            "engine.clustering.prepare.prepare_samples"
        )
    return X, labels
