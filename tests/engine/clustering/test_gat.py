"""Tests of the graph attention autoencoder, ``engine.clustering.gat``."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
from engine.clustering.gat import (
    ClusteringCancelled,
    GATAutoencoder,
    GATConfig,
    build_graph,
    dense_adjacency,
    fit_gat_clusters,
    node_features,
    reconstruction_loss,
)
from engine.clustering.student_t import (
    clustering_loss,
    soft_assignment,
    target_distribution,
)

#: Four blocks of five nodes: the consensus of runs that all agree.
BLOCKS = np.repeat(np.arange(4), 5)
AFFINITY = (BLOCKS[:, None] == BLOCKS[None, :]).astype(float)

#: A small, fast network for every test here.
TINY = GATConfig(
    n_neighbours=3,
    pca_components=6,
    hidden=4,
    heads=2,
    embedding_dim=3,
    pretrain_epochs=30,
    cluster_epochs=10,
    update_interval=5,
)


def _features(seed: int = 0) -> np.ndarray:
    """Block means plus small noise, shape (20, 12)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(4, 12))
    return centres[BLOCKS] + rng.normal(scale=0.3, size=(20, 12))


def test_build_graph_keeps_top_neighbours_and_self_loops() -> None:
    """Each node receives its self-loop and its 3 strongest links."""
    edge_index, edge_weight = build_graph(AFFINITY, n_neighbours=3)

    # 20 self-loops first, then 3 links into each of the 20 nodes.
    assert edge_index.shape == (2, 20 + 20 * 3)
    np.testing.assert_array_equal(edge_index[:, :20], np.tile(np.arange(20), (2, 1)))
    assert np.bincount(edge_index[1], minlength=20).tolist() == [4] * 20

    # Every kept link stays inside its block, with weight 1.
    assert (BLOCKS[edge_index[0]] == BLOCKS[edge_index[1]]).all()
    np.testing.assert_array_equal(edge_weight, 1.0)


def test_build_graph_breaks_ties_with_the_second_matrix() -> None:
    """Equal affinities: the tie-breaker's largest entry wins."""
    affinity = np.ones((3, 3))
    tie = np.array([[0.0, 0.2, 0.9], [0.2, 0.0, 0.1], [0.9, 0.1, 0.0]])
    edge_index, _ = build_graph(affinity, n_neighbours=1, tie_breaker=tie)
    into_zero = edge_index[0, 3:][edge_index[1, 3:] == 0]
    assert into_zero.tolist() == [2]


def test_build_graph_drops_zero_links() -> None:
    """A node with no positive link keeps only its self-loop."""
    affinity = np.eye(3)
    edge_index, _ = build_graph(affinity, n_neighbours=2)
    assert edge_index.shape == (2, 3)


def test_dense_adjacency_is_symmetric_with_unit_diagonal() -> None:
    """A one-way edge counts both ways."""
    adjacency = dense_adjacency(np.array([[0], [1]]), np.array([0.5]), 3)
    assert adjacency[0, 1] == adjacency[1, 0] == 0.5
    np.testing.assert_array_equal(np.diag(adjacency), 1.0)


def test_autoencoder_shapes_and_attention() -> None:
    """Embedding (N, D), logits (N, N), one alpha (E, heads) per layer."""
    torch.manual_seed(0)
    edge_index, edge_weight = build_graph(AFFINITY, n_neighbours=3)
    model = GATAutoencoder(12, hidden=4, heads=2, embedding_dim=3)
    x = torch.from_numpy(_features()).float()
    output = model(
        x,
        torch.from_numpy(edge_index),
        torch.from_numpy(edge_weight),
        return_attention=True,
    )

    # Shapes of the three outputs.
    assert output.embedding.shape == (20, 3)
    assert output.adjacency_logits.shape == (20, 20)
    assert output.reconstruction.shape == (20, 12)

    # Two layers of attention over the same E = 80 edges, self-loops included.
    assert len(output.attention) == 2
    for index, alpha in output.attention:
        assert index.shape == (2, 80)
        assert alpha.shape == (80, 2)

        # Softmax over each node's incoming edges; float32 sums (1e-5).
        sums = torch.zeros(20, 2).index_add_(0, index[1], alpha)
        torch.testing.assert_close(sums, torch.ones(20, 2), atol=1e-5, rtol=0)


def test_parameter_count() -> None:
    """GATConv(12 -> 2x4, edge_dim 1), GATConv(8 -> 2x3), head 3-4-12."""
    model = GATAutoencoder(12, hidden=4, heads=2, embedding_dim=3)

    # Per GATConv: lin (in x heads*out), att_src, att_dst, att_edge
    # (heads*out each), lin_edge (1 x heads*out), bias (out, or heads*out).
    conv1 = 12 * 8 + 8 + 8 + 8 + 8 + 8
    conv2 = 8 * 6 + 6 + 6 + 6 + 6 + 3
    head = (3 * 4 + 4) + (4 * 12 + 12)
    assert sum(p.numel() for p in model.parameters()) == conv1 + conv2 + head


def test_one_optimiser_step_changes_every_layer() -> None:
    """Graph and feature losses reach both GAT layers and the head."""
    torch.manual_seed(0)
    edge_index, edge_weight = build_graph(AFFINITY, n_neighbours=3)
    model = GATAutoencoder(12, hidden=4, heads=2, embedding_dim=3)
    x = torch.from_numpy(_features()).float()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    # One Adam step on the reconstruction loss.
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    output = model(x, torch.from_numpy(edge_index), torch.from_numpy(edge_weight))
    loss, _, _ = reconstruction_loss(output, x, torch.from_numpy(AFFINITY).float())
    loss.backward()
    optimiser.step()

    # The main weight matrices of each part have moved.
    for name in ("conv1.lin.weight", "conv2.lin.weight", "feature_head.2.weight"):
        assert not torch.equal(before[name], dict(model.named_parameters())[name])


def test_student_t_helpers() -> None:
    """Rows sum to 1; the target is sharper; KL(p || p) is 0."""
    embedding = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    centroids = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    q = soft_assignment(embedding, centroids)
    p = target_distribution(q)

    # Both are distributions over clusters (float32 sums, 1e-6).
    torch.testing.assert_close(q.sum(dim=1), torch.ones(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(3), atol=1e-6, rtol=0)

    # Hand value: q_00 = 1 / (1 + 1/51) for the sample on the first centre.
    torch.testing.assert_close(q[0, 0], torch.tensor(51.0 / 52.0))

    # Sharpening, and a zero divergence from itself (float32, 1e-7).
    assert p[1, 0] > q[1, 0]
    assert float(clustering_loss(p, p)) == pytest.approx(0.0, abs=1e-7)


def test_fit_recovers_blocks_and_keeps_every_output() -> None:
    """Clean blocks in graph and features: the labels are the blocks."""
    result = fit_gat_clusters(_features(), AFFINITY, 4, TINY)

    # Exact recovery on so clean an input; ARI is 1 up to renumbering.
    assert adjusted_rand_score(BLOCKS, result.labels) == 1.0

    # Every output at its documented shape.
    assert result.features.shape == (20, 6)
    assert result.embedding.shape == (20, 3)
    assert result.soft_assignment.shape == (20, 4)
    assert result.edge_index.shape == (2, 80)
    assert [alpha.shape for _, alpha in result.attention] == [(80, 2), (80, 2)]
    phases = {entry["phase"] for entry in result.history}
    assert phases == {"pretrain", "cluster"}


def test_fit_is_reproducible() -> None:
    """The same seed gives the same embedding (float32 on CPU, 1e-6)."""
    first = fit_gat_clusters(_features(), AFFINITY, 4, TINY)
    second = fit_gat_clusters(_features(), AFFINITY, 4, TINY)
    np.testing.assert_allclose(first.embedding, second.embedding, atol=1e-6)


def test_fit_can_be_cancelled() -> None:
    """A cancel token already set stops before the first epoch."""
    with pytest.raises(ClusteringCancelled):
        fit_gat_clusters(_features(), AFFINITY, 4, TINY, cancel=_set_event())


def test_fit_rejects_mismatched_inputs() -> None:
    """Affinity of the wrong size and NaN features are named errors."""
    with pytest.raises(ClusteringInputError, match="affinity"):
        fit_gat_clusters(_features(), AFFINITY[:5, :5], 4, TINY)
    features = _features()
    features[0, 0] = np.nan
    with pytest.raises(ClusteringInputError, match="finite"):
        fit_gat_clusters(features, AFFINITY, 4, TINY)


def test_config_rejects_bad_values() -> None:
    """Out-of-range settings name themselves."""
    with pytest.raises(ClusteringConfigError, match="n_neighbours"):
        GATConfig(n_neighbours=0)


def test_node_features_keeps_relative_variance() -> None:
    """PCA columns keep their order of variance; mean variance is 1."""
    features = node_features(_features(), n_components=4)
    variances = features.var(axis=0)
    assert features.shape == (20, 4)
    assert (np.diff(variances) <= 0).all()

    # float32 output: mean variance 1 to 1e-5.
    assert variances.mean() == pytest.approx(1.0, abs=1e-5)


def _set_event() -> threading.Event:
    """A cancel token that is already set."""
    event = threading.Event()
    event.set()
    return event
