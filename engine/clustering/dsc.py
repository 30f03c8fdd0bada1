"""Deep spatiotemporal clustering (DSC) of climate time steps.

DSC (see ``METHODS.md``, section 2) clusters *time steps*: each sample is
the set of maps of several variables at one step. A convolutional-LSTM
autoencoder learns a latent vector per step, and a Student's t clustering
layer, initialised by k-means on that latent, is then trained together
with the reconstruction, as in DEC (Xie et al. 2016), whose layer is
shared by :func:`engine.clustering.dec.run_dec`.

The network, sized from the input:

1. a per-time-step convolutional encoder: one 3x3 convolution per entry of
   ``DSCConfig.widths``, tanh or ReLU, and a 2x2 max pooling after each
   convolution but the first, for as many pooling levels as the grid
   allows (:func:`pool_levels`); the grid is zero-padded to a multiple of
   ``2 ** levels`` first (:func:`engine.clustering.prepare.pad_grid`);
2. an LSTM over a window of neighbouring steps: sample ``t`` sees
   ``t - w .. t + w`` (``DSCConfig.window``), the first and last steps
   repeated at the edges of the period (:func:`time_windows`); the latent
   of sample ``t`` is taken from the LSTM output at the centre step;
3. a dense latent of ``DSCConfig.latent_size``;
4. the mirrored decoder: a dense layer back to the bottleneck maps, then
   per level a nearest-neighbour upsampling and a 3x3 convolution, and a
   last linear convolution to the variables, giving the centre step's
   maps ``(V, H, W)``;
5. optional U-net skip connections (centre-step encoder maps concatenated
   to the decoder at the same resolution), off by default: skips let the
   decoder copy the input around the latent, so the reconstruction no
   longer forces the latent to describe the maps, and the clustering of
   that latent gets weaker.

The reconstruction loss is the mean squared error over land cells only
(:func:`masked_mse`): sea and padding cells are zeros of no meaning.

Training, in :func:`run_dsc`:

1. autoencoder pre-training (``pretrain_epochs``, Adam);
2. k-means (``kmeans_starts`` starts) on the latent of every sample gives
   the initial centroids;
3. joint training of ``recon + gamma * KL(p || q)``, where ``q`` is the
   Student's t soft assignment and ``p`` the sharpened target (both from
   :mod:`engine.clustering.student_t`), recomputed on every
   sample every ``update_interval`` iterations; training stops when the
   share of samples whose label changed between two refreshes falls below
   ``tolerance``, or after ``max_iterations``.

Typical use::

    from engine.clustering.dsc import DSCConfig, run_dsc
    from engine.clustering.prepare import PrepareConfig, prepare_samples

    samples = prepare_samples(cube, PrepareConfig(grid=True))
    result = run_dsc(samples, 7, DSCConfig.quick())
    result.labels        # (time,) cluster of each step

Shapes used in this module: ``T`` time steps (samples), ``B`` a batch of
them, ``S = 2 * window + 1`` the steps of a window, ``V`` variables, ``H``
and ``W`` the (padded) grid's lat and lon sizes, ``d`` the latent size,
``k`` the clusters.

References
----------
Nji, Y. et al. (2023), Deep spatiotemporal clustering: a temporal
clustering approach for multi-dimensional climate data, ECML PKDD,
arXiv:2304.14541.

Xie, J., Girshick, R. and Farhadi, A. (2016), Unsupervised deep embedding
for clustering analysis, ICML, arXiv:1511.06335.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from engine.clustering.control import Cancel, Progress, is_cancelled, report
from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
from engine.clustering.prepare import Samples, pad_grid
from engine.clustering.student_t import (
    clustering_loss,
    soft_assignment,
    target_distribution,
)

__all__ = [
    "PAPER_CLUSTERS",
    "ProgressCallback",
    "CancelToken",
    "ClusteringLayer",
    "DSCConfig",
    "DSCNetwork",
    "DSCResult",
    "TrainingProgress",
    "choose_device",
    "masked_mse",
    "pool_levels",
    "run_dsc",
    "time_windows",
]

logger = logging.getLogger(__name__)

#: Number of clusters of the DSC paper's ERA5 experiment.
PAPER_CLUSTERS = 7

#: Smallest side, in cells, that the bottleneck maps may have: pooling
#: stops before a side would drop below it.
MIN_BOTTLENECK = 2

Activation = Literal["tanh", "relu"]
Stage = Literal["pretrain", "cluster"]


#: Token with ``is_set()`` (see :mod:`engine.clustering.control`).
CancelToken = Cancel


@dataclass(frozen=True)
class TrainingProgress:
    """One report of a training run; the progress hook gets it as a dict.

    Attributes
    ----------
    stage
        ``"pretrain"`` (autoencoder alone) or ``"cluster"`` (joint
        training with the clustering layer).
    epoch
        The pre-training epoch (from 1), or the target refresh during
        clustering (0 for the one at the k-means initialisation).
    n_epochs
        The most that ``epoch`` can reach in this stage: the pre-training
        epochs, or the refreshes that ``max_iterations`` allows.
    iteration
        Optimiser steps taken in this stage so far.
    losses
        Mean losses since the previous report: ``"reconstruction"``, and
        in the cluster stage ``"kl"`` and ``"total"`` (empty at refresh
        0, before any step).
    changed
        Share of samples whose label changed since the previous target
        refresh, in [0, 1]; ``None`` during pre-training.
    """

    stage: Stage
    epoch: int
    n_epochs: int
    iteration: int
    losses: dict[str, float]
    changed: float | None = None

    @property
    def fraction(self) -> float:
        """Share of the whole run done: pre-training fills 0..0.5."""
        share = self.epoch / self.n_epochs if self.n_epochs else 1.0
        return 0.5 * min(share, 1.0) + (0.5 if self.stage == "cluster" else 0.0)


#: Receives one dict per report (see :mod:`engine.clustering.control`):
#: the fields of :class:`TrainingProgress` plus ``"fraction"`` of the
#: whole run (pre-training fills 0..0.5, clustering 0.5..1) and
#: ``"method"``.
ProgressCallback = Progress


@dataclass(frozen=True)
class DSCConfig:
    """Settings of :func:`run_dsc` and :func:`engine.clustering.dec.run_dec`.

    The defaults are the :meth:`quick` preset; :meth:`paper` gives the
    published network.

    Parameters
    ----------
    widths
        Channels of the encoder's 3x3 convolutions, in order; a 2x2 max
        pooling follows every convolution but the first, as long as the
        grid allows (see :func:`pool_levels`). The decoder mirrors them.
    activation
        ``"tanh"`` (the paper's) or ``"relu"``, after every convolution
        and dense layer but the latent and the output.
    lstm_size
        Hidden units of each LSTM layer (per direction).
    lstm_layers
        Stacked LSTM layers.
    bidirectional
        Run the LSTM both ways. A one-way LSTM's output at the centre step
        depends on ``t - window .. t`` only, so the later half of the
        window would be wasted; irrelevant for ``window=0``.
    latent_size
        Size ``d`` of the DSC latent vector.
    window
        Half-width ``w`` of the time window fed to the LSTM: sample ``t``
        sees ``t - w .. t + w``, edges padded by repeating the first or
        last step. ``0`` is the released code's choice: sequences of
        length one, so that its LSTM sees no temporal context.
    skip_connections
        U-net skips from encoder to decoder; off by default because they
        let the decoder bypass the latent, which weakens clustering.
    dec_widths
        Hidden layers of DEC's dense encoder (the decoder mirrors them).
    dec_latent_size
        Size of DEC's latent vector.
    pretrain_epochs
        Epochs of autoencoder pre-training.
    learning_rate
        Adam learning rate, both stages.
    batch_size
        Samples per optimiser step (fewer when there are fewer samples).
    gamma
        Weight of ``KL(p || q)`` against the reconstruction loss (1 in
        the paper). DEC ignores it: its clustering loss is the KL alone.
    alpha
        Degrees of freedom of the Student's t kernel (1 in DEC and DSC).
    update_interval
        Iterations ``T`` between refreshes of the target distribution.
    tolerance
        Stop once the share of labels changed between two refreshes is
        below this, in [0, 1] (0.001 is 0.1 %).
    max_iterations
        Most optimiser steps of the clustering stage.
    kmeans_starts
        k-means starts for the initial centroids; the lowest inertia wins.
    seed
        Seed of torch's weights, the batch order and k-means.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; ``None`` picks
        CUDA, then MPS, then the CPU (:func:`choose_device`).
    threads
        Torch CPU threads during the run, restored afterwards; ``None``
        leaves torch's setting. One thread is the default: on the 2-core
        machines these small networks ran faster on one thread than two
        (see the module notes of :func:`run_dsc`).
    """

    widths: tuple[int, ...] = (8, 16, 16)
    activation: Activation = "tanh"
    lstm_size: int = 32
    lstm_layers: int = 1
    bidirectional: bool = True
    latent_size: int = 16
    window: int = 2
    skip_connections: bool = False
    dec_widths: tuple[int, ...] = (128, 128, 512)
    dec_latent_size: int = 10
    pretrain_epochs: int = 15
    learning_rate: float = 1e-3
    batch_size: int = 64
    gamma: float = 1.0
    alpha: float = 1.0
    update_interval: int = 12
    tolerance: float = 0.001
    max_iterations: int = 120
    kmeans_starts: int = 10
    seed: int = 0
    device: str | None = None
    threads: int | None = 1

    def __post_init__(self) -> None:
        """Check every setting, naming the bad one and its range."""
        # Layer sizes.
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "dec_widths", tuple(int(w) for w in self.dec_widths))
        checks = [
            (len(self.widths) >= 1, "widths needs at least one convolution"),
            (all(w >= 1 for w in self.widths), "widths must be positive"),
            (all(w >= 1 for w in self.dec_widths), "dec_widths must be positive"),
            (self.activation in ("tanh", "relu"), "activation: 'tanh' or 'relu'"),
            (self.lstm_size >= 1 and self.lstm_layers >= 1, "LSTM sizes >= 1"),
            (self.latent_size >= 1, "latent_size must be >= 1"),
            (self.dec_latent_size >= 1, "dec_latent_size must be >= 1"),
            (self.window >= 0, "window must be >= 0"),
        ]

        # Training.
        checks += [
            (self.pretrain_epochs >= 0, "pretrain_epochs must be >= 0"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.gamma >= 0, "gamma must be >= 0"),
            (self.alpha > 0, "alpha must be positive"),
            (self.update_interval >= 1, "update_interval must be >= 1"),
            (0.0 <= self.tolerance <= 1.0, "tolerance must be in [0, 1]"),
            (self.max_iterations >= 0, "max_iterations must be >= 0"),
            (self.kmeans_starts >= 1, "kmeans_starts must be >= 1"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ClusteringConfigError(f"DSCConfig: {message}")

    @classmethod
    def quick(cls, **changes: Any) -> DSCConfig:
        """Small network and short training, for a CPU and a page.

        Widths 8-16-16 (two pooling levels), one bidirectional LSTM of 32,
        a latent of 16, a window of 2 steps either side, 15 pre-training
        epochs, batches of 64, and at most 120 clustering iterations with
        a target refresh every 12: the WFDE5 hourly cube (744 steps,
        20 x 28, 6 variables) took 36-42 s of CPU time on one thread and
        46-48 s of wall time on a 2-core machine shared with other jobs
        (seeds 0 and 1). There it stops at ``max_iterations``, about 1 %
        of the labels still changing between refreshes, short of the
        0.1 % tolerance. ``changes`` override single settings.
        """
        return replace(cls(), **changes)

    @classmethod
    def paper(cls, **changes: Any) -> DSCConfig:
        """The published DSC network, to be run with ``k = 7``.

        From the released code (``METHODS.md``): convolutions 64-64-128-256
        -512 (3x3, tanh, four poolings), two one-way LSTM layers of 512, a
        latent of 256, sequences of one step (``window=0``), KL weight 1.
        METHODS.md gives no training schedule; the one used is that of a
        common Keras reimplementation of DEC (200 pre-training epochs,
        batch 256, target refresh every 140 iterations, tolerance 0.1 %,
        at most 20 000 iterations), as are DEC's layers d-500-500-2000-10.
        Meant for a GPU: hours on a laptop CPU.
        """
        paper = cls(
            widths=(64, 64, 128, 256, 512),
            activation="tanh",
            lstm_size=512,
            lstm_layers=2,
            bidirectional=False,
            latent_size=256,
            window=0,
            dec_widths=(500, 500, 2000),
            dec_latent_size=10,
            pretrain_epochs=200,
            batch_size=256,
            update_interval=140,
            tolerance=0.001,
            max_iterations=20_000,
            kmeans_starts=20,
        )
        return replace(paper, **changes)


@dataclass(frozen=True)
class DSCResult:
    """Outcome of :func:`run_dsc` or :func:`engine.clustering.dec.run_dec`.

    Attributes
    ----------
    method
        ``"dsc"`` or ``"dec"``.
    labels
        Cluster of each sample, shape ``(T,)``, int64 in ``0 .. k - 1``: the
        most probable cluster of ``soft``. A cluster may end up empty.
    soft
        Student's t soft assignments ``q``, shape ``(T, k)``, float32, rows
        summing to 1.
    latent
        Latent vector of each sample, shape ``(T, d)``, float32.
    centroids
        Cluster centres in the latent space, shape ``(k, d)``, float32.
    initial_labels
        k-means labels on the pre-trained latent, shape ``(T,)``.
    history
        One dict per report: ``stage``, ``epoch``, ``iteration``, the
        losses and ``changed`` (as in :class:`TrainingProgress`).
    config
        The settings used.
    converged
        Whether the label-change tolerance was reached.
    cancelled
        Whether the run was stopped by ``cancel``; the labels are then
        those of the model as it was (k-means on the latent if stopped
        during pre-training).
    n_iterations
        Optimiser steps of the clustering stage.
    seconds
        Wall time of the run.
    device
        Torch device used.
    """

    method: str
    labels: np.ndarray
    soft: np.ndarray
    latent: np.ndarray
    centroids: np.ndarray
    initial_labels: np.ndarray
    history: list[dict[str, Any]]
    config: DSCConfig
    converged: bool
    cancelled: bool
    n_iterations: int
    seconds: float
    device: str


# ---------------------------------------------------------------------------
# The clustering layer
# ---------------------------------------------------------------------------


class ClusteringLayer(nn.Module):
    """Trainable centroids giving Student's t soft assignments.

    The kernel, target and loss are those of
    :mod:`engine.clustering.student_t`, shared with HEDGTC.

    Parameters
    ----------
    n_clusters
        Number of clusters ``k``.
    latent_size
        Size ``d`` of the latent vectors.
    alpha
        Degrees of freedom of the kernel.

    Shapes
    ------
    - input: latent ``(B, d)``
    - output: soft assignments ``(B, k)``
    """

    def __init__(self, n_clusters: int, latent_size: int, *, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)
        self.centroids = nn.Parameter(torch.zeros(n_clusters, latent_size))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Soft assignments of ``latent`` to the centroids."""
        return soft_assignment(latent, self.centroids, alpha=self.alpha)


# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------


def pool_levels(height: int, width: int, *, n_widths: int) -> int:
    """Number of 2x2 poolings of the DSC encoder for a grid.

    One pooling per convolution after the first, while the smaller side,
    zero-padded to a multiple of ``2 ** levels``, still gives bottleneck
    maps of at least :data:`MIN_BOTTLENECK` cells.

    Parameters
    ----------
    height, width
        Grid size in cells (lat, lon), padded or not.
    n_widths
        Number of encoder convolutions.

    Returns
    -------
    int
        Levels, 0 .. ``n_widths - 1``.

    Examples
    --------
    >>> pool_levels(41, 41, n_widths=5)   # the paper's 41 x 41 -> 48 x 48
    4
    >>> pool_levels(20, 28, n_widths=3)
    2
    """
    # Halve while the padded smaller side keeps MIN_BOTTLENECK cells.
    levels = 0
    while (
        levels < n_widths - 1
        and math.ceil(min(height, width) / 2 ** (levels + 1)) >= MIN_BOTTLENECK
    ):
        levels += 1
    return levels


def time_windows(index: torch.Tensor, n_samples: int, *, window: int) -> torch.Tensor:
    """Time steps seen by the LSTM for each sample.

    Sample ``t`` sees ``t - window .. t + window``; indices before the first
    step or after the last are clamped, so that the edge steps repeat.

    Parameters
    ----------
    index
        Sample indices, shape ``(B,)``, int64 in ``0 .. n_samples - 1``.
    n_samples
        Number of samples ``T``.
    window
        Half-width ``w`` >= 0.

    Returns
    -------
    torch.Tensor
        Shape ``(B, 2 * window + 1)``, int64; column ``window`` is ``index``.

    Examples
    --------
    >>> time_windows(torch.tensor([0, 5]), 6, window=1).tolist()
    [[0, 0, 1], [4, 5, 5]]
    """
    offsets = torch.arange(-window, window + 1, device=index.device)
    return (index[:, None] + offsets[None, :]).clamp(0, n_samples - 1)


def masked_mse(
    reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over land cells only.

    Parameters
    ----------
    reconstruction, target
        Shape ``(B, V, H, W)``.
    mask
        Land mask, shape ``(H, W)``, bool, ``True`` where the cell counts.

    Returns
    -------
    torch.Tensor
        Scalar: the mean over batch, variables and land cells; sea and
        padding cells do not enter it.
    """
    # Squared errors of land cells, (B, V, land).
    squared = (reconstruction - target).pow(2)[..., mask]

    # Mean over every kept value.
    return squared.mean()


class DSCNetwork(nn.Module):
    """Convolutional-LSTM autoencoder of DSC, sized from the grid.

    Parameters
    ----------
    grid_shape
        ``(V, H, W)``: variables and the padded grid's lat and lon sizes;
        ``H`` and ``W`` must be multiples of ``2 ** levels`` with
        ``levels = pool_levels(H, W, n_widths=len(config.widths))``.
    config
        Layer settings (``widths``, ``activation``, ``lstm_size``,
        ``lstm_layers``, ``bidirectional``, ``latent_size``,
        ``skip_connections``).

    Shapes
    ------
    - input: windows ``(B, S, V, H, W)``, ``S = 2 * window + 1``
    - latent: ``(B, d)``
    - output: reconstruction of the centre step, ``(B, V, H, W)``

    Raises
    ------
    ClusteringInputError
        ``H`` or ``W`` is not a multiple of ``2 ** levels``.
    """

    def __init__(self, grid_shape: tuple[int, int, int], config: DSCConfig):
        super().__init__()
        n_variables, height, width = (int(n) for n in grid_shape)
        widths = config.widths

        # Pooling levels from the grid, which must be padded for them.
        self.levels = pool_levels(height, width, n_widths=len(widths))
        step = 2**self.levels
        if height % step or width % step:
            raise ClusteringInputError(
                f"grid {height} x {width} is not a multiple of {step} for "
                f"{self.levels} poolings; pad it with "
                "engine.clustering.prepare.pad_grid(grid, mask, "
                f"levels={self.levels})"
            )
        self.grid_shape = (n_variables, height, width)
        self.skip_connections = config.skip_connections
        self.activation = nn.Tanh() if config.activation == "tanh" else nn.ReLU()

        # Encoder: one 3x3 convolution per width, pooling handled in encode.
        channels = (n_variables, *widths)
        self.encoder_convs = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], 3, padding=1)
            for i in range(len(widths))
        )
        self.pool = nn.MaxPool2d(2)

        # LSTM over the flattened bottleneck maps, then the dense latent.
        self.bottleneck = (widths[-1], height // step, width // step)
        flat = math.prod(self.bottleneck)
        self.lstm = nn.LSTM(
            flat,
            config.lstm_size,
            num_layers=config.lstm_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
        )
        directions = 2 if config.bidirectional else 1
        self.to_latent = nn.Linear(config.lstm_size * directions, config.latent_size)

        # Decoder: dense back to the bottleneck, convolutions mirrored.
        extra = 2 if config.skip_connections else 1
        self.from_latent = nn.Linear(config.latent_size, flat)
        self.decoder_convs = nn.ModuleList(
            nn.Conv2d(widths[i] * extra, widths[i - 1], 3, padding=1)
            for i in range(len(widths) - 1, 0, -1)
        )
        self.output_conv = nn.Conv2d(widths[0] * extra, n_variables, 3, padding=1)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def encode_maps(
        self, maps: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Convolutional features of single time steps.

        Parameters
        ----------
        maps
            Shape ``(N, V, H, W)``.

        Returns
        -------
        features : torch.Tensor
            Flattened bottleneck maps, shape ``(N, C * h * w)``.
        skips : list of torch.Tensor
            Maps after each convolution, ``(N, C_i, H_i, W_i)``, for the
            skip connections; empty without them.
        """
        # 3x3 convolutions; those numbered 1 .. levels are followed by a
        # 2x2 max pooling.
        skips = []
        for i, conv in enumerate(self.encoder_convs):
            maps = self.activation(conv(maps))
            if self.skip_connections:
                skips.append(maps)
            if 1 <= i <= self.levels:
                maps = self.pool(maps)

        # Flatten the bottleneck, (N, C, h, w) -> (N, C * h * w).
        return maps.flatten(start_dim=1), skips

    def encode_sequence(self, features: torch.Tensor) -> torch.Tensor:
        """Latent of each window's centre step from its steps' features.

        Parameters
        ----------
        features
            Shape ``(B, S, C * h * w)``, from :meth:`encode_maps`.

        Returns
        -------
        torch.Tensor
            Latent, shape ``(B, d)``.
        """
        # LSTM over the window, (B, S, F) -> (B, S, hidden * directions).
        output, _ = self.lstm(features)

        # Dense latent from the centre step's output.
        return self.to_latent(output[:, features.shape[1] // 2])

    def encode(
        self, windows: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Latent of each window's centre step.

        Parameters
        ----------
        windows
            Shape ``(B, S, V, H, W)``.

        Returns
        -------
        latent : torch.Tensor
            Shape ``(B, d)``.
        skips : list of torch.Tensor
            Centre-step maps after each convolution, ``(B, C_i, H_i,
            W_i)``; empty without skip connections.
        """
        batch, steps = windows.shape[:2]

        # Every map of every window through the convolutions, (B * S, ...).
        features, skips = self.encode_maps(windows.flatten(end_dim=1))

        # Back to windows for the LSTM; keep the centre step's skips.
        latent = self.encode_sequence(features.reshape(batch, steps, -1))
        centre = [s.reshape(batch, steps, *s.shape[1:])[:, steps // 2] for s in skips]
        return latent, centre

    def forward_steps(
        self, grid: torch.Tensor, steps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`forward`, encoding each distinct time step once.

        Windows of neighbouring samples overlap; this runs the
        convolutions once per distinct step instead of once per window
        entry (``S`` times fewer for a full pass over the samples).

        Parameters
        ----------
        grid
            Every time step, shape ``(T, V, H, W)``.
        steps
            Steps of each window, shape ``(B, S)``, from
            :func:`time_windows`.

        Returns
        -------
        latent : torch.Tensor
            Shape ``(B, d)``.
        reconstruction : torch.Tensor
            Of the centre steps, shape ``(B, V, H, W)``.
        """
        # Convolutions on the distinct steps only, (N, F).
        distinct, inverse = torch.unique(steps, return_inverse=True)
        features, skips = self.encode_maps(grid[distinct])

        # Gather the windows' features, (B, S, F), and the centre skips.
        latent = self.encode_sequence(features[inverse])
        centre = inverse[:, steps.shape[1] // 2]
        return latent, self.decode(latent, [s[centre] for s in skips])

    def decode(
        self, latent: torch.Tensor, skips: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Maps of the centre step from its latent.

        Parameters
        ----------
        latent
            Shape ``(B, d)``.
        skips
            Encoder maps from :meth:`encode`, needed with skip connections.

        Returns
        -------
        torch.Tensor
            Shape ``(B, V, H, W)``.
        """
        # Dense layer back to the bottleneck maps, (B, C, h, w).
        maps = self.activation(self.from_latent(latent))
        maps = maps.reshape(latent.shape[0], *self.bottleneck)

        # Mirrored convolutions, upsampling where the encoder pooled.
        n_convs = len(self.encoder_convs)
        for conv, i in zip(self.decoder_convs, range(n_convs - 1, 0, -1), strict=True):
            if i <= self.levels:
                maps = self.upsample(maps)
            if self.skip_connections:
                maps = torch.cat([maps, skips[i]], dim=1)
            maps = self.activation(conv(maps))

        # Linear output convolution to the variables.
        if self.skip_connections:
            maps = torch.cat([maps, skips[0]], dim=1)
        return self.output_conv(maps)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent and reconstruction of each window's centre step.

        Parameters
        ----------
        windows
            Shape ``(B, S, V, H, W)``.

        Returns
        -------
        latent : torch.Tensor
            Shape ``(B, d)``.
        reconstruction : torch.Tensor
            Shape ``(B, V, H, W)``.
        """
        latent, skips = self.encode(windows)
        return latent, self.decode(latent, skips)


# ---------------------------------------------------------------------------
# Running DSC
# ---------------------------------------------------------------------------


def run_dsc(
    samples: Samples,
    k: int,
    config: DSCConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> DSCResult:
    """Cluster time steps with DSC.

    Parameters
    ----------
    samples
        Prepared samples. Their grid ``(T, V, H, W)`` is used when present
        (``PrepareConfig(grid=True)``), otherwise rebuilt from ``X`` (zeros
        outside ``feature_mask``); it is zero-padded to the pooling levels
        as needed. The loss counts land cells only (``samples.mask``).
    k
        Number of clusters, 1 .. ``T`` (7 in the paper).
    config
        Settings; ``None`` uses :meth:`DSCConfig.quick`.
    progress
        Called with one dict after each pre-training epoch and each
        target refresh: ``stage`` (``"pretrain"`` or ``"cluster"``),
        ``fraction`` of the whole run, ``method`` and the other fields of
        :class:`TrainingProgress`.
    cancel
        Token with ``is_set()``, checked before every optimiser step;
        once set, training stops and the result is built from the model
        as it is (``cancelled=True``).

    Returns
    -------
    DSCResult
        Labels ``(T,)``, soft assignments ``(T, k)``, latent ``(T, d)``,
        centroids ``(k, d)`` and the training history.

    Raises
    ------
    ClusteringInputError
        ``k`` is outside 1 .. ``T``.

    Notes
    -----
    Internal scores of the result must be computed on ``samples.X`` (see
    :mod:`engine.clustering.metrics`), not on ``latent``, which the
    clustering loss makes compact by construction.

    ``config.threads`` sets torch's process-wide thread count for the run;
    two runs in parallel threads of one process would fight over it, so
    run them in separate processes. One thread is the default because it
    was much faster on the 2-core development machine: on the WFDE5
    hourly cube (3 pre-training epochs and 40 clustering iterations of the
    quick preset) one thread took 10-18 s and two threads 87-91 s of wall
    time, with other jobs keeping the machine busy (load about 6); small
    convolutions gain little from a second thread, and a second thread
    that waits for a busy core stalls every operation.
    """
    config = config or DSCConfig.quick()
    _check_k(samples, k)

    # The grid and land mask, padded to the network's pooling levels.
    grid, mask = _grid_of(samples)
    levels = pool_levels(*mask.shape, n_widths=len(config.widths))
    grid, mask = pad_grid(grid, mask, levels=levels)

    # Build the network on the chosen device, with the run's seed.
    with _torch_threads(config.threads):
        device = choose_device(config.device)
        torch.manual_seed(config.seed)
        network = DSCNetwork(grid.shape[1:], config).to(device)
        grid_tensor = torch.from_numpy(grid).to(device)
        mask_tensor = torch.from_numpy(mask).to(device)
        n_samples = grid.shape[0]

        def forward(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Latent and reconstruction of the samples, each step once."""
            steps = time_windows(index, n_samples, window=config.window)
            return network.forward_steps(grid_tensor, steps)

        def reconstruction_loss(
            reconstruction: torch.Tensor, index: torch.Tensor
        ) -> torch.Tensor:
            """Masked MSE of the centre steps' maps."""
            return masked_mse(reconstruction, grid_tensor[index], mask_tensor)

        # Pre-train, initialise by k-means, train jointly.
        return _train(
            _Task(
                method="dsc",
                network=network,
                forward=forward,
                reconstruction_loss=reconstruction_loss,
                n_samples=n_samples,
                latent_size=config.latent_size,
                reconstruction_weight=1.0,
                cluster_weight=config.gamma,
            ),
            k,
            config,
            device=device,
            progress=progress,
            cancel=cancel,
        )


def choose_device(preferred: str | None = None) -> torch.device:
    """The torch device to train on.

    Parameters
    ----------
    preferred
        A device name (``"cpu"``, ``"cuda:0"``, ``"mps"``); ``None`` picks
        CUDA when available, then Apple's MPS, then the CPU.

    Returns
    -------
    torch.device
    """
    # An explicit choice wins.
    if preferred is not None:
        return torch.device(preferred)

    # Otherwise the fastest available.
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ---------------------------------------------------------------------------
# Training shared by DSC and DEC
# ---------------------------------------------------------------------------


@dataclass
class _Task:
    """What the shared training loop needs from a method.

    ``forward(index)`` returns ``(latent (B, d), reconstruction)`` of the
    samples ``index`` (B,) and ``reconstruction_loss(reconstruction,
    index)`` a scalar; ``network`` holds the trained parameters.
    """

    method: str
    network: nn.Module
    forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    reconstruction_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    n_samples: int
    latent_size: int
    reconstruction_weight: float
    cluster_weight: float
    history: list[dict[str, Any]] = field(default_factory=list)


def _train(
    task: _Task,
    k: int,
    config: DSCConfig,
    *,
    device: torch.device,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> DSCResult:
    """Pre-train, initialise centroids by k-means, train jointly."""
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    batch_size = min(config.batch_size, task.n_samples)

    # Stage 1: autoencoder pre-training.
    cancelled = _pretrain(task, config, rng, batch_size, progress, cancel)

    # Stage 2: k-means on the latent gives the initial centroids.
    latent = _predict_latent(task, batch_size)
    kmeans = KMeans(n_clusters=k, n_init=config.kmeans_starts, random_state=config.seed)
    initial_labels = kmeans.fit_predict(latent).astype(np.int64)
    layer = ClusteringLayer(k, task.latent_size, alpha=config.alpha).to(device)
    with torch.no_grad():
        centres = torch.as_tensor(kmeans.cluster_centers_, dtype=torch.float32)
        layer.centroids.copy_(centres.to(device))

    # Stage 3: joint training until the labels settle.
    converged, n_iterations = False, 0
    if not cancelled:
        converged, n_iterations, cancelled = _cluster(
            task, layer, initial_labels, config, rng, batch_size, progress, cancel
        )

    # Final latent, soft assignments and labels.
    latent = _predict_latent(task, batch_size)
    with torch.no_grad():
        soft = layer(torch.from_numpy(latent).to(device)).cpu().numpy()
    return DSCResult(
        method=task.method,
        labels=soft.argmax(axis=1).astype(np.int64),
        soft=soft,
        latent=latent,
        centroids=layer.centroids.detach().cpu().numpy().astype(np.float32),
        initial_labels=initial_labels,
        history=task.history,
        config=config,
        converged=converged,
        cancelled=cancelled,
        n_iterations=n_iterations,
        seconds=time.perf_counter() - start,
        device=str(device),
    )


def _pretrain(
    task: _Task,
    config: DSCConfig,
    rng: np.random.Generator,
    batch_size: int,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> bool:
    """Train the autoencoder alone; return whether it was cancelled."""
    optimizer = torch.optim.Adam(task.network.parameters(), lr=config.learning_rate)
    task.network.train()
    for epoch in range(1, config.pretrain_epochs + 1):
        # One pass over the samples in a random order.
        total, n_batches = 0.0, 0
        for index in _batches(rng, task.n_samples, batch_size, task.network):
            if is_cancelled(cancel):
                return True
            _, reconstruction = task.forward(index)
            loss = task.reconstruction_loss(reconstruction, index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            n_batches += 1

        # Report the epoch's mean loss.
        _report(
            task,
            progress,
            TrainingProgress(
                stage="pretrain",
                epoch=epoch,
                n_epochs=config.pretrain_epochs,
                iteration=epoch * n_batches,
                losses={"reconstruction": total / max(n_batches, 1)},
            ),
        )
    return False


def _cluster(
    task: _Task,
    layer: ClusteringLayer,
    labels: np.ndarray,
    config: DSCConfig,
    rng: np.random.Generator,
    batch_size: int,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> tuple[bool, int, bool]:
    """Joint training; return (converged, iterations, cancelled)."""
    parameters = list(task.network.parameters()) + list(layer.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    n_refreshes = math.ceil(config.max_iterations / config.update_interval)
    batches = _endless_batches(rng, task.n_samples, batch_size, task.network)
    sums = {"reconstruction": 0.0, "kl": 0.0, "total": 0.0}
    target = torch.empty(0)

    for iteration in range(config.max_iterations + 1):
        # Refresh the target on every sample; stop once labels settle.
        last = iteration == config.max_iterations
        if iteration % config.update_interval == 0 or last:
            latent = torch.from_numpy(_predict_latent(task, batch_size))
            with torch.no_grad():
                soft = layer(latent.to(layer.centroids.device))
            target = target_distribution(soft)
            new_labels = soft.argmax(dim=1).cpu().numpy()
            changed = float(np.mean(new_labels != labels))
            labels = new_labels
            steps = max(iteration % config.update_interval or config.update_interval, 1)
            _report(
                task,
                progress,
                TrainingProgress(
                    stage="cluster",
                    epoch=math.ceil(iteration / config.update_interval),
                    n_epochs=n_refreshes,
                    iteration=iteration,
                    losses=(
                        {name: value / steps for name, value in sums.items()}
                        if iteration > 0
                        else {}
                    ),
                    changed=changed,
                ),
            )
            sums = dict.fromkeys(sums, 0.0)
            if iteration > 0 and changed < config.tolerance:
                report(progress, "cluster", 1.0, method=task.method, converged=True)
                return True, iteration, False
            if last:
                break

        # One step on reconstruction + weighted KL(p || q).
        if is_cancelled(cancel):
            return False, iteration, True
        task.network.train()
        index = next(batches)
        latent, reconstruction = task.forward(index)
        kl = clustering_loss(layer(latent), target[index])
        loss = task.cluster_weight * kl
        if task.reconstruction_weight > 0:
            reconstruction_loss = task.reconstruction_loss(reconstruction, index)
            loss = loss + task.reconstruction_weight * reconstruction_loss
            sums["reconstruction"] += float(reconstruction_loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sums["kl"] += float(kl.detach())
        sums["total"] += float(loss.detach())
    return False, config.max_iterations, False


def _predict_latent(task: _Task, batch_size: int) -> np.ndarray:
    """Latent of every sample, (T, d) float32, without gradients."""
    task.network.eval()
    device = next(task.network.parameters()).device
    chunks = []
    with torch.no_grad():
        for begin in range(0, task.n_samples, 4 * batch_size):
            end = min(begin + 4 * batch_size, task.n_samples)
            index = torch.arange(begin, end, device=device)
            latent, _ = task.forward(index)
            chunks.append(latent.float().cpu().numpy())
    task.network.train()
    return np.concatenate(chunks)


def _batches(
    rng: np.random.Generator, n_samples: int, batch_size: int, network: nn.Module
) -> Iterator[torch.Tensor]:
    """One epoch of shuffled sample indices, batch by batch."""
    device = next(network.parameters()).device
    order = torch.from_numpy(rng.permutation(n_samples)).to(device)
    yield from torch.split(order, batch_size)


def _endless_batches(
    rng: np.random.Generator, n_samples: int, batch_size: int, network: nn.Module
) -> Iterator[torch.Tensor]:
    """Shuffled batches, one epoch after another, without end."""
    while True:
        yield from _batches(rng, n_samples, batch_size, network)


def _report(
    task: _Task, progress: ProgressCallback | None, event: TrainingProgress
) -> None:
    """Log a report, keep it in the history and pass it on."""
    row = {
        "stage": event.stage,
        "epoch": event.epoch,
        "iteration": event.iteration,
        **event.losses,
        "changed": event.changed,
    }
    task.history.append(row)
    logger.debug("%s %s", task.method, row)
    report(
        progress,
        event.stage,
        event.fraction,
        **{key: value for key, value in asdict(event).items() if key != "stage"},
        method=task.method,
    )


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's CPU thread count for a block, then restore it."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_k(samples: Samples, k: int) -> None:
    """Refuse a cluster count outside 1 .. samples."""
    if not 1 <= k <= samples.n_samples:
        raise ClusteringInputError(
            f"k={k} for {samples.n_samples} samples; choose 1 <= k <= samples"
        )


def _grid_of(samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """The samples' grid (T, V, H, W) float32 and land mask (H, W)."""
    # The prepared grid when there is one.
    if samples.grid is not None and samples.grid_mask is not None:
        return samples.grid.astype(np.float32), samples.grid_mask

    # Otherwise the features scattered back on the grid, zeros elsewhere.
    maps = samples.to_maps(samples.X)
    grid = np.nan_to_num(maps, nan=0.0).astype(np.float32)
    return grid, samples.mask
