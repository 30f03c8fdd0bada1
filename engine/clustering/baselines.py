"""Classic clustering baselines on prepared samples.

The baselines of DSC and HEDGTC: k-means, agglomerative clustering with
Ward linkage and a Gaussian mixture, each run by scikit-learn on the
feature matrix of :func:`engine.clustering.prepare.prepare_samples`. Every
runner has the signature ``run_<name>(X, k, *, seed) -> labels`` so that
ensembles can call them alike; :data:`BASELINES` maps names to runners.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.mixture import GaussianMixture

from engine.clustering.errors import ClusteringInputError

__all__ = ["BASELINES", "run_gmm", "run_kmeans", "run_ward"]


def run_kmeans(X: np.ndarray, k: int, *, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """k-means (Lloyd, k-means++ starts).

    Parameters
    ----------
    X
        Samples, shape ``(samples, features)``, finite.
    k
        Number of clusters, 1 .. samples.
    seed
        Seed of the starts.
    n_init
        Number of starts; the one with the lowest inertia is kept.

    Returns
    -------
    numpy.ndarray
        Cluster of each sample, shape ``(samples,)``, int64 in ``0 .. k-1``.
    """
    X = _check(X, k)
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    return model.fit_predict(X).astype(np.int64)


def run_ward(X: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Agglomerative clustering with Ward linkage.

    Parameters
    ----------
    X
        Samples, shape ``(samples, features)``, finite.
    k
        Number of clusters, 1 .. samples.
    seed
        Unused: Ward linkage is deterministic. Accepted so that every
        runner is called alike; its stability is therefore 1 by design.

    Returns
    -------
    numpy.ndarray
        Cluster of each sample, shape ``(samples,)``, int64 in ``0 .. k-1``.

    Notes
    -----
    Memory and time grow as ``samples ** 2``: fine for a few thousand days,
    not for a decade of hourly steps.
    """
    X = _check(X, k)
    model = AgglomerativeClustering(n_clusters=k, linkage="ward")
    return model.fit_predict(X).astype(np.int64)


def run_gmm(
    X: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "diag",
    n_init: int = 1,
) -> np.ndarray:
    """Gaussian mixture, labels by the most probable component.

    Parameters
    ----------
    X
        Samples, shape ``(samples, features)``, finite.
    k
        Number of components, 1 .. samples.
    seed
        Seed of the k-means initialisation.
    covariance_type
        scikit-learn's covariance kinds. The default ``"diag"`` because a
        map has far more features (cells x variables) than there are days,
        so a full covariance per component would be singular.
    n_init
        Number of initialisations; the best likelihood is kept.

    Returns
    -------
    numpy.ndarray
        Cluster of each sample, shape ``(samples,)``, int64 in ``0 .. k-1``
        (a component that wins no sample leaves its label unused).
    """
    X = _check(X, k)
    model = GaussianMixture(
        n_components=k,
        covariance_type=covariance_type,
        n_init=n_init,
        random_state=seed,
    )
    return model.fit_predict(X).astype(np.int64)


#: Runners by name, each ``(X, k, *, seed) -> labels``.
BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "kmeans": run_kmeans,
    "ward": run_ward,
    "gmm": run_gmm,
}


def _check(X: np.ndarray, k: int) -> np.ndarray:
    """Finite 2-D samples and a cluster count they can hold."""
    X = np.asarray(X)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ClusteringInputError(
            f"X must be finite (samples, features), got shape {X.shape}; "
            "prepare it with engine.clustering.prepare.prepare_samples"
        )
    if not 1 <= k <= X.shape[0]:
        raise ClusteringInputError(
            f"k={k} clusters for {X.shape[0]} samples; choose 1 <= k <= samples"
        )
    return X
