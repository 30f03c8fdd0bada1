"""Tests of the DeepTopoNet networks, ``engine.bedtopo.models``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from engine.bedtopo.errors import ConfigError
from engine.bedtopo.models import (
    DeepTopoNet,
    DeepTopoNetConfig,
    PaperModel,
    PaperModelConfig,
    block_mean,
    count_parameters,
)

#: Narrow trunk for the quick tests; the default widths are tested for counts.
SMALL = (4, 8, 8, 8, 8)


def test_paper_model_parameter_count():
    """The released widths with 20 channels: measured 1,517,921 (~1.5 M)."""
    model = PaperModel(PaperModelConfig(in_channels=20))

    assert count_parameters(model) == 1_517_921
    assert 1.4e6 < count_parameters(model) < 1.6e6


@pytest.mark.parametrize(
    ("factor", "subgrid", "count"),
    [
        (1, "smooth", 1_518_561),
        (2, "smooth", 1_518_561),
        (3, "smooth", 1_518_561),
        (1, "free", 1_518_561),
        (2, "free", 1_519_332),
        (3, "free", 1_520_617),
    ],
)
def test_deeptoponet_parameter_count(factor, subgrid, count):
    """22 channels; a free head grows by 257 parameters per extra sub-cell."""
    config = DeepTopoNetConfig(in_channels=22, factor=factor, subgrid=subgrid)

    assert count_parameters(DeepTopoNet(config)) == count


def test_paper_model_shape_and_target_scaling():
    """Output keeps the grid; target statistics scale it into metres."""
    torch.manual_seed(0)
    features = torch.randn(2, 6, 10, 12)
    plain = PaperModel(PaperModelConfig(in_channels=6, widths=SMALL)).eval()
    scaled = PaperModel(
        PaperModelConfig(
            in_channels=6, widths=SMALL, target_mean=-200.0, target_std=50.0
        )
    ).eval()
    scaled.load_state_dict(plain.state_dict())

    out = plain(features)

    assert out.shape == (2, 1, 10, 12)
    # Same float32 network, affine map of its output: round-off only.
    torch.testing.assert_close(scaled(features), -200.0 + 50.0 * out)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_subgrid_output_shape(factor):
    """The fine output has f H x f W cells."""
    torch.manual_seed(0)
    model = DeepTopoNet(
        DeepTopoNetConfig(
            in_channels=5, widths=SMALL, factor=factor, zero_init_head=False
        )
    )

    out = model(torch.randn(2, 5, 7, 9), torch.zeros(2, 1, 7, 9))

    assert out.shape == (2, 1, 7 * factor, 9 * factor)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_zero_head_returns_bedmachine_exactly(factor):
    """An untrained free model reproduces BedMachine on both grids."""
    torch.manual_seed(0)
    config = DeepTopoNetConfig(
        in_channels=5, widths=SMALL, factor=factor, subgrid="free"
    )
    model = DeepTopoNet(config)
    bed = torch.randn(2, 1, 6, 8) * 300.0

    fine = model(torch.randn(2, 5, 6, 8), bed)

    # The head's weights and bias are exactly zero, so the sum is exact.
    repeated = bed.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    assert torch.equal(fine, repeated)
    # Averaging f * f equal float32 values may round in the last bit.
    torch.testing.assert_close(block_mean(fine, factor), bed, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_zero_head_smooth_interpolates_bedmachine(factor):
    """An untrained smooth model gives BedMachine interpolated bilinearly."""
    torch.manual_seed(0)
    model = DeepTopoNet(DeepTopoNetConfig(in_channels=5, widths=SMALL, factor=factor))
    bed = torch.randn(1, 1, 6, 8) * 300.0

    fine = model(torch.randn(1, 5, 6, 8), bed)

    # Zero head: the output is the interpolation itself, bit for bit.
    expected = bed if factor == 1 else F.interpolate(
        bed, scale_factor=factor, mode="bilinear", align_corners=False
    )
    assert torch.equal(fine, expected)
    # Hand-worked sub-cell at factor 2: the one a quarter cell inside the
    # north-west corner of cell (1, 1) weighs it 9/16, cells (0, 1) and
    # (1, 0) 3/16 each and (0, 0) 1/16; float32 round-off only.
    if factor == 2:
        b = bed[0, 0]
        hand = (9 * b[1, 1] + 3 * b[0, 1] + 3 * b[1, 0] + b[0, 0]) / 16
        torch.testing.assert_close(fine[0, 0, 2, 2], hand, rtol=1e-5, atol=1e-3)


def test_smooth_subgrid_has_no_sub_cell_noise():
    """A smooth correction of a constant input is constant on the fine grid."""
    torch.manual_seed(0)
    config = DeepTopoNetConfig(
        in_channels=3, widths=SMALL, factor=3, zero_init_head=False, dropout=0.0
    )
    model = DeepTopoNet(config).eval()
    # 32 x 32 cells: the centre lies 16 cells from the zero-padded border,
    # beyond the receptive radius of 11.
    features = torch.ones(1, 3, 32, 32)

    with torch.no_grad():
        fine = model.correction(features)[0, 0]
        free = DeepTopoNet(replace(config, subgrid="free")).eval()
        sub_cells = free.correction(features)[0, 0, 48:51, 48:51]

    # The trunk sees a constant input there, so its 150 m output, hence the
    # interpolated sub-cells, are constant too (float32 round-off only).
    inner = fine[48:51, 48:51]
    torch.testing.assert_close(inner, torch.full_like(inner, float(inner[0, 0])))
    # The free head gives each of the nine sub-cell positions its own value.
    assert sub_cells.unique().numel() > 1


def test_block_mean_identity_and_values():
    """Factor 1 is the identity; factor 2 averages each 2 x 2 block."""
    fine = torch.arange(16.0).reshape(1, 1, 4, 4)

    assert block_mean(fine, 1) is fine
    # Means of small integers are exact in float32.
    assert torch.equal(
        block_mean(fine, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    )
    with pytest.raises(ConfigError, match="crop"):
        block_mean(torch.zeros(1, 1, 5, 4), 2)


def test_block_mean_of_correction_is_coarse_correction():
    """For factor 1 the fine output is the 150 m prediction itself."""
    torch.manual_seed(0)
    model = DeepTopoNet(
        DeepTopoNetConfig(in_channels=3, widths=SMALL, factor=1, zero_init_head=False)
    ).eval()
    features, bed = torch.randn(1, 3, 5, 5), torch.randn(1, 1, 5, 5)

    out = model(features, bed)

    # Same operations in the same order: bit-identical.
    assert torch.equal(block_mean(out, 1), bed + model.correction(features))


def test_mc_dropout_keeps_dropout_on_in_eval():
    """With mc_dropout, eval leaves dropout on and batch norm in eval."""
    torch.manual_seed(0)
    config = DeepTopoNetConfig(
        in_channels=3, widths=SMALL, factor=1, zero_init_head=False, mc_dropout=True
    )
    model = DeepTopoNet(config).eval()
    features, bed = torch.randn(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)

    first, second = model(features, bed), model(features, bed)

    assert not model.trunk[0].norm1.training
    assert model.trunk[0].dropout.training
    assert not torch.equal(first, second)
    model.mc_dropout = False
    model.eval()
    assert torch.equal(model(features, bed), model(features, bed))


@pytest.mark.parametrize(
    "config",
    [
        {"factor": 4},
        {"dropout": 1.0},
        {"widths": ()},
        {"correction_scale": 0.0},
        {"subgrid": "nearest"},
    ],
)
def test_config_rejects_bad_values(config):
    """Settings that cannot be built are refused with ConfigError."""
    with pytest.raises(ConfigError):
        DeepTopoNetConfig(**config)


def test_wrong_channel_count_raises():
    """Features with the wrong number of channels name the expected shape."""
    model = PaperModel(PaperModelConfig(in_channels=4, widths=SMALL))

    with pytest.raises(ConfigError, match=r"\(B, 4, H, W\)"):
        model(torch.zeros(1, 3, 8, 8))


def _step(model, inputs, target):
    """One Adam step on the mean squared error; returns parameter copies."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = ((model(*inputs) - target) ** 2).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return before


def test_one_step_changes_every_paper_weight():
    """Every parameter of the paper model moves in one optimiser step."""
    torch.manual_seed(0)
    model = PaperModel(PaperModelConfig(in_channels=3, widths=SMALL, dropout=0.0))

    before = _step(model, (torch.randn(2, 3, 8, 8),), torch.randn(2, 1, 8, 8))

    for name, param in model.named_parameters():
        assert not torch.equal(param, before[name]), name


def test_steps_change_every_deeptoponet_weight():
    """The zero head moves in step one, the trunk behind it from step two."""
    torch.manual_seed(0)
    config = DeepTopoNetConfig(in_channels=3, widths=SMALL, factor=2, dropout=0.0)
    model = DeepTopoNet(config)
    inputs = (torch.randn(2, 3, 8, 8), torch.zeros(2, 1, 8, 8))
    target = torch.randn(2, 1, 16, 16)

    first = _step(model, inputs, target)
    head_moved = not torch.equal(model.head.weight, first["head.weight"])
    trunk_weight = model.trunk[0].conv1.weight
    trunk_still = torch.equal(trunk_weight, first["trunk.0.conv1.weight"])
    _step(model, inputs, target)

    assert head_moved and trunk_still
    for name, param in model.named_parameters():
        assert not torch.equal(param, first[name]), name
