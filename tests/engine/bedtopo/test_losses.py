"""Tests of the balanced loss, ``engine.bedtopo.losses``."""

from __future__ import annotations

import math

import pytest
import torch

from engine.bedtopo.errors import ConfigError
from engine.bedtopo.losses import BalancedLoss, LossConfig

#: The paper's eps.
EPS = 1e-4


def _case():
    """A 2 x 2 batch: one radar cell at (0, 0) with bed 3, BedMachine 0.

    Prediction [[1, 2], [3, 4]]: L_r = (1 - 3)^2 = 4 against the radar bed,
    (1 - 0)^2 = 1 against BedMachine; L_b = (4 + 9 + 16) / 3 = 29 / 3.
    """
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    bedmachine = torch.zeros(1, 1, 2, 2)
    radar_bed = torch.full((1, 1, 2, 2), math.nan)
    radar_bed[0, 0, 0, 0] = 3.0
    radar_mask = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    radar_mask[0, 0, 0, 0] = True
    return prediction, {
        "bedmachine": bedmachine,
        "radar_bed": radar_bed,
        "radar_mask": radar_mask,
    }


@pytest.mark.parametrize(("target", "l_r"), [("radar", 4.0), ("bedmachine", 1.0)])
def test_dynamic_balance_by_hand(target, l_r):
    """L_r, L_b, gammas and L as computed on paper."""
    prediction, batch = _case()
    loss = BalancedLoss(LossConfig(radar_target=target, gamma_floor=0.0))

    terms = loss(prediction, **batch)

    l_b = 29.0 / 3.0
    gamma_r = l_b / (l_r + l_b + EPS)
    gamma_b = l_r / (l_r + l_b + EPS)
    # float32 arithmetic on values below 30: relative error near 1e-7.
    assert terms.radar_loss == pytest.approx(l_r, rel=1e-6)
    assert terms.bedmachine_loss == pytest.approx(l_b, rel=1e-6)
    assert terms.gamma_radar == pytest.approx(gamma_r, rel=1e-6)
    assert terms.gamma_bedmachine == pytest.approx(gamma_b, rel=1e-6)
    assert terms.total.item() == pytest.approx(gamma_r * l_r + gamma_b * l_b, rel=1e-6)
    assert (terms.n_radar, terms.n_bedmachine) == (1, 3)


def test_detached_gammas_give_weighted_gradient():
    """Detached: d L / d prediction = gamma_r dL_r + gamma_b dL_b."""
    prediction, batch = _case()
    terms = BalancedLoss(LossConfig(gamma_floor=0.0))(prediction, **batch)

    terms.total.backward()

    gamma_r, gamma_b = terms.gamma_radar, terms.gamma_bedmachine
    expected = torch.tensor(
        [[[[gamma_r * 2 * (1 - 3), gamma_b * 2 * 2 / 3],
           [gamma_b * 2 * 3 / 3, gamma_b * 2 * 4 / 3]]]]
    )
    # float32 gradients of the same small sums: round-off near 1e-7.
    torch.testing.assert_close(prediction.grad, expected, rtol=1e-5, atol=1e-6)


def test_attached_gammas_differ_in_gradient_not_value():
    """Attached gammas give the same loss and a different gradient."""
    prediction, batch = _case()
    detached = BalancedLoss(LossConfig(gamma_floor=0.0))(prediction, **batch)
    grad_detached = torch.autograd.grad(detached.total, prediction)[0]

    attached = BalancedLoss(LossConfig(gamma_floor=0.0, detach_gammas=False))(
        prediction, **batch
    )
    grad_attached = torch.autograd.grad(attached.total, prediction)[0]

    # Same float32 expression: equal to round-off.
    assert attached.total.item() == pytest.approx(detached.total.item(), rel=1e-6)
    assert not torch.allclose(grad_attached, grad_detached)


def test_gamma_floor_moves_a_model_stuck_on_bedmachine():
    """With L_b = 0 the paper gamma_r is 0; the floor keeps radar weighted."""
    prediction = torch.zeros(1, 1, 2, 2, requires_grad=True)
    _, batch = _case()

    stuck = BalancedLoss(LossConfig(gamma_floor=0.0))(prediction, **batch)
    floored = BalancedLoss(LossConfig(gamma_floor=0.05))(prediction, **batch)
    grad = torch.autograd.grad(floored.total, prediction)[0]

    assert stuck.gamma_radar == 0.0 and stuck.total.item() == 0.0
    assert floored.gamma_radar == pytest.approx(0.05)
    # Radar cell residual 0 - 3: gradient 0.05 * 2 * (-3), float32.
    assert float(grad[0, 0, 0, 0]) == pytest.approx(-0.3, rel=1e-6)


def test_radar_free_batch_is_bedmachine_loss():
    """No radar cell: L = L_b, gammas (0, 1), and a gradient."""
    prediction, batch = _case()
    batch["radar_mask"] = torch.zeros_like(batch["radar_mask"])

    terms = BalancedLoss()(prediction, **batch)
    terms.total.backward()

    # Mean of 1, 4, 9, 16 in float32: exact.
    assert terms.total.item() == 7.5
    assert (terms.gamma_radar, terms.gamma_bedmachine) == (0.0, 1.0)
    assert (terms.n_radar, terms.radar_loss) == (0, 0.0)
    assert prediction.grad.abs().sum() > 0


def test_radar_only_and_empty_batches():
    """Only radar cells: L = L_r; nothing valid: a zero that backpropagates."""
    prediction, batch = _case()
    radar_cell = torch.tensor([[[[True, False], [False, False]]]])
    only_radar = BalancedLoss()(prediction, **batch, valid=radar_cell)
    empty = BalancedLoss()(prediction, **batch, valid=torch.zeros_like(radar_cell))
    empty.total.backward()

    assert only_radar.total.item() == 4.0
    assert (only_radar.gamma_radar, only_radar.gamma_bedmachine) == (1.0, 0.0)
    assert empty.total.item() == 0.0
    assert (empty.gamma_radar, empty.gamma_bedmachine) == (0.0, 0.0)
    assert torch.equal(prediction.grad, torch.zeros_like(prediction))


def test_fixed_weights():
    """L = w_r L_r + w_b L_b, weights reported as gammas."""
    prediction, batch = _case()
    config = LossConfig(mode="fixed", radar_weight=2.0, bedmachine_weight=0.5)

    terms = BalancedLoss(config)(prediction, **batch)

    # float32 arithmetic on small values.
    assert terms.total.item() == pytest.approx(2.0 * 4.0 + 0.5 * 29.0 / 3.0, rel=1e-6)
    assert (terms.gamma_radar, terms.gamma_bedmachine) == (2.0, 0.5)


def test_uncertainty_weights_learn():
    """L = sum exp(-s) L + s; both log-variances get gradients."""
    prediction, batch = _case()
    loss = BalancedLoss(LossConfig(mode="uncertainty"))
    with torch.no_grad():
        loss.log_var_radar.fill_(math.log(2.0))

    terms = loss(prediction, **batch)
    terms.total.backward()

    expected = 4.0 / 2.0 + math.log(2.0) + 29.0 / 3.0
    # float32 exp/log of small values: relative error near 1e-7.
    assert terms.total.item() == pytest.approx(expected, rel=1e-6)
    assert terms.gamma_radar == pytest.approx(0.5, rel=1e-6)
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L.
    assert float(loss.log_var_radar.grad) == pytest.approx(1.0 - 2.0, rel=1e-6)
    grad_b = float(loss.log_var_bedmachine.grad)
    assert grad_b == pytest.approx(1.0 - 29.0 / 3.0, rel=1e-6)
    assert len(list(BalancedLoss().parameters())) == 0


def test_subgrid_terms():
    """Fine radar cells against picks; block means against BedMachine."""
    fine = torch.arange(16.0).reshape(1, 1, 4, 4).requires_grad_()
    bedmachine = torch.tensor([[[[2.0, 4.0], [10.0, 12.0]]]])
    radar_mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    radar_mask[0, 0, 3, 3] = True
    radar_bed = torch.zeros(1, 1, 4, 4)
    radar_bed[0, 0, 3, 3] = 13.0

    terms = BalancedLoss(LossConfig(mode="fixed"))(
        fine,
        bedmachine=bedmachine,
        radar_bed=radar_bed,
        radar_mask=radar_mask,
        factor=2,
    )

    # Block means 2.5, 4.5, 10.5 (12.5 holds radar): residuals 0.5 each.
    assert terms.bedmachine_loss == 0.25 and terms.n_bedmachine == 3
    # Fine cell (3, 3) holds 15, radar bed 13.
    assert terms.radar_loss == 4.0 and terms.n_radar == 1


def test_pooled_bedmachine_term_by_hand():
    """Block means over 2 x 2 cells, each over its BedMachine cells only."""
    # A 4 x 4 patch, BedMachine 0; radar on cell (0, 0) and cell (3, 3)
    # outside the valid mask, so block (0, 0) has 3 counted cells.
    prediction = torch.tensor(
        [
            [1.0, -1.0, 5.0, 5.0],
            [2.0, 4.0, 5.0, 5.0],
            [3.0, -3.0, 2.0, 0.0],
            [-3.0, 3.0, 0.0, 9.0],
        ]
    )[None, None].requires_grad_()
    valid = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    valid[0, 0, 3, 3] = False
    radar_mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    radar_mask[0, 0, 0, 0] = True
    radar_bed = torch.zeros(1, 1, 4, 4)
    config = LossConfig(mode="fixed", bedmachine_pool=2)

    terms = BalancedLoss(config)(
        prediction,
        bedmachine=torch.zeros(1, 1, 4, 4),
        valid=valid,
        radar_bed=radar_bed,
        radar_mask=radar_mask,
    )

    # Block means (-1 + 2 + 4) / 3 = 5/3, 5, 0 and (2 + 0 + 0) / 3 = 2/3;
    # shares 3/4, 1, 1, 3/4; L_b = sum(share * mean^2) / sum(share).
    means = torch.tensor([5 / 3, 5.0, 0.0, 2 / 3])
    shares = torch.tensor([0.75, 1.0, 1.0, 0.75])
    expected = float((shares * means**2).sum() / shares.sum())
    # float32 sums of a few terms below 30: relative error near 1e-7.
    assert terms.bedmachine_loss == pytest.approx(expected, rel=1e-6)
    assert terms.n_bedmachine == 14


def test_pooled_term_leaves_relief_inside_a_block_free():
    """A zero-mean departure inside each block costs nothing when pooled."""
    generator = torch.Generator().manual_seed(0)
    relief = torch.randn(1, 1, 8, 8, generator=generator)
    # Remove each 4 x 4 block's mean: the departure has zero block means.
    means = torch.nn.functional.avg_pool2d(relief, 4)
    relief = relief - means.repeat_interleave(4, -2).repeat_interleave(4, -1)
    bedmachine = torch.zeros(1, 1, 8, 8)

    pooled = BalancedLoss(LossConfig(mode="fixed", bedmachine_pool=4))(
        relief, bedmachine=bedmachine
    )
    per_cell = BalancedLoss(LossConfig(mode="fixed"))(relief, bedmachine=bedmachine)

    # Block means of 16 float32 values of order 1: zero to about 1e-7.
    assert pooled.bedmachine_loss == pytest.approx(0.0, abs=1e-10)
    assert per_cell.bedmachine_loss > 0.1
    # A uniform shift is seen whole by either: 2^2 = 4.
    shifted = BalancedLoss(LossConfig(mode="fixed", bedmachine_pool=4))(
        relief + 2.0, bedmachine=bedmachine
    )
    assert shifted.bedmachine_loss == pytest.approx(4.0, rel=1e-5)


def test_pooled_term_larger_than_the_patch_is_the_patch_mean():
    """A pool wider than the patch compares the patch's mean."""
    prediction = torch.arange(9.0).reshape(1, 1, 3, 3)

    terms = BalancedLoss(LossConfig(mode="fixed", bedmachine_pool=32))(
        prediction, bedmachine=torch.ones(1, 1, 3, 3)
    )

    # Mean 4 against 1: 3^2.
    assert terms.bedmachine_loss == pytest.approx(9.0, rel=1e-6)


@pytest.mark.parametrize("pool", [0, -2, 1.5, True])
def test_bad_pool_is_refused(pool):
    """The pool is a whole number of cells >= 1."""
    with pytest.raises(ConfigError, match="bedmachine_pool"):
        LossConfig(bedmachine_pool=pool)
    assert LossConfig.regularised().bedmachine_pool == 32
    assert LossConfig.paper().bedmachine_pool == 1


def test_shape_mismatch_and_bad_config():
    """Wrong shapes and unknown modes are refused with ConfigError."""
    prediction, batch = _case()

    with pytest.raises(ConfigError, match="prediction must have shape"):
        BalancedLoss()(prediction, **batch, factor=2)
    with pytest.raises(ConfigError, match="mode"):
        LossConfig(mode="median")
    assert LossConfig.paper().radar_target == "bedmachine"
