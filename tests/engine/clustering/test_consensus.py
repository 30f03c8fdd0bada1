"""Tests of the consensus functions, ``engine.clustering.consensus``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from engine.clustering.consensus import (
    co_association,
    cspa,
    hbgf,
    mcla,
    nmf_consensus,
    relabel_to_match,
    spectral_consensus,
)
from engine.clustering.errors import ClusteringInputError

#: The partition every run below describes: three pairs of samples.
TRUTH = np.array([0, 0, 1, 1, 2, 2])

#: Three runs of the same partition with permuted label numbers.
PERMUTED = [TRUTH, np.array([2, 2, 0, 0, 1, 1]), np.array([1, 1, 2, 2, 0, 0])]

#: Five runs, two of them wrong on one sample each, one with other numbers.
NOISY = [
    TRUTH,
    np.array([2, 2, 0, 0, 1, 0]),
    np.array([1, 1, 2, 2, 0, 0]),
    np.array([0, 1, 1, 1, 2, 2]),
    np.array([5, 5, 3, 3, 4, 4]),
]

CONSENSUS = {
    "cspa": lambda runs, k: cspa(runs, k, seed=0),
    "mcla": lambda runs, k: mcla(runs, k),
    "hbgf": lambda runs, k: hbgf(runs, k, seed=0),
    "nmf": lambda runs, k: nmf_consensus(runs, k, seed=0),
    "spectral": lambda runs, k: spectral_consensus(runs, k, seed=0),
}


def test_co_association_of_agreeing_runs_is_block_diagonal() -> None:
    """Ones within the planted pairs, zeros across, whatever the numbers."""
    matrix = co_association(PERMUTED)
    expected = (TRUTH[:, None] == TRUTH[None, :]).astype(float)
    np.testing.assert_array_equal(matrix, expected)


def test_co_association_counts_shares_of_runs() -> None:
    """Samples together in one run of two: 0.5."""
    matrix = co_association([np.array([0, 0, 1]), np.array([0, 1, 1])])
    np.testing.assert_array_equal(
        matrix, [[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]]
    )


@pytest.mark.parametrize("name", sorted(CONSENSUS))
def test_consensus_recovers_the_partition_of_permuted_runs(name: str) -> None:
    """Runs that agree up to label numbers: every consensus finds them."""
    labels = CONSENSUS[name](PERMUTED, 3)
    assert labels.shape == (6,)
    assert adjusted_rand_score(TRUTH, labels) == 1.0


@pytest.mark.parametrize("name", sorted(CONSENSUS))
def test_consensus_outvotes_single_mistakes(name: str) -> None:
    """Two runs misplace one sample each: the majority wins."""
    labels = CONSENSUS[name](NOISY, 3)
    assert adjusted_rand_score(TRUTH, labels) == 1.0


def test_threshold_cuts_weak_links() -> None:
    """A sample joined in a minority of runs is cut off at 0.5."""
    runs = [np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])]
    labels = spectral_consensus(runs, 2, threshold=0.5, seed=0)
    assert adjusted_rand_score([0, 0, 1, 1], labels) == 1.0


def test_relabel_to_match_follows_the_reference() -> None:
    """Hungarian pairing gives each cluster its reference number."""
    labels = np.array([7, 7, 3, 3, 9, 9])
    np.testing.assert_array_equal(relabel_to_match(TRUTH, labels), TRUTH)

    # A mostly matching partition keeps the reference numbers where it can.
    shifted = np.array([1, 1, 2, 2, 2, 0])
    np.testing.assert_array_equal(
        relabel_to_match(TRUTH, shifted), [0, 0, 1, 1, 1, 2]
    )


def test_relabel_gives_extra_clusters_new_numbers() -> None:
    """More clusters than the reference: the extra ones go above its max."""
    reference = np.array([0, 0, 0, 1, 1, 1])
    relabelled = relabel_to_match(reference, np.array([0, 1, 2, 2, 3, 3]))

    # Cluster 3 (two samples of reference 1) takes 1; one of 0 and 1 takes
    # 0, the other and cluster 2 take the new numbers 2 and 3.
    assert relabelled[4] == relabelled[5] == 1
    assert sorted(set(relabelled.tolist())) == [0, 1, 2, 3]
    assert adjusted_rand_score(relabelled, [0, 1, 2, 2, 3, 3]) == 1.0


def test_bad_runs_are_refused() -> None:
    """No runs, runs of different lengths or too many clusters."""
    with pytest.raises(ClusteringInputError, match="no label runs"):
        co_association([])
    with pytest.raises(ClusteringInputError, match="different numbers"):
        co_association([np.zeros(3), np.zeros(4)])
    with pytest.raises(ClusteringInputError, match="k=7"):
        cspa(PERMUTED, 7)
