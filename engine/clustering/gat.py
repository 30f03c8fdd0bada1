"""HEDGTC's graph attention autoencoder and its final clustering.

The last stage of HEDGTC (``METHODS.md`` section 3) reads the ensemble's
consensus as a graph over the samples (time steps), embeds the nodes with
a graph attention encoder trained to rebuild that graph, and clusters the
embedding. The paper does not publish the network in detail; the choices
made here are:

Nodes
    One per sample, carrying its feature vector reduced by PCA to at most
    ``GATConfig.pca_components`` components (a map of several variables
    has hundreds of features for a few hundred days; the leading
    components hold the regime signal and keep the first layer small).
    The components are divided by one common scale (the root mean
    variance), which keeps their relative weights.
Edges
    The consensus matrix (HEDGTC: the heterogeneous co-occurrence) keeps,
    for each node, its ``n_neighbours`` strongest links (ties broken by an
    optional second matrix, the co-association over all base runs), plus
    a self-loop of weight 1. An edge ``j -> i`` carries the consensus
    weight as a one-dimensional edge feature, ``GATConv(edge_dim=1)``:
    a learned linear map of the weight is added to the attention logit,
    so the weight acts as a learned prior on attention rather than a fixed
    multiplier.
Encoder
    Two ``GATConv`` layers (multi-head, concatenated then averaged) with
    an ELU between them, to an embedding ``z`` of ``embedding_dim``.
Decoders
    An inner-product graph decoder, ``sigmoid(z z^T)``, trained by binary
    cross-entropy against the *whole* consensus matrix as a weighted
    adjacency (ones on the diagonal; positives up-weighted by the ratio of
    absent to present link weight, as in the graph autoencoder of Kipf and
    Welling), plus a feature head (two linear layers) rebuilding the node
    features, trained by mean squared error. The target is the whole
    matrix, not the kept top-``n_neighbours`` graph: against the sparse
    graph, two members of one large cluster that are not among each
    other's nearest links would be pushed apart, and training was seen
    to split the clusters into small neighbourhoods.
Clusters
    After pretraining on the two reconstruction losses, DEC's Student's t
    self-training: centroids initialised by k-means on ``z``, the target
    distribution refreshed every ``update_interval`` epochs, and the
    reconstruction losses kept beside ``KL(p || q)`` so that the
    embedding does not collapse (as IDEC does).

References
----------
.. [1] Velickovic, P. et al. (2018). Graph attention networks. ICLR.
.. [2] Kipf, T. N. and Welling, M. (2016). Variational graph auto-encoders.
   NeurIPS workshop on Bayesian deep learning.
.. [3] Xie, J., Girshick, R. and Farhadi, A. (2016). Unsupervised deep
   embedding for clustering analysis. ICML.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import GATConv

from engine.clustering.control import (
    Cancel,
    ClusteringCancelled,
    Progress,
    check_cancel,
    report,
)
from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
from engine.clustering.student_t import (
    clustering_loss,
    soft_assignment,
    target_distribution,
)

__all__ = [
    "ClusteringCancelled",
    "GATAutoencoder",
    "GATClustering",
    "GATConfig",
    "GATOutput",
    "build_graph",
    "dense_adjacency",
    "fit_gat_clusters",
    "node_features",
    "reconstruction_loss",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class GATConfig:
    """Settings of the graph attention autoencoder and its clustering.

    Parameters
    ----------
    n_neighbours
        Strongest consensus links kept per node (self-loop not counted).
    pca_components
        Node features are the samples reduced to at most this many PCA
        components; 0 keeps the samples' own features.
    hidden
        Channels per head of the first GAT layer and width of the feature
        head.
    heads
        Attention heads of each GAT layer.
    embedding_dim
        Size of the embedding ``z``.
    dropout
        Dropout on the attention coefficients while training.
    learning_rate
        Adam's step size.
    pretrain_epochs
        Epochs on the reconstruction losses alone.
    cluster_epochs
        Most epochs of Student's t self-training (fewer when the labels
        settle, see ``tolerance``).
    update_interval
        Epochs between two refreshes of the target distribution.
    tolerance
        Self-training stops when fewer than this share of the labels
        change between two refreshes.
    feature_weight
        Weight of the feature reconstruction (MSE) beside the graph one.
    cluster_weight
        Weight of ``KL(p || q)`` during self-training.
    seed
        Seed of the weights, dropout and k-means initialisation.
    """

    n_neighbours: int = 10
    pca_components: int = 32
    hidden: int = 32
    heads: int = 4
    embedding_dim: int = 16
    dropout: float = 0.0
    learning_rate: float = 5e-3
    pretrain_epochs: int = 200
    cluster_epochs: int = 100
    update_interval: int = 10
    tolerance: float = 0.001
    feature_weight: float = 1.0
    cluster_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the ranges, naming the bad setting."""
        checks = [
            (self.n_neighbours >= 1, "n_neighbours must be at least 1"),
            (self.pca_components >= 0, "pca_components must be >= 0"),
            (self.hidden >= 1 and self.heads >= 1, "hidden and heads must be >= 1"),
            (self.embedding_dim >= 1, "embedding_dim must be at least 1"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.learning_rate > 0.0, "learning_rate must be positive"),
            (self.pretrain_epochs >= 0, "pretrain_epochs must be >= 0"),
            (self.cluster_epochs >= 0, "cluster_epochs must be >= 0"),
            (self.update_interval >= 1, "update_interval must be at least 1"),
            (self.feature_weight >= 0.0, "feature_weight must be >= 0"),
            (self.cluster_weight >= 0.0, "cluster_weight must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ClusteringConfigError(f"GATConfig: {message}")


@dataclass
class GATOutput:
    """One forward pass of :class:`GATAutoencoder`.

    Attributes
    ----------
    embedding
        Node embedding ``z``, shape ``(N, D)``.
    adjacency_logits
        ``z z^T`` before the sigmoid, shape ``(N, N)``.
    reconstruction
        Rebuilt node features, shape ``(N, F)``.
    attention
        Per GAT layer, ``(edge_index (2, E), alpha (E, heads))`` when asked
        for, else empty.
    """

    embedding: torch.Tensor
    adjacency_logits: torch.Tensor
    reconstruction: torch.Tensor
    attention: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class GATAutoencoder(nn.Module):
    """Two-layer GAT encoder, inner-product graph decoder, feature head.

    Parameters
    ----------
    in_features
        Size ``F`` of each node's feature vector.
    hidden
        Channels per head of the first layer; width of the feature head.
    heads
        Attention heads per layer; the first layer concatenates them, the
        second averages them.
    embedding_dim
        Size ``D`` of the embedding.
    dropout
        Dropout on the attention coefficients.

    Shapes
    ------
    - x: ``(N, F)`` node features
    - edge_index: ``(2, E)``, row 0 the sources ``j``, row 1 the targets
      ``i`` of messages ``j -> i``; self-loops must be included (the
      layers add none)
    - edge_weight: ``(E,)`` consensus weight of each edge
    - output: :class:`GATOutput` with ``z (N, D)``, logits ``(N, N)``,
      reconstruction ``(N, F)`` and, per layer, ``alpha (E, heads)``

    Examples
    --------
    >>> model = GATAutoencoder(8, hidden=4, heads=2, embedding_dim=3)
    >>> x = torch.zeros(5, 8)
    >>> loops = torch.arange(5).repeat(2, 1)
    >>> out = model(x, loops, torch.ones(5), return_attention=True)
    >>> tuple(out.embedding.shape), tuple(out.attention[0][1].shape)
    ((5, 3), (5, 2))
    """

    def __init__(
        self,
        in_features: int,
        *,
        hidden: int = 32,
        heads: int = 4,
        embedding_dim: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()

        # Encoder: heads concatenated, then averaged into the embedding.
        self.conv1 = GATConv(
            in_features,
            hidden,
            heads=heads,
            concat=True,
            dropout=dropout,
            add_self_loops=False,
            edge_dim=1,
        )
        self.conv2 = GATConv(
            hidden * heads,
            embedding_dim,
            heads=heads,
            concat=False,
            dropout=dropout,
            add_self_loops=False,
            edge_dim=1,
        )

        # Feature head: the embedding back to the node features.
        self.feature_head = nn.Sequential(
            nn.Linear(embedding_dim, hidden), nn.ELU(), nn.Linear(hidden, in_features)
        )

    def encode(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        *,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Embedding ``(N, D)`` and, on request, each layer's attention."""
        # Edge weights as a one-dimensional edge feature, (E, 1).
        edge_attr = edge_weight.reshape(-1, 1).to(x.dtype)
        attention: list[tuple[torch.Tensor, torch.Tensor]] = []

        # Layer 1, with ELU.
        if return_attention:
            hidden, weights = self.conv1(
                x, edge_index, edge_attr, return_attention_weights=True
            )
            attention.append(weights)
        else:
            hidden = self.conv1(x, edge_index, edge_attr)
        hidden = F.elu(hidden)

        # Layer 2, linear, to the embedding.
        if return_attention:
            z, weights = self.conv2(
                hidden, edge_index, edge_attr, return_attention_weights=True
            )
            attention.append(weights)
        else:
            z = self.conv2(hidden, edge_index, edge_attr)
        return z, attention

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        *,
        return_attention: bool = False,
    ) -> GATOutput:
        """Encode, then decode the graph and the features."""
        z, attention = self.encode(
            x, edge_index, edge_weight, return_attention=return_attention
        )
        return GATOutput(
            embedding=z,
            adjacency_logits=z @ z.T,
            reconstruction=self.feature_head(z),
            attention=attention,
        )


@dataclass
class GATClustering:
    """Everything the final stage of HEDGTC produced.

    Attributes
    ----------
    features
        Node features fed to the encoder, shape ``(N, F)``.
    edge_index
        Graph edges ``j -> i``, shape ``(2, E)``, int64, self-loops
        included.
    edge_weight
        Consensus weight of each edge, shape ``(E,)``, float32.
    embedding
        Final node embedding ``z``, shape ``(N, D)``.
    soft_assignment
        Student's t assignment ``q``, shape ``(N, k)``.
    labels
        Final cluster of each node, ``argmax q``, shape ``(N,)``, int64.
    attention
        Per GAT layer, ``(edge_index (2, E), alpha (E, heads))`` as numpy
        arrays, from the trained model in evaluation mode; for each target
        node the ``alpha`` of its incoming edges sum to 1 per head.
    history
        One dict per epoch: ``phase`` (``"pretrain"`` or ``"cluster"``),
        ``epoch``, ``loss``, ``graph_loss``, ``feature_loss``,
        ``cluster_loss`` (0 in pretraining) and, at each refresh of the
        target, ``changed`` (share of labels that changed).
    model
        The trained autoencoder, in evaluation mode.
    """

    features: np.ndarray
    edge_index: np.ndarray
    edge_weight: np.ndarray
    embedding: np.ndarray
    soft_assignment: np.ndarray
    labels: np.ndarray
    attention: list[tuple[np.ndarray, np.ndarray]]
    history: list[dict[str, float | str]]
    model: GATAutoencoder


def node_features(X: np.ndarray, *, n_components: int, seed: int = 0) -> np.ndarray:
    """Samples reduced to their leading PCA components, one common scale.

    Parameters
    ----------
    X
        Samples, shape ``(N, features)``, finite.
    n_components
        Components kept, at most ``min(N, features)``; 0 keeps ``X``.
    seed
        Seed of the randomised PCA solver, when scikit-learn picks it.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, F)`` float32, divided by the root mean variance of the
        kept columns so that they average unit variance.
    """
    # PCA, unless asked to keep the features.
    X = np.asarray(X, dtype=np.float64)
    if n_components and n_components < min(X.shape):
        X = PCA(n_components=n_components, random_state=seed).fit_transform(X)
    else:
        X = X - X.mean(axis=0)

    # One common scale, keeping the relative weights of the columns.
    scale = float(np.sqrt(X.var(axis=0).mean()))
    return (X / (scale if scale > 0 else 1.0)).astype(np.float32)


def build_graph(
    affinity: np.ndarray,
    *,
    n_neighbours: int,
    tie_breaker: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep each node's strongest consensus links, plus self-loops.

    Parameters
    ----------
    affinity
        Consensus between samples, shape ``(N, N)``, in [0, 1], symmetric.
    n_neighbours
        Links kept per node, not counting its self-loop; links of weight
        0 are never kept, so a node can have fewer.
    tie_breaker
        Second matrix, shape ``(N, N)``, ranking links of equal
        ``affinity`` (a co-occurrence of a few partitions has many ties);
        ``None`` breaks ties by the node number.

    Returns
    -------
    edge_index : numpy.ndarray
        Shape ``(2, E)``, int64: row 0 the neighbour ``j`` (source), row 1
        the node ``i`` (target); the ``N`` self-loops come first.
    edge_weight : numpy.ndarray
        Shape ``(E,)``, float32: ``affinity[i, j]``, 1 on self-loops.
    """
    # Checks.
    affinity = np.asarray(affinity, dtype=np.float64)
    n = affinity.shape[0]
    if affinity.ndim != 2 or affinity.shape != (n, n) or n == 0:
        raise ClusteringInputError(
            f"affinity must be a square (N, N) matrix, got shape {affinity.shape}"
        )
    tie = np.zeros_like(affinity) if tie_breaker is None else np.asarray(tie_breaker)

    # Self-loops first.
    sources = [np.arange(n)]
    targets = [np.arange(n)]
    weights = [np.ones(n)]

    # Per node: sort by affinity, then tie-breaker, both descending.
    for i in range(n):
        row = affinity[i].copy()
        row[i] = 0.0
        order = np.lexsort((-tie[i], -row))
        keep = order[:n_neighbours]
        keep = keep[row[keep] > 0.0]
        sources.append(keep)
        targets.append(np.full(keep.size, i))
        weights.append(row[keep])

    edge_index = np.vstack([np.concatenate(sources), np.concatenate(targets)])
    return edge_index.astype(np.int64), np.concatenate(weights).astype(np.float32)


def dense_adjacency(
    edge_index: np.ndarray, edge_weight: np.ndarray, n_nodes: int
) -> np.ndarray:
    """Symmetric weighted adjacency of a graph, ones on the diagonal.

    Parameters
    ----------
    edge_index
        Shape ``(2, E)``, int.
    edge_weight
        Shape ``(E,)``.
    n_nodes
        ``N``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, N)`` float32; an edge kept in one direction only
        counts in both (the larger weight).
    """
    # Scatter the weights, then symmetrise by the larger of the two.
    adjacency = np.zeros((n_nodes, n_nodes), dtype=np.float32)
    adjacency[edge_index[1], edge_index[0]] = edge_weight
    adjacency = np.maximum(adjacency, adjacency.T)
    np.fill_diagonal(adjacency, 1.0)
    return adjacency


def reconstruction_loss(
    output: GATOutput,
    x: torch.Tensor,
    adjacency: torch.Tensor,
    *,
    feature_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Graph BCE plus weighted feature MSE of one forward pass.

    Parameters
    ----------
    output
        Forward pass of :class:`GATAutoencoder`.
    x
        Node features the head should rebuild.
    adjacency
        Weighted adjacency target, entries in [0, 1].
    feature_weight
        Weight of the MSE term.

    Returns
    -------
    total, graph, feature : torch.Tensor
        Scalars: ``graph + feature_weight * feature`` and its two terms.

    Shapes
    ------
    - x: ``(N, F)``
    - adjacency: ``(N, N)``
    """
    # Graph term: present links up-weighted by the absent-to-present ratio.
    present = adjacency.sum().clamp_min(1e-12)
    pos_weight = (adjacency.numel() - present) / present
    graph = F.binary_cross_entropy_with_logits(
        output.adjacency_logits, adjacency, pos_weight=pos_weight
    )

    # Feature term.
    feature = F.mse_loss(output.reconstruction, x)
    return graph + feature_weight * feature, graph, feature


def fit_gat_clusters(
    X: np.ndarray,
    affinity: np.ndarray,
    k: int,
    config: GATConfig | None = None,
    *,
    tie_breaker: np.ndarray | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> GATClustering:
    """Train the GAT autoencoder on a consensus graph and cluster it.

    Parameters
    ----------
    X
        Samples, shape ``(N, features)``, finite (prepared and z-scored).
    affinity
        Consensus between samples, shape ``(N, N)``, in [0, 1].
    k
        Number of clusters, 1 .. N.
    config
        Settings; ``None`` uses the defaults of :class:`GATConfig`.
    tie_breaker
        Ranks links of equal affinity, see :func:`build_graph`.
    progress
        Called with ``{"stage": "gat", "fraction", "phase", "epoch"}``
        after every epoch (``phase`` is ``"pretrain"`` or ``"cluster"``).
    cancel
        Token with ``is_set()``, checked every epoch; once set,
        :class:`ClusteringCancelled` is raised.

    Returns
    -------
    GATClustering
        Features, graph, embedding, assignments, attention and history.

    Raises
    ------
    ClusteringInputError
        ``X`` is not finite and 2-D, or does not match ``affinity``, or
        ``k`` is out of range.
    ClusteringCancelled
        ``cancel()`` returned True.
    """
    config = config or GATConfig()
    X = np.asarray(X)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise ClusteringInputError(f"X must be finite (N, features), got {X.shape}")
    n = X.shape[0]
    if np.shape(affinity) != (n, n):
        raise ClusteringInputError(
            f"affinity of shape {np.shape(affinity)} for {n} samples; "
            "it must be (samples, samples)"
        )
    if not 1 <= k <= n:
        raise ClusteringInputError(f"k={k} clusters for {n} samples")
    torch.manual_seed(config.seed)

    # Step 1: node features, graph and reconstruction target.
    features = node_features(X, n_components=config.pca_components, seed=config.seed)
    edge_index, edge_weight = build_graph(
        affinity, n_neighbours=config.n_neighbours, tie_breaker=tie_breaker
    )
    x = torch.from_numpy(features)
    edges = torch.from_numpy(edge_index)
    weights = torch.from_numpy(edge_weight)
    target = np.asarray(affinity, dtype=np.float32).copy()
    np.fill_diagonal(target, 1.0)
    adjacency = torch.from_numpy(target)

    # Step 2: model and optimiser.
    model = GATAutoencoder(
        features.shape[1],
        hidden=config.hidden,
        heads=config.heads,
        embedding_dim=config.embedding_dim,
        dropout=config.dropout,
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history: list[dict[str, float | str]] = []
    total = config.pretrain_epochs + config.cluster_epochs

    # Step 3: pretraining on the two reconstruction losses.
    model.train()
    for epoch in range(config.pretrain_epochs):
        check_cancel(cancel)
        optimiser.zero_grad()
        output = model(x, edges, weights)
        loss, graph, feature = reconstruction_loss(
            output, x, adjacency, feature_weight=config.feature_weight
        )
        loss.backward()
        optimiser.step()
        history.append(_record("pretrain", epoch, loss, graph, feature))
        report(progress, "gat", (epoch + 1) / total, phase="pretrain", epoch=epoch + 1)

    # Step 4: centroids by k-means on the embedding.
    model.eval()
    with torch.no_grad():
        z = model.encode(x, edges, weights)[0].numpy()
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=config.seed).fit(z)
    centroids = nn.Parameter(torch.from_numpy(kmeans.cluster_centers_).float())
    labels = kmeans.labels_.astype(np.int64)
    optimiser.add_param_group({"params": [centroids]})

    # Step 5: Student's t self-training, target refreshed periodically.
    model.train()
    target = None
    for epoch in range(config.cluster_epochs):
        check_cancel(cancel)

        # Refresh the target; stop when the labels have settled.
        changed = None
        if epoch % config.update_interval == 0:
            with torch.no_grad():
                q = soft_assignment(model.encode(x, edges, weights)[0], centroids)
            target = target_distribution(q)
            new_labels = q.argmax(dim=1).numpy()
            changed = float((new_labels != labels).mean())
            labels = new_labels
            if epoch > 0 and changed < config.tolerance:
                logger.debug("labels settled after %d cluster epochs", epoch)
                break

        # One step on reconstruction plus KL(p || q).
        optimiser.zero_grad()
        output = model(x, edges, weights)
        q = soft_assignment(output.embedding, centroids)
        kl = clustering_loss(q, target)
        loss, graph, feature = reconstruction_loss(
            output, x, adjacency, feature_weight=config.feature_weight
        )
        loss = loss + config.cluster_weight * kl
        loss.backward()
        optimiser.step()
        record = _record("cluster", epoch, loss, graph, feature, kl)
        if changed is not None:
            record["changed"] = changed
        history.append(record)
        report(
            progress,
            "gat",
            (config.pretrain_epochs + epoch + 1) / total,
            phase="cluster",
            epoch=epoch + 1,
        )

    report(progress, "gat", 1.0, phase="done", epoch=len(history))

    # Step 6: final embedding, assignment and attention, in evaluation mode.
    model.eval()
    with torch.no_grad():
        output = model(x, edges, weights, return_attention=True)
        q = soft_assignment(output.embedding, centroids)
    attention = [
        (index.numpy().astype(np.int64), alpha.numpy())
        for index, alpha in output.attention
    ]
    return GATClustering(
        features=features,
        edge_index=edge_index,
        edge_weight=edge_weight,
        embedding=output.embedding.numpy(),
        soft_assignment=q.numpy(),
        labels=q.argmax(dim=1).numpy().astype(np.int64),
        attention=attention,
        history=history,
        model=model,
    )


def _record(
    phase: str,
    epoch: int,
    loss: torch.Tensor,
    graph: torch.Tensor,
    feature: torch.Tensor,
    kl: torch.Tensor | None = None,
) -> dict[str, float | str]:
    """One history entry of plain floats."""
    return {
        "phase": phase,
        "epoch": float(epoch),
        "loss": float(loss.detach()),
        "graph_loss": float(graph.detach()),
        "feature_loss": float(feature.detach()),
        "cluster_loss": 0.0 if kl is None else float(kl.detach()),
    }
