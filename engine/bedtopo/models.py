"""DeepTopoNet networks: the released architecture and the default model.

Two models share one trunk of five residual blocks (widths 32, 64, 128,
128, 256 by default; each block conv3x3-BN-ReLU-Dropout2d-conv3x3-BN plus a
skip that is a 1x1 convolution where the width changes, ReLU after the
sum). There is no pooling, so the trunk keeps the 150 m input grid.

:class:`PaperModel` is the released network: surface features in, bed out,
through a 1x1 convolution. Its output is ``target_mean + target_std *
head``, so that a trainer can set the bed statistics of the training region
in the config and the output comes in metres.

:class:`DeepTopoNet`, the default model, differs in three ways, each for a
reason:

- **BedMachine as input.** Its bed and error map are two more feature
  channels (``FeatureConfig(include_bedmachine=True)``): the error map
  tells the network where BedMachine is trustworthy (near radar lines)
  and where it interpolates.
- **A correction, not a bed.** The output is BedMachine's bed plus
  ``correction_scale`` times the head. The head starts at zero
  (``zero_init_head``), so the untrained model reproduces BedMachine
  exactly, and training only has to learn where and how much to depart
  from it; a plain network has to relearn the whole bed first.
- **A subgrid output.** BedMachine's grid is 150 m but its effective
  resolution is about 400 m, and radar picks are spaced about 15 m along
  track. The output is on a grid ``factor`` times finer (factor 1, 2 or 3
  for 150, 75 or 50 m). By default (``subgrid="smooth"``) the head gives
  one correction per 150 m cell, and BedMachine plus that correction is
  interpolated bilinearly onto the sub-cells (cell centres to sub-cell
  centres). In the loss, the block means of the fine output
  (:func:`block_mean`, an average pool with kernel and stride ``factor``)
  are what the BedMachine term compares with at 150 m, and radar picks
  supervise the fine cell they fall in (see
  :mod:`engine.bedtopo.losses`).

  Why smooth and not one free value per sub-cell: the first design
  (``subgrid="free"``, kept as an ablation) had a 1x1 convolution to
  ``factor**2`` channels rearranged by ``PixelShuffle`` on BedMachine
  repeated onto the sub-cells. Each sub-cell position then has its own
  output channel, which only the few radar picks falling in that position
  constrain (the BedMachine term sees block means only), and the fine
  grid filled with sub-cell noise. Measured on Helheim (quick preset,
  fold 1 of a 4-fold line split): free at 75 m scored 91.5 m RMSE at the
  held-out picks' fine cells against BedMachine's 83.3 m, the same
  network at 150 m 77.5 m and smooth at 75 m 73.6 m; over the four folds
  free 80.2 m, smooth 71.8 m, BedMachine 77.4 m. Detail finer
  than 150 m that radar between the lines cannot confirm is not
  invented: the smooth output is the honest reading of "a finer grid"
  for a network whose inputs are 150 m fields.

Both models take ``mc_dropout``: when true, the dropout layers stay active
after ``model.eval()`` (batch norm still uses its running statistics), so
that repeated forward passes sample the MC-dropout predictive spread. The
attribute ``model.mc_dropout`` may also be changed after construction; it
takes effect at the next ``model.train()`` or ``model.eval()``. The
sampling itself is done by :func:`engine.bedtopo.predict.predict_region`
(``mc_samples``), which switches the dropout layers on by itself for the
run, whatever ``mc_dropout`` says.

Measured parameter counts with the default widths (see the tests):

- ``PaperModel`` with 20 input channels (5 fields, 10 gradients, 5 trend
  terms): 1,517,921;
- ``DeepTopoNet`` with 22 input channels (the same and BedMachine's bed and
  error): 1,518,561 at every factor (smooth subgrid); with
  ``subgrid="free"`` 1,519,332 with factor 2 and 1,520,617 with factor 3.

Convolutions followed by batch norm have no bias (the norm's shift makes it
redundant); the skip and head convolutions have one.

References
----------
DeepTopoNet: bed topography of Greenland, arXiv 2505.23980 (SIGSPATIAL
2025), and the code its authors released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.bedtopo.errors import ConfigError

__all__ = [
    "SUBGRID_FACTORS",
    "SUBGRID_MODES",
    "PaperModelConfig",
    "PaperModel",
    "DeepTopoNetConfig",
    "DeepTopoNet",
    "ResidualBlock",
    "block_mean",
    "count_parameters",
]

#: Allowed subgrid factors: 150 m cells split into 150, 75 or 50 m cells.
SUBGRID_FACTORS = (1, 2, 3)

#: Ways of making the fine grid of :class:`DeepTopoNet`.
SUBGRID_MODES = ("smooth", "free")

#: Widths of the released trunk.
PAPER_WIDTHS = (32, 64, 128, 128, 256)


def _check_trunk(in_channels: int, widths: tuple[int, ...], dropout: float) -> None:
    """Raise ConfigError on trunk settings that cannot be built."""
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ConfigError(
            f"in_channels must be a positive integer, got {in_channels!r}"
        )
    if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError(
            f"widths must be positive integers, one per residual block; got {widths!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")


@dataclass(frozen=True, kw_only=True)
class PaperModelConfig:
    """Settings of :class:`PaperModel`.

    Parameters
    ----------
    in_channels : int
        Number of feature channels (20 for the default features).
    widths : tuple of int
        Output width of each residual block.
    dropout : float
        Dropout2d probability inside each block.
    mc_dropout : bool
        Keep dropout active in eval mode (MC dropout).
    target_mean, target_std : float
        Bed statistics of the training region, m: the output is
        ``target_mean + target_std * head``.
    """

    in_channels: int = 20
    widths: tuple[int, ...] = PAPER_WIDTHS
    dropout: float = 0.2
    mc_dropout: bool = False
    target_mean: float = 0.0
    target_std: float = 1.0

    def __post_init__(self) -> None:
        _check_trunk(self.in_channels, self.widths, self.dropout)
        if not self.target_std > 0:
            raise ConfigError(f"target_std must be > 0, got {self.target_std!r}")


@dataclass(frozen=True, kw_only=True)
class DeepTopoNetConfig:
    """Settings of :class:`DeepTopoNet`.

    Parameters
    ----------
    in_channels : int
        Number of feature channels, BedMachine's bed and error included (22
        for the default features with ``include_bedmachine=True``).
    widths : tuple of int
        Output width of each residual block.
    dropout : float
        Dropout2d probability inside each block.
    mc_dropout : bool
        Keep dropout active in eval mode (MC dropout).
    factor : int
        Subgrid factor, 1, 2 or 3: output cells of 150, 75 or 50 m on a
        150 m input grid.
    correction_scale : float
        Metres per unit of the head's output.
    zero_init_head : bool
        Start the head at zero, so that the untrained model returns
        BedMachine.
    subgrid : {"smooth", "free"}
        How the fine grid is made (see the module docstring): ``"smooth"``
        (default) interpolates BedMachine plus a 150 m correction
        bilinearly onto the sub-cells; ``"free"`` repeats BedMachine onto
        them and learns one correction per sub-cell (a ``PixelShuffle``
        head), the first design, kept as an ablation.
    """

    in_channels: int = 22
    widths: tuple[int, ...] = PAPER_WIDTHS
    dropout: float = 0.2
    mc_dropout: bool = False
    factor: int = 3
    correction_scale: float = 100.0
    zero_init_head: bool = True
    subgrid: Literal["smooth", "free"] = "smooth"

    def __post_init__(self) -> None:
        _check_trunk(self.in_channels, self.widths, self.dropout)
        if self.subgrid not in SUBGRID_MODES:
            raise ConfigError(
                f"subgrid must be one of {SUBGRID_MODES}, got {self.subgrid!r}"
            )
        if self.factor not in SUBGRID_FACTORS:
            raise ConfigError(
                f"factor must be one of {SUBGRID_FACTORS} (150, 75 or 50 m cells), "
                f"got {self.factor!r}"
            )
        if not self.correction_scale > 0:
            raise ConfigError(
                f"correction_scale must be > 0 m, got {self.correction_scale!r}"
            )


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-Dropout2d-conv3x3-BN plus a skip, ReLU after the sum.

    Parameters
    ----------
    in_channels, out_channels : int
        Widths; the skip is a 1x1 convolution when they differ, else the
        identity.
    dropout : float
        Dropout2d probability.

    Shapes
    ------
    - input: ``(B, in_channels, H, W)``
    - output: ``(B, out_channels, H, W)``
    """

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        if in_channels == out_channels:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; see the class Shapes."""
        h = self.dropout(F.relu(self.norm1(self.conv1(x))))
        h = self.norm2(self.conv2(h))
        return F.relu(h + self.skip(x))


def _trunk(in_channels: int, widths: tuple[int, ...], dropout: float) -> nn.Sequential:
    """The chain of residual blocks, ``in_channels -> widths[0] -> ...``."""
    blocks = []
    for width in widths:
        blocks.append(ResidualBlock(in_channels, width, dropout=dropout))
        in_channels = width
    return nn.Sequential(*blocks)


class _MCDropoutMixin(nn.Module):
    """``train()`` that leaves dropout on in eval mode when ``mc_dropout``."""

    mc_dropout: bool

    def train(self, mode: bool = True) -> _MCDropoutMixin:
        """Set train or eval mode; dropout stays on when ``mc_dropout``."""
        super().train(mode)
        if self.mc_dropout:
            for module in self.modules():
                if isinstance(module, nn.Dropout2d):
                    module.train(True)
        return self


class PaperModel(_MCDropoutMixin):
    """The released DeepTopoNet network: surface features in, bed out.

    With the default widths and 20 input channels it has 1,517,921
    parameters.

    Parameters
    ----------
    config : PaperModelConfig, optional
        Settings; the defaults when omitted.

    Shapes
    ------
    - features: ``(B, C, H, W)``, z-scored, ``C = config.in_channels``
    - output: ``(B, 1, H, W)``, bed elevation in metres when the config's
      target statistics are set (else in z-score units)

    Examples
    --------
    >>> model = PaperModel()
    >>> model(torch.zeros(2, 20, 16, 16)).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, config: PaperModelConfig | None = None) -> None:
        super().__init__()
        self.config = PaperModelConfig() if config is None else config
        self.mc_dropout = self.config.mc_dropout
        self.trunk = _trunk(
            self.config.in_channels, self.config.widths, self.config.dropout
        )
        self.head = nn.Conv2d(self.config.widths[-1], 1, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Predict the bed; see the class Shapes."""
        _check_input(features, self.config.in_channels)
        head = self.head(self.trunk(features))
        return self.config.target_mean + self.config.target_std * head


class DeepTopoNet(_MCDropoutMixin):
    """The default model: BedMachine plus a learned subgrid correction.

    With the default widths and 22 input channels it has 1,518,561
    parameters at every factor (1,520,617 at factor 3 with
    ``subgrid="free"``). See the module docstring for the design.

    Parameters
    ----------
    config : DeepTopoNetConfig, optional
        Settings; the defaults when omitted.

    Shapes
    ------
    - features: ``(B, C, H, W)``, z-scored, ``C = config.in_channels``
    - bedmachine_bed: ``(B, 1, H, W)``, BedMachine bed in metres, finite
    - output: ``(B, 1, f H, f W)`` with ``f = config.factor``, bed elevation
      in metres on cells of ``150 / f`` m

    Examples
    --------
    >>> model = DeepTopoNet(DeepTopoNetConfig(factor=2))
    >>> bed = torch.zeros(1, 1, 8, 8)
    >>> model(torch.zeros(1, 22, 8, 8), bed).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(self, config: DeepTopoNetConfig | None = None) -> None:
        super().__init__()
        self.config = DeepTopoNetConfig() if config is None else config
        self.mc_dropout = self.config.mc_dropout
        self.trunk = _trunk(
            self.config.in_channels, self.config.widths, self.config.dropout
        )
        factor = self.config.factor
        smooth = self.config.subgrid == "smooth"
        # Smooth: one 150 m correction; free: one per sub-cell.
        outputs = 1 if smooth else factor * factor
        self.head = nn.Conv2d(self.config.widths[-1], outputs, 1)
        self.shuffle = nn.PixelShuffle(1 if smooth else factor)
        # Bilinear interpolation reaches one 150 m cell beyond the trunk's
        # receptive field (read by engine.bedtopo.predict.receptive_radius).
        self.upsample_radius = 1 if smooth and factor > 1 else 0
        if self.config.zero_init_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def _to_fine(self, coarse: torch.Tensor) -> torch.Tensor:
        """A ``(B, 1, H, W)`` field on the fine grid, ``(B, 1, f H, f W)``.

        Bilinear between 150 m cell centres (the sub-cell centres fall
        inside, ``align_corners=False``), edge cells held constant outward,
        in smooth mode; each cell repeated onto its sub-cells in free mode.
        """
        factor = self.config.factor
        if factor == 1:
            return coarse
        if self.config.subgrid == "smooth":
            return F.interpolate(
                coarse, scale_factor=factor, mode="bilinear", align_corners=False
            )
        return coarse.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)

    def correction(self, features: torch.Tensor) -> torch.Tensor:
        """The fine-grid correction to BedMachine, m, ``(B, 1, f H, f W)``."""
        _check_input(features, self.config.in_channels)

        # Trunk on the 150 m grid, then the head.
        head = self.head(self.trunk(features))  # (B, 1 or f*f, H, W)

        # Onto the fine grid: interpolated, or f * f sub-cells per cell.
        if self.config.subgrid == "smooth":
            fine = self._to_fine(head)  # (B, 1, f*H, f*W)
        else:
            fine = self.shuffle(head)  # (B, 1, f*H, f*W)
        return self.config.correction_scale * fine

    def forward(
        self, features: torch.Tensor, bedmachine_bed: torch.Tensor
    ) -> torch.Tensor:
        """Predict the fine bed; see the class Shapes."""
        expected = (features.shape[0], 1, *features.shape[2:])
        if tuple(bedmachine_bed.shape) != expected:
            raise ConfigError(
                f"bedmachine_bed must have shape {expected} to match the features, "
                f"got {tuple(bedmachine_bed.shape)}"
            )

        # BedMachine on the sub-cells, plus the correction.
        return self._to_fine(bedmachine_bed) + self.correction(features)


def _check_input(features: torch.Tensor, in_channels: int) -> None:
    """Raise ConfigError when the features are not (B, in_channels, H, W)."""
    if features.ndim != 4 or features.shape[1] != in_channels:
        raise ConfigError(
            f"features must have shape (B, {in_channels}, H, W), got "
            f"{tuple(features.shape)}; set in_channels to the number of feature "
            "channels"
        )


def block_mean(fine: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean of each ``factor x factor`` block: the fine grid back at 150 m.

    Parameters
    ----------
    fine : torch.Tensor
        Shape ``(B, C, f H, f W)``.
    factor : int
        The subgrid factor ``f``, >= 1.

    Returns
    -------
    torch.Tensor
        Shape ``(B, C, H, W)``; ``fine`` itself when ``factor`` is 1.

    Examples
    --------
    >>> block_mean(torch.arange(4.0).reshape(1, 1, 2, 2), 2)
    tensor([[[[1.5000]]]])
    """
    if factor == 1:
        return fine
    if fine.shape[-1] % factor or fine.shape[-2] % factor:
        raise ConfigError(
            f"the fine grid {tuple(fine.shape[-2:])} is not a whole number of "
            f"{factor} x {factor} blocks; crop it to multiples of {factor}"
        )
    return F.avg_pool2d(fine, kernel_size=factor)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
