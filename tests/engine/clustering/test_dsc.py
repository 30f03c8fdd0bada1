"""Tests of DSC and DEC, ``engine.clustering.dsc`` and ``dec``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from engine.clustering.dec import DenseAutoencoder, run_dec
from engine.clustering.dsc import (
    ClusteringLayer,
    DSCConfig,
    DSCNetwork,
    DSCResult,
    masked_mse,
    pool_levels,
    run_dsc,
    time_windows,
)
from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
from engine.clustering.prepare import (
    PrepareConfig,
    Samples,
    padded_size,
    prepare_samples,
)
from engine.clustering.student_t import soft_assignment, target_distribution
from engine.clustering.synthetic import PlantedConfig, make_planted

#: Small planted set: 3 regimes, 60 days, 8 x 10 cells, 2 variables, noise
#: half the signal (k-means on the inputs separates it).
PLANTED = PlantedConfig(
    seed=0, n_time=60, n_lat=8, n_lon=10, n_variables=2, n_regimes=3, noise_ratio=0.5
)

#: True regimes and prepared samples of the planted set.
Planted = tuple[np.ndarray, Samples]

#: A network small enough to train on the planted set in about a second.
TINY = DSCConfig.quick(
    widths=(4, 8),
    lstm_size=8,
    latent_size=4,
    window=1,
    dec_widths=(32,),
    dec_latent_size=3,
    pretrain_epochs=10,
    batch_size=16,
    max_iterations=60,
    update_interval=10,
)


@pytest.fixture(scope="module")
def planted_samples() -> Planted:
    """True regimes and samples (with a grid) of the planted set."""
    planted = make_planted(PLANTED)
    samples = prepare_samples(planted.cube, PrepareConfig(grid=True), n_clusters=3)
    return planted.regime, samples


# ---------------------------------------------------------------------------
# Clustering layer
# ---------------------------------------------------------------------------


def test_student_t_assignment_hand_worked() -> None:
    """Two points, two centroids, alpha 1: q worked out by hand."""
    latent = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    centroids = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    soft = soft_assignment(latent, centroids, alpha=1.0)

    # Point 0: squared distances 0 and 1, kernels 1 and 1/2 -> 2/3, 1/3.
    # Point 1: squared distances 4 and 1, kernels 1/5 and 1/2 -> 2/7, 5/7.
    expected = torch.tensor([[2 / 3, 1 / 3], [2 / 7, 5 / 7]], dtype=torch.float64)

    # float64 throughout: only rounding error is left.
    torch.testing.assert_close(soft, expected, rtol=0, atol=1e-12)


def test_clustering_layer_gives_positive_rows_summing_to_one() -> None:
    """Any latent and centroids: q is a probability per sample."""
    torch.manual_seed(0)
    layer = ClusteringLayer(5, 3)
    with torch.no_grad():
        layer.centroids.normal_()
    soft = layer(torch.randn(40, 3) * 10)

    # float32 sums of 5 terms: a few ulps of 1.
    assert (soft > 0).all()
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(40), rtol=0, atol=1e-6)


def test_target_distribution_sharpens(rng: np.random.Generator) -> None:
    """p puts more weight on each row's favourite cluster than q."""
    # Random rows with every cyclic permutation, so that the cluster
    # frequencies f_j are equal and p is q squared, renormalised.
    rows = rng.dirichlet(np.ones(4), size=10)
    soft = np.concatenate([np.roll(rows, shift, axis=1) for shift in range(4)])
    soft = torch.from_numpy(soft)
    target = target_distribution(soft)

    # Rows sum to one (float64 rounding only).
    torch.testing.assert_close(
        target.sum(dim=1), torch.ones(len(soft), dtype=torch.float64)
    )

    # Larger maximum and lower entropy in every row; the favourite stays.
    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.log()).sum(dim=1)

    assert (target.max(dim=1).values >= soft.max(dim=1).values).all()
    assert (entropy(target) < entropy(soft)).all()
    assert torch.equal(target.argmax(dim=1), soft.argmax(dim=1))


def test_target_distribution_hand_worked() -> None:
    """Two rows with equal cluster frequencies: p = q^2, renormalised."""
    soft = torch.tensor([[0.7, 0.3], [0.3, 0.7]], dtype=torch.float64)

    # f = (1, 1); 0.49 / (0.49 + 0.09) and 0.09 / 0.58.
    expected = torch.tensor([[0.49, 0.09], [0.09, 0.49]], dtype=torch.float64) / 0.58
    torch.testing.assert_close(target_distribution(soft), expected)


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(20, 28), (41, 41), (9, 13), (4, 6)])
@pytest.mark.parametrize("skip_connections", [False, True])
def test_network_output_has_the_padded_input_shape(
    shape: tuple[int, int], skip_connections: bool
) -> None:
    """Reconstruction (B, V, H', W') for the grid padded to its levels."""
    config = DSCConfig.quick(
        widths=(2, 3, 4, 5, 6),
        lstm_size=4,
        latent_size=3,
        skip_connections=skip_connections,
    )
    levels = pool_levels(*shape, n_widths=len(config.widths))
    height, width = (padded_size(n, levels=levels) for n in shape)
    network = DSCNetwork((3, height, width), config)
    windows = torch.zeros(2, 5, 3, height, width)
    latent, reconstruction = network(windows)

    assert latent.shape == (2, 3)
    assert reconstruction.shape == (2, 3, height, width)


def test_network_parameter_count() -> None:
    """A tiny network's weights, counted by hand."""
    config = DSCConfig.quick(widths=(2, 3), lstm_size=4, latent_size=3)
    network = DSCNetwork((2, 4, 4), config)
    n_parameters = sum(p.numel() for p in network.parameters())

    # One pooling: bottleneck 3 x 2 x 2 = 12 features per step.
    # Encoder convolutions 2->2 and 2->3: (36 + 2) + (54 + 3) = 95.
    # Bidirectional LSTM 12 -> 4: 2 * (4 * 4 * (12 + 4) + 2 * 4 * 4) = 576.
    # Latent 8 -> 3 and back 3 -> 12: 27 + 48 = 75.
    # Decoder convolutions 3->2 and output 2->2: (54 + 2) + (36 + 2) = 94.
    assert n_parameters == 95 + 576 + 75 + 94


@pytest.mark.parametrize(
    ("shape", "n_widths", "levels"),
    [
        ((41, 41), 5, 4),  # the paper's grid, padded to 48 x 48
        ((20, 28), 3, 2),  # WFDE5 with the quick widths: 5 x 7 bottleneck
        ((20, 28), 5, 4),  # WFDE5 with the paper's widths: padded to 32 x 32
        ((4, 6), 5, 1),
        ((3, 3), 5, 1),  # padded to 4 x 4, bottleneck 2 x 2
        ((2, 5), 5, 0),  # halving would leave a side of 1 cell
    ],
)
def test_pool_levels(shape: tuple[int, int], n_widths: int, levels: int) -> None:
    """A level per width but the first, while the bottleneck keeps 2 cells."""
    assert pool_levels(*shape, n_widths=n_widths) == levels


def test_unpadded_grid_is_refused() -> None:
    """A grid that the poolings cannot halve names the padding helper."""
    with pytest.raises(ClusteringInputError, match="pad_grid"):
        DSCNetwork((2, 10, 12), DSCConfig.quick(widths=(2, 2, 2)))


def test_time_windows_repeat_the_edges() -> None:
    """window=0 is the sample alone; window=2 clamps at both ends."""
    index = torch.tensor([0, 3, 9])
    assert time_windows(index, 10, window=0).tolist() == [[0], [3], [9]]
    assert time_windows(index, 10, window=2).tolist() == [
        [0, 0, 0, 1, 2],
        [1, 2, 3, 4, 5],
        [7, 8, 9, 9, 9],
    ]


@pytest.mark.parametrize(("window", "steps"), [(0, 1), (2, 5)])
def test_window_sets_the_sequence_length(window: int, steps: int) -> None:
    """The LSTM sees 2 * window + 1 steps; the latent is one per sample."""
    torch.manual_seed(0)
    config = DSCConfig.quick(widths=(2, 3), lstm_size=4, latent_size=3, window=window)
    network = DSCNetwork((2, 8, 8), config)
    grid = torch.randn(10, 2, 8, 8)
    windows = grid[time_windows(torch.arange(4), 10, window=window)]
    latent, reconstruction = network(windows)

    assert windows.shape == (4, steps, 2, 8, 8)
    assert latent.shape == (4, 3)
    assert reconstruction.shape == (4, 2, 8, 8)


@pytest.mark.parametrize("skip_connections", [False, True])
def test_forward_steps_matches_forward(skip_connections: bool) -> None:
    """Encoding each distinct step once gives the same numbers."""
    torch.manual_seed(0)
    config = DSCConfig.quick(
        widths=(2, 3, 4), lstm_size=4, latent_size=3, skip_connections=skip_connections
    )
    network = DSCNetwork((2, 8, 12), config)
    grid = torch.randn(10, 2, 8, 12)
    steps = time_windows(torch.tensor([0, 1, 5, 9]), 10, window=2)
    expected = network(grid[steps])
    actual = network.forward_steps(grid, steps)

    # The same operations on the same values, batched differently.
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


def test_one_optimiser_step_changes_every_weight() -> None:
    """One Adam step on the masked loss moves every parameter."""
    torch.manual_seed(0)
    config = DSCConfig.quick(widths=(2, 3), lstm_size=4, latent_size=3)
    network = DSCNetwork((2, 8, 8), config)
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    windows = torch.randn(4, 5, 2, 8, 8)
    mask = torch.ones(8, 8, dtype=torch.bool)

    # One step on the reconstruction of the centre steps.
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    _, reconstruction = network(windows)
    masked_mse(reconstruction, windows[:, 2], mask).backward()
    optimizer.step()

    # Adam moves each weight with a gradient by about lr, far above 0.
    unchanged = [
        name for name, p in network.named_parameters() if torch.equal(p, before[name])
    ]
    assert unchanged == []


def test_masked_loss_ignores_sea_cells() -> None:
    """Errors over sea do not count; the mean is over land cells only."""
    target = torch.zeros(1, 2, 2, 2)
    reconstruction = torch.zeros(1, 2, 2, 2)
    mask = torch.tensor([[True, False], [False, True]])

    # Huge errors over sea only: the loss stays 0.
    reconstruction[..., ~mask] = 1e6
    assert masked_mse(reconstruction, target, mask).item() == 0.0

    # Error 2 on one of the 4 land values (2 cells x 2 variables): 4 / 4.
    reconstruction[0, 0, 0, 0] = 2.0
    assert masked_mse(reconstruction, target, mask).item() == pytest.approx(1.0)


def test_dense_autoencoder_shapes() -> None:
    """DEC's network maps (B, F) to a (B, d) latent and back."""
    network = DenseAutoencoder(30, (16, 8), 3)
    latent, reconstruction = network(torch.zeros(5, 30))
    assert latent.shape == (5, 3)
    assert reconstruction.shape == (5, 30)


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def test_dsc_recovers_planted_regimes(planted_samples: Planted) -> None:
    """A short run on a tiny planted set finds the regimes."""
    regime, samples = planted_samples
    result = run_dsc(samples, 3, TINY)

    # Shapes and probabilities of the result.
    assert result.labels.shape == (60,)
    assert result.soft.shape == (60, 3)
    assert result.latent.shape == (60, TINY.latent_size)
    assert result.centroids.shape == (3, TINY.latent_size)

    # float32 sums of 3 terms: within a few ulps of 1.
    np.testing.assert_allclose(result.soft.sum(axis=1), 1.0, atol=1e-5)

    # Measured ARI 1.0 at this seed (0.95 and 1.0 at seeds 1 and 2).
    assert adjusted_rand_score(regime, result.labels) > 0.8


def test_dsc_without_grid_uses_the_features(planted_samples: Planted) -> None:
    """Samples prepared without a grid get one rebuilt from X."""
    _, samples = planted_samples
    no_grid = prepare_samples(make_planted(PLANTED).cube, n_clusters=3)
    assert no_grid.grid is None
    config = replace(TINY, max_iterations=0)
    with_grid = run_dsc(samples, 3, config)
    rebuilt = run_dsc(no_grid, 3, config)

    # Same values (float32 either way), same seed: the same latent up to
    # float32 rounding.
    np.testing.assert_allclose(rebuilt.latent, with_grid.latent, rtol=1e-5, atol=1e-5)


def test_same_seed_same_labels(planted_samples: Planted) -> None:
    """Two runs with one seed agree exactly on the CPU."""
    _, samples = planted_samples
    config = replace(TINY, pretrain_epochs=2)
    first = run_dsc(samples, 3, config)
    second = run_dsc(samples, 3, config)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_dec_recovers_planted_regimes(planted_samples: Planted) -> None:
    """DEC on the feature vectors also finds well-separated regimes."""
    regime, samples = planted_samples
    result = run_dec(samples, 3, TINY)

    assert result.method == "dec"
    assert result.latent.shape == (60, TINY.dec_latent_size)

    # Measured ARI 1.0 at this seed; DEC is less stable (0.48 at seed 1).
    assert adjusted_rand_score(regime, result.labels) > 0.8


def test_progress_reports_both_stages(planted_samples: Planted) -> None:
    """Each pre-training epoch and target refresh is reported."""
    _, samples = planted_samples
    events: list[dict] = []
    result = run_dsc(samples, 3, TINY, progress=events.append)

    # Every pre-training epoch, then at least the refresh at k-means.
    pretrain = [e for e in events if e["stage"] == "pretrain"]
    cluster = [e for e in events if e["stage"] == "cluster" and "epoch" in e]
    epochs = [e["epoch"] for e in pretrain]
    assert epochs == list(range(1, TINY.pretrain_epochs + 1))
    assert cluster and cluster[0]["epoch"] == 0
    assert all(0.0 <= e["changed"] <= 1.0 for e in cluster)
    assert "reconstruction" in pretrain[-1]["losses"]
    assert len(result.history) == len(cluster) + len(pretrain)

    # One fraction of the whole run, in 0..1 and never decreasing.
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions)
    assert 0.0 <= fractions[0] and fractions[-1] <= 1.0


@pytest.mark.parametrize("run", [run_dsc, run_dec])
def test_cancel_stops_early(
    planted_samples: Planted, run: Callable[..., DSCResult]
) -> None:
    """Setting the event after the first report stops the run."""
    _, samples = planted_samples
    cancel = threading.Event()
    result = run(samples, 3, TINY, progress=lambda _: cancel.set(), cancel=cancel)

    # One epoch reported, no clustering step; labels still given.
    assert result.cancelled
    assert len(result.history) == 1
    assert result.n_iterations == 0
    assert result.labels.shape == (60,)


def test_bad_settings_are_refused(planted_samples: Planted) -> None:
    """Out-of-range settings and cluster counts name the problem."""
    _, samples = planted_samples
    with pytest.raises(ClusteringConfigError, match="window"):
        DSCConfig(window=-1)
    with pytest.raises(ClusteringConfigError, match="activation"):
        DSCConfig(activation="sigmoid")
    with pytest.raises(ClusteringInputError, match="1 <= k <= samples"):
        run_dsc(samples, 61, TINY)


def test_paper_preset_is_the_published_network() -> None:
    """The paper preset keeps the released code's sizes."""
    paper = DSCConfig.paper()
    assert paper.widths == (64, 64, 128, 256, 512)
    assert (paper.lstm_size, paper.lstm_layers, paper.latent_size) == (512, 2, 256)
    assert paper.window == 0
    assert paper.gamma == 1.0
    assert DSCConfig.paper(window=2).window == 2
