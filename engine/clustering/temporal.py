"""Persistence in time: smoothing the samples and refining labels by Viterbi.

Weather regimes last several steps, so a step's neighbours in time carry
evidence about its regime that a clustering of single steps (k-means,
Ward, a Gaussian mixture) throws away. Two tools use it:

:func:`smooth_in_time`
    Each sample replaced by the mean of the samples ``t - w .. t + w``
    (edges repeated). The noise of a persistent regime shrinks by about
    ``sqrt(2 w + 1)``; steps next to a regime change get a mixed sample.
    HEDGTC's base members can run on these samples
    (``HEDGTCConfig.temporal_window``).
:func:`refine_in_time`
    Hard-EM of a hidden Markov model whose states are the clusters: the
    samples reduced by PCA, one Gaussian per cluster with a covariance
    shared by all clusters (estimated from the within-cluster residuals,
    shrunk towards a multiple of the identity), and a transition matrix
    that keeps the state with probability ``stay`` (the share of steps
    whose label equals the previous one's) and otherwise jumps to any
    other state alike. Each iteration re-estimates the means, covariance
    and ``stay`` from the labels and relabels every step by the Viterbi
    path, until the labels stop changing. The shared covariance matters:
    spatially smooth noise is strongest along a few directions, and
    weighing distances by its inverse discounts them.

Both assume regularly spaced, time-ordered samples, as
:func:`engine.clustering.prepare.prepare_samples` gives.

References
----------
.. [1] Rabiner, L. R. (1989). A tutorial on hidden Markov models and
   selected applications in speech recognition. Proc. IEEE 77(2).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d
from sklearn.decomposition import PCA

from engine.clustering.errors import ClusteringInputError

__all__ = ["refine_in_time", "smooth_in_time", "viterbi"]


def smooth_in_time(X: np.ndarray, *, window: int) -> np.ndarray:
    """Running mean of the samples over ``t - window .. t + window``.

    Parameters
    ----------
    X
        Time-ordered samples, shape ``(T, features)``.
    window
        Half-width ``w`` >= 0 in steps; 0 returns ``X`` unchanged.

    Returns
    -------
    numpy.ndarray
        Shape ``(T, features)``, same dtype; the first and last samples
        are repeated beyond the edges.

    Examples
    --------
    >>> smooth_in_time(np.array([[0.0], [3.0], [0.0]]), window=1).ravel()
    array([1., 1., 1.])
    """
    if window < 0:
        raise ClusteringInputError(f"window={window}; it must be >= 0")
    if window == 0:
        return X
    return uniform_filter1d(X, size=2 * window + 1, axis=0, mode="nearest")


def viterbi(log_likelihood: np.ndarray, stay: float) -> np.ndarray:
    """Most probable state path of a Markov chain with sticky states.

    Parameters
    ----------
    log_likelihood
        Log-likelihood of each step under each state, shape ``(T, k)``.
    stay
        Probability of keeping the state from one step to the next, in
        (0, 1); jumps go to each other state with ``(1 - stay) / (k -
        1)``. The first step has a uniform prior.

    Returns
    -------
    numpy.ndarray
        State of each step, shape ``(T,)``, int64.
    """
    n_steps, k = log_likelihood.shape
    if k == 1:
        return np.zeros(n_steps, dtype=np.int64)

    # Log transition matrix, (k, k): row "from", column "to".
    transition = np.full((k, k), np.log((1.0 - stay) / (k - 1)))
    np.fill_diagonal(transition, np.log(stay))

    # Forward pass keeping the best predecessor of each state.
    best = log_likelihood[0].copy()
    back = np.zeros((n_steps, k), dtype=np.int64)
    for t in range(1, n_steps):
        scores = best[:, None] + transition
        back[t] = scores.argmax(axis=0)
        best = scores.max(axis=0) + log_likelihood[t]

    # Backtrack from the best last state.
    path = np.zeros(n_steps, dtype=np.int64)
    path[-1] = int(best.argmax())
    for t in range(n_steps - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def refine_in_time(
    X: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    n_components: int = 64,
    shrinkage: float = 0.1,
    max_iterations: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Relabel time steps by a sticky hidden Markov model (hard EM).

    Parameters
    ----------
    X
        Time-ordered samples in the input space, shape ``(T, features)``.
    labels
        Starting clusters, shape ``(T,)``, in ``0 .. k - 1``.
    k
        Number of clusters (states).
    n_components
        PCA components the model works in (at most ``min(T, features)``
        and ``T // 3``, so that the shared covariance is estimable).
    shrinkage
        Weight of the identity (times the mean variance) in the shared
        covariance, in [0, 1].
    max_iterations
        Most re-estimations; stops earlier when the labels settle.
    seed
        Seed of the randomised PCA solver.

    Returns
    -------
    numpy.ndarray
        Refined cluster of each step, shape ``(T,)``, int64. A cluster
        that loses every step keeps its last mean, so it can come back.
    """
    # PCA space, with enough samples per dimension for the covariance.
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).copy()
    if X.ndim != 2 or X.shape[0] != labels.size:
        raise ClusteringInputError(
            f"X {X.shape} and labels {labels.shape} do not match"
        )
    n_steps = X.shape[0]
    components = max(1, min(n_components, min(X.shape), n_steps // 3))
    Z = PCA(n_components=components, random_state=seed).fit_transform(X)
    means = np.zeros((k, components))

    for _ in range(max_iterations):
        # Means of the present clusters; absent ones keep the last mean.
        for c in range(k):
            if np.any(labels == c):
                means[c] = Z[labels == c].mean(axis=0)

        # Shared covariance of the residuals, shrunk; its inverse.
        residual = Z - means[labels]
        covariance = residual.T @ residual / n_steps
        spread = np.trace(covariance) / components
        covariance = (1 - shrinkage) * covariance + shrinkage * spread * np.eye(
            components
        )
        precision = np.linalg.inv(covariance)

        # Log-likelihood of each step under each cluster, (T, k).
        difference = Z[:, None, :] - means[None, :, :]
        log_likelihood = -0.5 * np.einsum(
            "tkf,fg,tkg->tk", difference, precision, difference
        )

        # Persistence from the labels, then the Viterbi path.
        stay = float(np.clip(np.mean(labels[1:] == labels[:-1]), 0.5, 0.99))
        new_labels = viterbi(log_likelihood, stay)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return labels
