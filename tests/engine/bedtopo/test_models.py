"""Tests of the DeepTopoNet networks, ``engine.bedtopo.models``."""

from __future__ import annotations

import pytest
import torch

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
    ("factor", "count"), [(1, 1_518_561), (2, 1_519_332), (3, 1_520_617)]
)
def test_deeptoponet_parameter_count(factor, count):
    """22 channels; the head grows by 257 parameters per extra sub-cell."""
    model = DeepTopoNet(DeepTopoNetConfig(in_channels=22, factor=factor))

    assert count_parameters(model) == count


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
    """An untrained model reproduces BedMachine, on the fine and coarse grids."""
    torch.manual_seed(0)
    model = DeepTopoNet(DeepTopoNetConfig(in_channels=5, widths=SMALL, factor=factor))
    bed = torch.randn(2, 1, 6, 8) * 300.0

    fine = model(torch.randn(2, 5, 6, 8), bed)

    # The head's weights and bias are exactly zero, so the sum is exact.
    repeated = bed.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    assert torch.equal(fine, repeated)
    # Averaging f * f equal float32 values may round in the last bit.
    torch.testing.assert_close(block_mean(fine, factor), bed, rtol=1e-6, atol=1e-4)


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
    [{"factor": 4}, {"dropout": 1.0}, {"widths": ()}, {"correction_scale": 0.0}],
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
