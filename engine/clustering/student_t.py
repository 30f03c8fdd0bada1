"""Student's t soft assignment and the self-training target of DEC.

Deep embedded clustering (DEC) and the methods built on it (DSC's
clustering layer, HEDGTC's final step) assign each embedded sample to
``k`` centroids with a Student's t kernel, then sharpen the assignment by
training towards a *target distribution* that squares it and divides by
the cluster frequencies. The three pieces live here so that every network
of the package shares one definition:

- :func:`soft_assignment`: ``q_ij`` from embeddings and centroids;
- :func:`target_distribution`: ``p_ij = (q_ij^2 / f_j) / sum_j'(...)``;
- :func:`clustering_loss`: ``KL(p || q)``, averaged over samples.

References
----------
.. [1] Xie, J., Girshick, R. and Farhadi, A. (2016). Unsupervised deep
   embedding for clustering analysis. ICML. Equations (1)-(3).
"""

from __future__ import annotations

import torch

__all__ = ["clustering_loss", "soft_assignment", "target_distribution"]


def soft_assignment(
    embedding: torch.Tensor, centroids: torch.Tensor, *, alpha: float = 1.0
) -> torch.Tensor:
    """Student's t similarity of each sample to each centroid.

    Parameters
    ----------
    embedding
        Embedded samples.
    centroids
        Cluster centres in the same space.
    alpha
        Degrees of freedom of the Student's t kernel; DEC uses 1.

    Returns
    -------
    torch.Tensor
        ``q``, rows summing to 1.

    Shapes
    ------
    - embedding: ``(N, D)``
    - centroids: ``(K, D)``
    - output: ``(N, K)``
    """
    # Squared distances, then the heavy-tailed kernel.
    distance2 = torch.cdist(embedding, centroids).pow(2)
    kernel = (1.0 + distance2 / alpha).pow(-(alpha + 1.0) / 2.0)

    # Normalise over the clusters.
    return kernel / kernel.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC's sharpened target ``p`` from the soft assignment ``q``.

    Squaring puts more weight on confident assignments; dividing by the
    soft cluster frequency ``f_j = sum_i q_ij`` keeps large clusters from
    swallowing the others.

    Parameters
    ----------
    q
        Soft assignment, rows summing to 1.

    Returns
    -------
    torch.Tensor
        ``p``, rows summing to 1, detached from the graph (a fixed target
        between two refreshes).

    Shapes
    ------
    - q: ``(N, K)``
    - output: ``(N, K)``
    """
    # Square and divide by the cluster frequencies.
    q = q.detach()
    weight = q.pow(2) / q.sum(dim=0, keepdim=True).clamp_min(1e-12)

    # Normalise over the clusters.
    return weight / weight.sum(dim=1, keepdim=True)


def clustering_loss(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` averaged over samples (DEC's clustering loss).

    Parameters
    ----------
    q
        Soft assignment being trained, rows summing to 1.
    p
        Fixed target distribution, rows summing to 1.

    Returns
    -------
    torch.Tensor
        Scalar, ``>= 0``.

    Shapes
    ------
    - q, p: ``(N, K)``
    - output: ``()``
    """
    # Sum over clusters of p log(p / q), mean over samples.
    return torch.nn.functional.kl_div(
        q.clamp_min(1e-12).log(), p, reduction="batchmean"
    )
