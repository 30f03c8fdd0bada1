"""Losses of the DeepTopoNet models: radar term, BedMachine term, balance.

Two mean squared errors, on disjoint cells:

- ``L_r``, the radar term, on the cells crossed by radar picks, against
  the radar bed (``radar_target="radar"``, the default) or, as in the
  released code, against BedMachine's bed (``radar_target="bedmachine"``);
- ``L_b``, the BedMachine term, on the other valid 150 m cells, against
  BedMachine's bed.

Residuals are divided by ``residual_scale`` (m) before squaring, so with
the default of 1 m both terms are in m^2.

For the subgrid model (factor ``f`` = 2 or 3) the prediction is on the fine
grid: ``L_b`` compares the block means of the prediction
(:func:`engine.bedtopo.models.block_mean`) with BedMachine at 150 m, on the
150 m cells that hold no radar cell; ``L_r`` compares each fine cell that
holds picks with their mean bed (see :mod:`engine.bedtopo.targets`). With
``f = 1`` this is the paper's per-pixel split.

Three ways to weight the terms (``mode``):

- ``"dynamic"``, the paper's balance: ``gamma_r = L_b / (L_r + L_b +
  eps)``, ``gamma_b = L_r / (L_r + L_b + eps)``, ``L = gamma_r L_r +
  gamma_b L_b``, ``eps = 1e-4``;
- ``"fixed"``: ``L = w_r L_r + w_b L_b``, an ablation;
- ``"uncertainty"``: two learned log-variances ``s_r``, ``s_b`` (Kendall et
  al. 2018), ``L = exp(-s_r) L_r + s_r + exp(-s_b) L_b + s_b``; the
  reported gammas are ``exp(-s)``. With residuals in metres the losses are
  large (10^2-10^4 m^2) and ``s`` has far to travel; a ``residual_scale``
  near the bed's spread (e.g. 100 m) keeps it near 0.

Choices where the released code is silent or not followed:

- **Detached gammas** (``detach_gammas=True``). The gammas are weights,
  computed from detached copies of the losses, so that the gradient is
  ``gamma_r grad L_r + gamma_b grad L_b``. Since ``gamma_r L_r = gamma_b
  L_b``, this is the gradient of ``log L_r + log L_b`` times a common
  factor: each term's *relative* improvement counts the same. Left
  attached, the gradient of ``2 L_r L_b / (L_r + L_b)`` gives the radar
  term weight ``2 L_b^2 / (L_r + L_b)^2``, which tilts the step further
  towards whichever term is already smaller. Our notes of the released
  code do not say which it does; ``detach_gammas=False`` is there to
  compare.
- **A floor on the gammas** (``gamma_floor``, default 0.05). The dynamic
  loss is 0 as soon as *either* term is 0, whatever the other: a model that
  reproduces BedMachine off the radar cells sits at a stationary point
  where ``gamma_r = 0`` and the radar term has no weight. The default
  :class:`~engine.bedtopo.models.DeepTopoNet` starts exactly there (its
  zero head returns BedMachine), and would never learn from radar. Each
  gamma is therefore clamped to ``[gamma_floor, 1 - gamma_floor]``. Use 0
  for the exact paper formula (:meth:`LossConfig.paper`).
- **Radar-free batches.** The released code returns a zero loss for a batch
  without radar cells, which wastes the batch and pulls nothing towards
  BedMachine. Here the loss is the term that exists: ``L = L_b`` with
  gammas reported as ``(0, 1)``, or ``L = L_r`` with ``(1, 0)`` for a batch
  of radar cells only; a batch with neither gives a zero loss that still
  backpropagates (zero gradients), with gammas ``(0, 0)``. The fixed and
  uncertainty modes likewise drop the missing term.

Why the default model does not use the dynamic balance
--------------------------------------------------------
The default :class:`~engine.bedtopo.models.DeepTopoNet` starts from
BedMachine, so ``L_b`` starts at 0 while ``L_r`` is the squared misfit of
BedMachine at the radar (about 5000 m^2 on Helheim). The balance then gives
``gamma_r = L_b / (L_r + L_b) ~ 0``: measured on Helheim, ``gamma_r`` sat
at the 0.05 floor for every epoch, the radar was barely used, and the
held-out RMSE did not move from BedMachine's (79-81 m against 78.6 m over
three epochs of the quick preset). The balance equalises the *relative*
progress of two terms, which is right when both start from an unfitted
network (the released model, which learns the whole bed), and wrong when
one of them is the starting point.

The default model therefore reads the two terms as a data term and a
prior: ``L = L_r + w_b L_b`` (:meth:`LossConfig.regularised`, fixed mode,
``w_b = 1``). ``L_r`` pulls the fine cells under the picks to the radar;
``L_b``, the mean square departure of the 150 m block means from BedMachine
off the radar cells, is a Tikhonov penalty that keeps the correction near
the prior where no radar says otherwise. Both are means over their own
cells, so the few radar cells weigh as much as the many BedMachine cells.
On the same Helheim run the held-out RMSE fell from 78.6 m to 68-72 m
within ten epochs (``w_b = 10`` stayed at 79-81 m). The dynamic mode stays
available and is what :meth:`LossConfig.paper` (and the ``paper`` training
preset) uses.

The scale of the BedMachine term
--------------------------------
Compared cell by cell at 150 m, the BedMachine term pulls the model
towards BedMachine's *relief* as well as its level. But BedMachine is
smooth: its effective resolution is about 400 m in the fast trunks and
several kilometres between flight lines, where it is interpolated. Where
no radar is, the surface fields carry the bed's relief at those scales (the
surface is a damped image of the bed, the flow follows troughs), and a
term that holds every 150 m cell to BedMachine keeps the network from
reading it there. With ``L = L_r + L_b`` over a patch and a correction
``c`` that the radar asks for everywhere, the balance sits near ``c / 2``.

``bedmachine_pool`` (cells) therefore compares *block means*: the
prediction's and BedMachine's means over ``pool x pool`` blocks of 150 m
cells inside each training patch, each taken over the block's BedMachine
cells. BedMachine then sets the level of each block, and the radar and
the features set the relief inside it. The default model's loss uses 32
cells (4.8 km, the whole of a default patch). Measured with the quick
preset, RMSE against the true bed as a fraction of the prior's, on three
twins (seeds 3, 4 and 5; everywhere, then more than 1 km from any line):
pool 1 gave 0.877, 0.852 and 0.791 (away 0.962, 0.878, 0.888); pool 32
gave 0.662, 0.692 and 0.640 (away 0.747, 0.730, 0.674), and its
held-out radar RMSE was lower on all three. On Helheim (lines held out,
4 folds, two training seeds) the held-out RMSE was 68.8 and 64.8 m with
pool 1 and 63.9 and 65.8 m with pool 32: no worse, within the
seed-to-seed spread; with the standard preset, 67.6 m with pool 1 and
69.3 m with pool 32 (one seed each), a little worse. Pools of 8 and 16
cells fell between on the twin and did worse on Helheim (70.3 and 71.7 m,
seed 0), and lowering ``w_b`` to 0.3 with pool 32 made training unstable
on the twin.

References
----------
DeepTopoNet, arXiv 2505.23980, and its released code (dynamic balance).
A. Kendall, Y. Gal, R. Cipolla, "Multi-task learning using uncertainty to
weigh losses for scene geometry and semantics", CVPR 2018.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.bedtopo.errors import ConfigError
from engine.bedtopo.models import block_mean

__all__ = ["LOSS_MODES", "RADAR_TARGETS", "LossConfig", "LossTerms", "BalancedLoss"]

log = logging.getLogger(__name__)

#: Ways of weighting the two terms.
LOSS_MODES = ("dynamic", "fixed", "uncertainty")

#: What radar cells are compared with.
RADAR_TARGETS = ("radar", "bedmachine")


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Settings of :class:`BalancedLoss`.

    Parameters
    ----------
    mode : {"dynamic", "fixed", "uncertainty"}
        Weighting of the two terms (see the module docstring).
    radar_target : {"radar", "bedmachine"}
        What radar cells are compared with.
    eps : float
        The dynamic balance's ``eps``, in the squared units of the losses.
    detach_gammas : bool
        Compute the dynamic gammas from detached losses.
    gamma_floor : float
        Least dynamic gamma, in [0, 0.5); 0 for the exact paper formula.
    radar_weight, bedmachine_weight : float
        ``w_r`` and ``w_b`` of the fixed mode, >= 0.
    residual_scale : float
        Metres per unit of residual before squaring, > 0.
    bedmachine_pool : int
        Side, in 150 m cells, of the blocks whose means the BedMachine term
        compares (see "The scale of the BedMachine term" in the module
        docstring); 1 compares every 150 m cell, as released.
    """

    mode: Literal["dynamic", "fixed", "uncertainty"] = "dynamic"
    radar_target: Literal["radar", "bedmachine"] = "radar"
    eps: float = 1e-4
    detach_gammas: bool = True
    gamma_floor: float = 0.05
    radar_weight: float = 1.0
    bedmachine_weight: float = 1.0
    residual_scale: float = 1.0
    bedmachine_pool: int = 1

    def __post_init__(self) -> None:
        if self.mode not in LOSS_MODES:
            raise ConfigError(f"mode must be one of {LOSS_MODES}, got {self.mode!r}")
        if self.radar_target not in RADAR_TARGETS:
            raise ConfigError(
                f"radar_target must be one of {RADAR_TARGETS}, got "
                f"{self.radar_target!r}"
            )
        if not self.eps >= 0:
            raise ConfigError(f"eps must be >= 0, got {self.eps!r}")
        if not 0.0 <= self.gamma_floor < 0.5:
            raise ConfigError(
                f"gamma_floor must be in [0, 0.5), got {self.gamma_floor!r}"
            )
        if not (self.radar_weight >= 0 and self.bedmachine_weight >= 0):
            raise ConfigError("radar_weight and bedmachine_weight must be >= 0")
        if not self.residual_scale > 0:
            raise ConfigError(
                f"residual_scale must be > 0 m, got {self.residual_scale!r}"
            )
        pool = self.bedmachine_pool
        if not isinstance(pool, int) or isinstance(pool, bool) or pool < 1:
            raise ConfigError(
                f"bedmachine_pool must be a whole number of 150 m cells >= 1, got "
                f"{pool!r}"
            )

    @classmethod
    def regularised(
        cls, *, bedmachine_weight: float = 1.0, bedmachine_pool: int = 32
    ) -> LossConfig:
        """The default model's loss: radar data term, BedMachine prior term.

        Fixed weights, ``L = L_r + bedmachine_weight * L_b``, radar cells
        compared with the radar bed, BedMachine compared as means over
        blocks of ``bedmachine_pool`` 150 m cells. See "Why the default
        model does not use the dynamic balance" and "The scale of the
        BedMachine term" in the module docstring.
        """
        return cls(
            mode="fixed",
            radar_target="radar",
            radar_weight=1.0,
            bedmachine_weight=bedmachine_weight,
            bedmachine_pool=bedmachine_pool,
        )

    @classmethod
    def paper(cls) -> LossConfig:
        """The released balance: BedMachine target on radar cells, no floor.

        Radar-free batches are still handled as described in the module
        docstring, not with the released zero loss.
        """
        return cls(mode="dynamic", radar_target="bedmachine", gamma_floor=0.0)


@dataclass(frozen=True)
class LossTerms:
    """The loss of a batch and its parts, for the optimiser and the log.

    Attributes
    ----------
    total : torch.Tensor
        Scalar to backpropagate.
    radar_loss, bedmachine_loss : float
        ``L_r`` and ``L_b`` (squared ``residual_scale`` units, m^2 by
        default); 0.0 when the batch has no such cell.
    gamma_radar, gamma_bedmachine : float
        Weights applied to each term; 0.0 for a missing term.
    n_radar, n_bedmachine : int
        Number of cells in each term.
    """

    total: torch.Tensor
    radar_loss: float
    bedmachine_loss: float
    gamma_radar: float
    gamma_bedmachine: float
    n_radar: int
    n_bedmachine: int

    def as_dict(self) -> dict[str, float]:
        """Every part as a float, for a log line or a metrics table."""
        return {
            "loss": float(self.total.detach()),
            "radar_loss": self.radar_loss,
            "bedmachine_loss": self.bedmachine_loss,
            "gamma_radar": self.gamma_radar,
            "gamma_bedmachine": self.gamma_bedmachine,
            "n_radar": float(self.n_radar),
            "n_bedmachine": float(self.n_bedmachine),
        }


class BalancedLoss(nn.Module):
    """Radar and BedMachine terms, weighted by the configured ``mode``.

    In the ``"uncertainty"`` mode the module owns two parameters,
    ``log_var_radar`` and ``log_var_bedmachine`` (start 0); give them to the
    optimiser with the model's.

    Parameters
    ----------
    config : LossConfig, optional
        Settings; the defaults when omitted.

    Shapes
    ------
    - prediction: ``(B, 1, f H, f W)``, bed in metres on the fine grid
      (``f`` = 1: the 150 m grid)
    - bedmachine: ``(B, 1, H, W)``, BedMachine bed in metres, NaN allowed
      (left out)
    - valid: ``(B, 1, H, W)``, bool, the 150 m cells to use (e.g. ice);
      all finite BedMachine cells when omitted
    - radar_bed: ``(B, 1, f H, f W)``, radar bed in metres, any value
      (NaN included) off the radar cells
    - radar_mask: ``(B, 1, f H, f W)``, bool, fine cells holding picks
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = LossConfig() if config is None else config
        if self.config.mode == "uncertainty":
            self.log_var_radar = nn.Parameter(torch.zeros(()))
            self.log_var_bedmachine = nn.Parameter(torch.zeros(()))

    def forward(
        self,
        prediction: torch.Tensor,
        *,
        bedmachine: torch.Tensor,
        valid: torch.Tensor | None = None,
        radar_bed: torch.Tensor | None = None,
        radar_mask: torch.Tensor | None = None,
        factor: int = 1,
    ) -> LossTerms:
        """The loss of a batch; see the class Shapes.

        Returns
        -------
        LossTerms
            The total to backpropagate and its parts.
        """
        cfg = self.config
        _check_shapes(prediction, bedmachine, valid, radar_bed, radar_mask, factor)

        # Which 150 m cells count: valid, finite BedMachine.
        valid_coarse = torch.isfinite(bedmachine)
        if valid is not None:
            valid_coarse = valid_coarse & valid.bool()
        if radar_mask is None:
            radar_fine = torch.zeros_like(prediction, dtype=torch.bool)
        else:
            radar_fine = radar_mask.bool()

        # Radar cells: fine cells with picks, inside a valid 150 m cell.
        if cfg.radar_target == "radar":
            if radar_bed is None:
                radar_bed = torch.full_like(prediction, math.nan)
            radar_target = radar_bed
        else:
            radar_target = _to_fine(bedmachine, factor)
        radar_cells = radar_fine & _to_fine(valid_coarse, factor)
        radar_cells = radar_cells & torch.isfinite(radar_target)

        # BedMachine cells: valid 150 m cells that hold no radar cell.
        has_radar = radar_cells
        if factor > 1:
            has_radar = F.max_pool2d(radar_cells.float(), factor) > 0
        bedmachine_cells = valid_coarse & ~has_radar

        # The two mean squared errors; indexing keeps NaN out of the graph.
        scale = cfg.residual_scale
        radar_loss = _masked_mse(prediction, radar_target, radar_cells, scale)
        coarse = block_mean(prediction, factor)
        if cfg.bedmachine_pool > 1:
            bedmachine_loss = _pooled_mse(
                coarse, bedmachine, bedmachine_cells, cfg.bedmachine_pool, scale
            )
        else:
            bedmachine_loss = _masked_mse(coarse, bedmachine, bedmachine_cells, scale)

        # Weights and total.
        total, gamma_r, gamma_b = self._combine(radar_loss, bedmachine_loss, prediction)
        return LossTerms(
            total=total,
            radar_loss=_value(radar_loss),
            bedmachine_loss=_value(bedmachine_loss),
            gamma_radar=gamma_r,
            gamma_bedmachine=gamma_b,
            n_radar=int(radar_cells.sum()),
            n_bedmachine=int(bedmachine_cells.sum()),
        )

    def _combine(
        self,
        radar_loss: torch.Tensor | None,
        bedmachine_loss: torch.Tensor | None,
        prediction: torch.Tensor,
    ) -> tuple[torch.Tensor, float, float]:
        """Weight the present terms by the mode; return total and gammas."""
        cfg = self.config

        # Neither term: a zero that still backpropagates.
        if radar_loss is None and bedmachine_loss is None:
            log.debug("batch without radar or BedMachine cells: zero loss")
            return prediction.sum() * 0.0, 0.0, 0.0

        # Fixed weights, each missing term dropped.
        if cfg.mode == "fixed":
            total = prediction.new_zeros(())
            gamma_r = gamma_b = 0.0
            if radar_loss is not None:
                gamma_r = cfg.radar_weight
                total = total + gamma_r * radar_loss
            if bedmachine_loss is not None:
                gamma_b = cfg.bedmachine_weight
                total = total + gamma_b * bedmachine_loss
            return total, gamma_r, gamma_b

        # Learned log-variances (Kendall et al. 2018).
        if cfg.mode == "uncertainty":
            total = prediction.new_zeros(())
            gamma_r = gamma_b = 0.0
            if radar_loss is not None:
                total = total + torch.exp(-self.log_var_radar) * radar_loss
                total = total + self.log_var_radar
                gamma_r = float(torch.exp(-self.log_var_radar.detach()))
            if bedmachine_loss is not None:
                total = total + torch.exp(-self.log_var_bedmachine) * bedmachine_loss
                total = total + self.log_var_bedmachine
                gamma_b = float(torch.exp(-self.log_var_bedmachine.detach()))
            return total, gamma_r, gamma_b

        # Dynamic balance; one term alone stands for itself.
        if radar_loss is None:
            return bedmachine_loss, 0.0, 1.0
        if bedmachine_loss is None:
            return radar_loss, 1.0, 0.0
        l_r, l_b = radar_loss, bedmachine_loss
        if cfg.detach_gammas:
            l_r, l_b = l_r.detach(), l_b.detach()
        denominator = l_r + l_b + cfg.eps
        gamma_r = (l_b / denominator).clamp(cfg.gamma_floor, 1.0 - cfg.gamma_floor)
        gamma_b = (l_r / denominator).clamp(cfg.gamma_floor, 1.0 - cfg.gamma_floor)
        total = gamma_r * radar_loss + gamma_b * bedmachine_loss
        return total, float(gamma_r.detach()), float(gamma_b.detach())


def _masked_mse(
    prediction: torch.Tensor, target: torch.Tensor, cells: torch.Tensor, scale: float
) -> torch.Tensor | None:
    """Mean of ``((prediction - target) / scale)^2`` on the cells, or None."""
    if not bool(cells.any()):
        return None
    residual = (prediction[cells] - target[cells]) / scale
    return (residual**2).mean()


def _pooled_mse(
    prediction: torch.Tensor,
    target: torch.Tensor,
    cells: torch.Tensor,
    pool: int,
    scale: float,
) -> torch.Tensor | None:
    """Mean square difference of block means over ``pool x pool`` blocks.

    Each block's means are taken over its counted cells only; a block
    weighs by its share of counted cells, and blocks at the patch's edge
    that are cut short count the cells they have.
    """
    if not bool(cells.any()):
        return None

    # Departure on the counted cells, 0 elsewhere (no NaN in the graph).
    weight = cells.to(prediction.dtype)
    safe_target = torch.where(cells, target, prediction.detach())
    departure = (prediction - safe_target) * weight

    # Block means of the departure and share of counted cells per block.
    share = F.avg_pool2d(weight, pool, ceil_mode=True)
    mean = F.avg_pool2d(departure, pool, ceil_mode=True) / share.clamp_min(1e-6)

    # Blocks weighted by their share of counted cells.
    squared = (mean / scale) ** 2
    return (squared * share).sum() / share.sum()


def _to_fine(coarse: torch.Tensor, factor: int) -> torch.Tensor:
    """Repeat each 150 m cell onto its ``factor x factor`` sub-cells."""
    if factor == 1:
        return coarse
    return coarse.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _value(loss: torch.Tensor | None) -> float:
    """A term as a float for the log, 0.0 when absent."""
    return 0.0 if loss is None else float(loss.detach())


def _check_shapes(
    prediction: torch.Tensor,
    bedmachine: torch.Tensor,
    valid: torch.Tensor | None,
    radar_bed: torch.Tensor | None,
    radar_mask: torch.Tensor | None,
    factor: int,
) -> None:
    """Raise ConfigError when the tensors do not fit the fine/coarse grids."""
    if not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"factor must be a positive integer, got {factor!r}")
    batch, channels, height, width = bedmachine.shape
    fine = (batch, channels, height * factor, width * factor)
    if tuple(prediction.shape) != fine:
        raise ConfigError(
            f"prediction must have shape {fine} (BedMachine's "
            f"{tuple(bedmachine.shape)} times factor {factor}), got "
            f"{tuple(prediction.shape)}"
        )
    if valid is not None and valid.shape != bedmachine.shape:
        raise ConfigError(
            f"valid must have BedMachine's shape {tuple(bedmachine.shape)}"
        )
    for name, tensor in (("radar_bed", radar_bed), ("radar_mask", radar_mask)):
        if tensor is not None and tuple(tensor.shape) != fine:
            raise ConfigError(f"{name} must have the prediction's shape {fine}")
