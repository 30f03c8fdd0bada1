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
:func:`whiten_by_differences`
    The samples in PCA space, whitened by the covariance of the noise as
    seen in the differences of consecutive steps. Two neighbours in time
    mostly share their regime, so their difference is mostly noise (twice
    its covariance); weighing the samples by the inverse of that estimate
    discounts the directions along which the noise is strong (spatially
    smooth noise) without knowing any label. HEDGTC's base members can run
    on these samples (``HEDGTCConfig.temporal_whiten``).
:func:`refine_best`
    :func:`refine_in_time` from several starting partitions (the stages of
    an ensemble, say), keeping the refinement of the highest likelihood
    under the hidden Markov model (:func:`hmm_log_likelihood`). Hard EM
    only climbs to the nearest optimum; several starts, judged by the
    model's own likelihood, escape the poorest of them.

All assume regularly spaced, time-ordered samples, as
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

__all__ = [
    "hmm_log_likelihood",
    "refine_best",
    "refine_in_time",
    "smooth_in_time",
    "viterbi",
    "whiten_by_differences",
]


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
    Z = _pca_space(X, labels, n_components=n_components, seed=seed)
    return _refine_in_space(
        Z, labels, k, shrinkage=shrinkage, max_iterations=max_iterations
    )


def hmm_log_likelihood(
    X: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    n_components: int = 64,
    shrinkage: float = 0.1,
    seed: int = 0,
) -> float:
    """Joint log-likelihood of samples and labels under the sticky HMM.

    The model of :func:`refine_in_time` fitted to ``labels``: cluster
    means, one shared covariance (shrunk) and the persistence ``stay``,
    all estimated from the labels; the score is ``log p(Z, labels)``,
    the Gaussian terms (with the log-determinant, so that partitions
    with different covariances compare) plus the transitions.

    Parameters
    ----------
    X
        Time-ordered samples, shape ``(T, features)``.
    labels
        Cluster of each step, shape ``(T,)``, in ``0 .. k - 1``.
    k
        Number of clusters (states).
    n_components, shrinkage, seed
        As in :func:`refine_in_time`.

    Returns
    -------
    float
        The log-likelihood in nats (up to a constant that depends on
        ``T`` and the PCA size only); higher is better.
    """
    Z = _pca_space(X, labels, n_components=n_components, seed=seed)
    return _score_in_space(Z, np.asarray(labels, dtype=np.int64), k, shrinkage)


def refine_best(
    X: np.ndarray,
    candidates: list[np.ndarray],
    k: int,
    *,
    n_components: int = 64,
    shrinkage: float = 0.1,
    max_iterations: int = 20,
    seed: int = 0,
) -> tuple[np.ndarray, int, list[float]]:
    """Refine several starting partitions; keep the most likely one.

    Parameters
    ----------
    X
        Time-ordered samples in the input space, shape ``(T, features)``.
    candidates
        Starting partitions, each ``(T,)`` in ``0 .. k - 1``; at least one.
    k
        Number of clusters (states).
    n_components, shrinkage, max_iterations, seed
        As in :func:`refine_in_time`; one PCA serves every candidate.

    Returns
    -------
    labels : numpy.ndarray
        The refinement of the highest :func:`hmm_log_likelihood`, shape
        ``(T,)`` int64; the first candidate wins ties.
    best : int
        Index of the candidate it started from.
    scores : list of float
        Log-likelihood of each candidate's refinement, in order.
    """
    # One PCA space for every candidate, so that the scores compare.
    if not candidates:
        raise ClusteringInputError("refine_best needs at least one candidate")
    starts = [np.asarray(labels, dtype=np.int64) for labels in candidates]
    Z = _pca_space(X, starts[0], n_components=n_components, seed=seed)

    # Each candidate refined, then scored by the model's likelihood.
    refined = [
        _refine_in_space(
            Z, start, k, shrinkage=shrinkage, max_iterations=max_iterations
        )
        for start in starts
    ]
    scores = [_score_in_space(Z, labels, k, shrinkage) for labels in refined]
    best = int(np.argmax(scores))
    return refined[best], best, scores


def whiten_by_differences(
    X: np.ndarray,
    *,
    n_components: int = 64,
    shrinkage: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Samples in PCA space whitened by the noise of consecutive steps.

    The noise covariance is estimated as half the mean outer product of
    the differences ``z[t + 1] - z[t]`` (for two steps of one regime the
    difference is the difference of two independent noises), shrunk
    towards a multiple of the identity; the samples are then multiplied
    by its inverse square root (Cholesky), so that the noise has about
    unit variance in every direction. Regime changes put some signal into
    the differences too; with regimes lasting several steps they are few.

    Parameters
    ----------
    X
        Time-ordered samples, shape ``(T, features)``, finite, ``T >= 2``.
    n_components
        PCA components kept before whitening (at most ``min(T,
        features)`` and ``T // 3``, so that the covariance is estimable).
    shrinkage
        Weight of the identity (times the mean noise variance) in the
        noise covariance, in [0, 1].
    seed
        Seed of the randomised PCA solver.

    Returns
    -------
    numpy.ndarray
        Whitened samples, shape ``(T, C)`` float64 with ``C`` the PCA
        components kept.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> whiten_by_differences(rng.normal(size=(30, 5)), n_components=4).shape
    (30, 4)
    """
    # PCA space.
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2 or not np.isfinite(X).all():
        raise ClusteringInputError(
            f"X must be finite (T >= 2, features), got shape {X.shape}"
        )
    Z = _pca_space(X, np.zeros(X.shape[0]), n_components=n_components, seed=seed)
    components = Z.shape[1]

    # Noise covariance from consecutive differences, shrunk.
    difference = np.diff(Z, axis=0)
    covariance = difference.T @ difference / (2.0 * difference.shape[0])
    spread = np.trace(covariance) / components
    if spread <= 0:
        return Z
    covariance = (1 - shrinkage) * covariance + shrinkage * spread * np.eye(
        components
    )

    # Multiply by the Cholesky factor of the precision: unit noise.
    factor = np.linalg.cholesky(np.linalg.inv(covariance))
    return Z @ factor


def _pca_space(
    X: np.ndarray, labels: np.ndarray, *, n_components: int, seed: int
) -> np.ndarray:
    """Samples reduced by PCA, ``(T, C)``, after checking the shapes."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    if X.ndim != 2 or X.shape[0] != labels.size:
        raise ClusteringInputError(
            f"X {X.shape} and labels {labels.shape} do not match"
        )
    n_steps = X.shape[0]
    components = max(1, min(n_components, min(X.shape), n_steps // 3))
    return PCA(n_components=components, random_state=seed).fit_transform(X)


def _fit_model(
    Z: np.ndarray, labels: np.ndarray, means: np.ndarray, shrinkage: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Means (updated in place), precision and log-determinant, from labels."""
    # Means of the present clusters; absent ones keep the last mean.
    n_steps, components = Z.shape
    for c in range(means.shape[0]):
        if np.any(labels == c):
            means[c] = Z[labels == c].mean(axis=0)

    # Shared covariance of the residuals, shrunk; its inverse.
    residual = Z - means[labels]
    covariance = residual.T @ residual / n_steps
    spread = np.trace(covariance) / components
    covariance = (1 - shrinkage) * covariance + shrinkage * spread * np.eye(
        components
    )
    _, log_determinant = np.linalg.slogdet(covariance)
    return means, np.linalg.inv(covariance), float(log_determinant)


def _persistence(labels: np.ndarray) -> float:
    """Share of steps keeping the previous label, clipped to [0.5, 0.99]."""
    return float(np.clip(np.mean(labels[1:] == labels[:-1]), 0.5, 0.99))


def _refine_in_space(
    Z: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    shrinkage: float,
    max_iterations: int,
) -> np.ndarray:
    """Hard EM of the sticky HMM in PCA space, from ``labels``."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    means = np.zeros((k, Z.shape[1]))
    for _ in range(max_iterations):
        # Model from the labels.
        means, precision, _ = _fit_model(Z, labels, means, shrinkage)

        # Log-likelihood of each step under each cluster, (T, k).
        difference = Z[:, None, :] - means[None, :, :]
        log_likelihood = -0.5 * np.einsum(
            "tkf,fg,tkg->tk", difference, precision, difference
        )

        # Persistence from the labels, then the Viterbi path.
        new_labels = viterbi(log_likelihood, _persistence(labels))
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return labels


def _score_in_space(
    Z: np.ndarray, labels: np.ndarray, k: int, shrinkage: float
) -> float:
    """``log p(Z, labels)`` of the sticky HMM fitted to ``labels``."""
    # Gaussian terms, with the log-determinant of the shared covariance.
    n_steps = Z.shape[0]
    means = np.zeros((k, Z.shape[1]))
    means, precision, log_determinant = _fit_model(Z, labels, means, shrinkage)
    residual = Z - means[labels]
    gaussian = -0.5 * np.einsum("tf,fg,tg->", residual, precision, residual)
    gaussian -= 0.5 * n_steps * log_determinant

    # Transitions: stays and jumps under the fitted persistence.
    if k == 1:
        return float(gaussian)
    stay = _persistence(labels)
    stays = int(np.sum(labels[1:] == labels[:-1]))
    jumps = n_steps - 1 - stays
    transitions = stays * np.log(stay) + jumps * np.log((1.0 - stay) / (k - 1))
    return float(gaussian + transitions)
