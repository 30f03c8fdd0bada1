"""Loss values and Jacobians against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from engine.backprop.errors import SpecError
from engine.backprop.losses import (
    PROBABILITY_FLOOR,
    CrossEntropy,
    Loss,
    SquaredError,
    make_loss,
)
from engine.backprop.reference import torch_loss

# float64 formulas evaluated by numpy and by torch: a few ulps apart on
# entries of order 1 to 10, so 1e-12 is loose for rounding, tight for errors.
TOL = 1e-12


def autograd_row(loss: Loss, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/da by torch.autograd, as a (1, m) row."""
    f = torch_loss(loss)
    yt = torch.tensor(y)
    return jacobian(lambda v: f(v, yt), torch.tensor(a)).numpy()[None, :]


def test_squared_error(rng: np.random.Generator) -> None:
    loss = SquaredError()
    a, y = rng.normal(size=4), rng.normal(size=4)
    assert loss.value(a, y) == pytest.approx(0.5 * np.sum((a - y) ** 2), rel=TOL)
    row = loss.jacobian(a, y)
    assert row.shape == (1, 4)
    np.testing.assert_allclose(row, autograd_row(loss, a, y), rtol=TOL, atol=TOL)


def test_cross_entropy_several_classes(rng: np.random.Generator) -> None:
    loss = CrossEntropy()
    p = rng.dirichlet(np.ones(3))
    y = np.array([0.0, 1.0, 0.0])
    assert loss.value(p, y) == pytest.approx(-np.log(p[1]), rel=TOL)
    np.testing.assert_allclose(
        loss.jacobian(p, y), autograd_row(loss, p, y), rtol=TOL, atol=TOL
    )


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_cross_entropy_binary(target: float) -> None:
    loss = CrossEntropy()
    p, y = np.array([0.3]), np.array([target])
    expected = -np.log(0.3) if target else -np.log(0.7)
    assert loss.value(p, y) == pytest.approx(expected, rel=TOL)
    np.testing.assert_allclose(
        loss.jacobian(p, y), autograd_row(loss, p, y), rtol=TOL, atol=TOL
    )


def test_cross_entropy_clamps_like_torch() -> None:
    loss = CrossEntropy()
    p = np.array([0.0, 1.0])
    y = np.array([1.0, 0.0])
    assert loss.value(p, y) == pytest.approx(-np.log(PROBABILITY_FLOOR), rel=TOL)
    row = loss.jacobian(p, y)
    assert np.all(np.isfinite(row))
    # Clamped entries get derivative 0 on both sides: exactly equal.
    np.testing.assert_array_equal(row, autograd_row(loss, p, y))


def test_batch_of_rows(rng: np.random.Generator) -> None:
    loss = SquaredError()
    a, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    assert loss.value(a, y).shape == (5,)
    assert loss.jacobian(a, y).shape == (5, 1, 3)


def test_mismatched_target_and_unknown_loss() -> None:
    with pytest.raises(SpecError, match="one target value per output"):
        SquaredError().value(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(SpecError, match="choose one of"):
        make_loss("hinge")
