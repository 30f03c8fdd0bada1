"""Tests of the clustering scores, ``engine.clustering.metrics``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.clustering.errors import ClusteringInputError
from engine.clustering.metrics import (
    centroids,
    evaluate,
    inter_centroid_distance,
    stability,
    within_cluster_rmse,
    within_cluster_variance,
)


@pytest.fixture
def two_clusters() -> tuple[np.ndarray, np.ndarray]:
    """Two tight clusters far apart in different directions, 10 + 10."""
    rng = np.random.default_rng(4)
    first = np.array([10.0, 0.0, 0.0]) + rng.normal(scale=0.01, size=(10, 3))
    second = np.array([0.0, 10.0, 0.0]) + rng.normal(scale=0.01, size=(10, 3))
    return np.vstack([first, second]), np.repeat([0, 1], 10)


def test_perfectly_separated_clusters_score_as_such(two_clusters) -> None:
    """Silhouettes near 1, DB near 0, ARI and NMI 1."""
    X, labels = two_clusters
    scores = evaluate(X, labels, truth=1 - labels)

    # Spread 0.01 against a separation of 14: silhouettes within 0.01 of 1.
    assert scores["silhouette_euclidean"] > 0.99
    assert scores["silhouette_cosine"] > 0.99
    assert scores["davies_bouldin"] < 0.01
    assert scores["calinski_harabasz"] > 1e5
    # Relabelled truth: the scores ignore label numbers (exact to round-off).
    assert scores["ari"] == pytest.approx(1.0, abs=1e-12)
    assert scores["nmi"] == pytest.approx(1.0, abs=1e-12)
    assert scores["n_clusters"] == 2


def test_papers_scores_on_a_hand_case() -> None:
    """Four points, two clusters, answers worked by hand."""
    X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 4.0]])
    labels = np.array([0, 0, 1, 1])

    # Centroids (1, 0) and (10, 2).
    _, centres = centroids(X, labels)
    np.testing.assert_allclose(centres, [[1.0, 0.0], [10.0, 2.0]])

    # Squared deviations per feature: cluster 0 1,0,1,0; cluster 1 0,4,0,4.
    # RMSE over all 8 entries: sqrt(10 / 8); variances 0.5 and 2.0.
    assert within_cluster_rmse(X, labels) == pytest.approx(math.sqrt(10 / 8))
    assert within_cluster_variance(X, labels) == pytest.approx((0.5 + 2.0) / 2)
    assert inter_centroid_distance(X, labels) == pytest.approx(math.hypot(9, 2))


def test_single_cluster_gives_nan_for_separation_scores() -> None:
    """One cluster: no silhouette, DB or inter-centroid distance."""
    X = np.arange(12.0).reshape(6, 2)
    scores = evaluate(X, np.zeros(6, dtype=int))
    for key in ("silhouette_cosine", "davies_bouldin", "inter_centroid_distance"):
        assert math.isnan(scores[key])
    assert scores["within_rmse"] > 0


def test_stability_of_identical_and_relabelled_runs_is_one() -> None:
    """The same partition whatever its numbers: ARI 1 for every pair."""
    run = np.array([0, 0, 1, 1, 2, 2])
    runs = [run, run, (run + 1) % 3]
    # Exact partitions: ARI is 1 up to round-off.
    assert stability(runs) == pytest.approx(1.0, abs=1e-12)


def test_stability_drops_for_disagreeing_runs() -> None:
    """Unrelated partitions have a mean ARI far below 1."""
    runs = [np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 2, 0, 1, 2])]
    assert stability(runs) < 0.5


def test_bad_inputs_are_refused(two_clusters) -> None:
    """NaN samples, mismatched lengths and a single run are named."""
    X, labels = two_clusters
    with pytest.raises(ClusteringInputError, match="NaN"):
        evaluate(np.where(X > 9, np.nan, X), labels)
    with pytest.raises(ClusteringInputError, match="labels for"):
        evaluate(X, labels[:-1])
    with pytest.raises(ClusteringInputError, match="two runs"):
        stability([labels])
