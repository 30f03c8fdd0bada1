"""Each layer's Jacobians, written from formulas, against torch.autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from engine.backprop.errors import SpecError
from engine.backprop.layers import (
    ACTIVATIONS,
    Activation,
    Conv1D,
    Dense,
    Layer,
    Softmax,
)
from engine.backprop.reference import torch_layer

# Both sides evaluate the same float64 formulas with different libraries
# (numpy and torch differ by a few ulps in exp and tanh) and in different
# orders of summation; entries are of order 1, so 1e-12 absolute and
# relative tolerance is far above rounding and far below any formula error.
RTOL = 1e-12
ATOL = 1e-12

CASES = [
    "dense",
    *(f"activation_{name}" for name in ACTIVATIONS),
    "softmax",
    "conv1d_one_channel",
    "conv1d_two_channels",
    "conv1d_kernel_one",
]


def make_layer(case: str, rng: np.random.Generator) -> Layer:
    """A layer of the given case with random parameters."""
    if case == "dense":
        return Dense(rng.normal(size=(3, 4)), rng.normal(size=3), name="d")
    if case.startswith("activation_"):
        return Activation(case.removeprefix("activation_"), 5, name="act")
    if case == "softmax":
        return Softmax(4)
    if case == "conv1d_one_channel":
        return Conv1D(rng.normal(size=(2, 1, 3)), rng.normal(size=2), length=6)
    if case == "conv1d_two_channels":
        return Conv1D(rng.normal(size=(3, 2, 2)), rng.normal(size=3), length=4)
    return Conv1D(rng.normal(size=(2, 3, 1)), rng.normal(size=2), length=3)


def autograd_jacobians(layer: Layer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input and parameter Jacobians of the torch version of ``layer``."""
    f = torch_layer(layer)
    theta = torch.tensor(layer.get_params(), dtype=torch.float64)
    xt = torch.tensor(x, dtype=torch.float64)
    j_input = jacobian(lambda v: f(theta, v), xt).numpy()
    if theta.numel() == 0:
        return j_input, np.zeros((layer.output_dim, 0))
    j_params = jacobian(lambda t: f(t, xt), theta).numpy()
    return j_input, j_params


@pytest.mark.parametrize("case", CASES)
def test_input_jacobian_matches_autograd(case: str, rng: np.random.Generator) -> None:
    layer = make_layer(case, rng)
    for _ in range(3):
        x = 1.5 * rng.normal(size=layer.input_dim)
        expected, _ = autograd_jacobians(layer, x)
        got = layer.jacobian_input(x)
        assert got.shape == (layer.output_dim, layer.input_dim)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", CASES)
def test_parameter_jacobian_matches_autograd(
    case: str, rng: np.random.Generator
) -> None:
    layer = make_layer(case, rng)
    for _ in range(3):
        x = 1.5 * rng.normal(size=layer.input_dim)
        _, expected = autograd_jacobians(layer, x)
        got = layer.jacobian_params(x)
        assert got.shape == (layer.output_dim, layer.n_params)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_torch(case: str, rng: np.random.Generator) -> None:
    layer = make_layer(case, rng)
    x = rng.normal(size=layer.input_dim)
    theta = torch.tensor(layer.get_params(), dtype=torch.float64)
    expected = torch_layer(layer)(theta, torch.tensor(x)).numpy()
    # Same float64 formulas in two libraries: a few ulps apart at most.
    np.testing.assert_allclose(layer.forward(x), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", CASES)
def test_batch_equals_stacked_single_vectors(
    case: str, rng: np.random.Generator
) -> None:
    layer = make_layer(case, rng)
    batch = rng.normal(size=(4, layer.input_dim))
    for method in (layer.forward, layer.jacobian_input, layer.jacobian_params):
        stacked = np.stack([method(row) for row in batch])
        # Same formulas, but BLAS may sum a matrix product in another order
        # than a vector product: a few ulps of order-1 entries at most.
        np.testing.assert_allclose(method(batch), stacked, rtol=1e-14, atol=1e-14)


def test_dense_parameter_jacobian_is_x_transpose_kron_identity(
    rng: np.random.Generator,
) -> None:
    m, n = 3, 4
    layer = Dense(rng.normal(size=(m, n)), rng.normal(size=m))
    x = rng.normal(size=n)
    jac = layer.jacobian_params(x)
    # Built from the same product of the same numbers: exactly equal.
    np.testing.assert_array_equal(jac[:, : m * n], np.kron(x[None, :], np.eye(m)))
    np.testing.assert_array_equal(jac[:, m * n :], np.eye(m))


def test_dense_vec_is_column_major(rng: np.random.Generator) -> None:
    weight = np.arange(6.0).reshape(2, 3)
    layer = Dense(weight, np.array([10.0, 20.0]))
    # vec stacks columns: W[0,0], W[1,0], W[0,1], ...
    np.testing.assert_array_equal(
        layer.get_params(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0, 10.0, 20.0]
    )
    assert layer.param_labels()[:3] == ["W[1,1]", "W[2,1]", "W[1,2]"]

    # A change dW moves the output by J_theta vec(dW) = dW x
    x = rng.normal(size=3)
    d_weight = rng.normal(size=(2, 3))
    step = np.concatenate([d_weight.ravel(order="F"), np.zeros(2)])
    # Two float64 evaluations of the same bilinear form, order 1 entries.
    moved = layer.jacobian_params(x) @ step
    np.testing.assert_allclose(moved, d_weight @ x, rtol=1e-13)


@pytest.mark.parametrize("case", ["dense", "conv1d_two_channels"])
def test_set_params_round_trip(case: str, rng: np.random.Generator) -> None:
    layer = make_layer(case, rng)
    theta = rng.normal(size=layer.n_params)
    layer.set_params(theta)
    np.testing.assert_array_equal(layer.get_params(), theta)
    with pytest.raises(SpecError, match="parameters"):
        layer.set_params(theta[:-1])


def test_conv1d_forward_matches_a_plain_loop(rng: np.random.Generator) -> None:
    kernels = rng.normal(size=(3, 2, 2))
    bias = rng.normal(size=3)
    layer = Conv1D(kernels, bias, length=5)
    x = rng.normal(size=10)
    signal = x.reshape(2, 5)
    expected = np.zeros((3, 4))
    for o in range(3):
        for t in range(4):
            expected[o, t] = bias[o] + sum(
                kernels[o, c, s] * signal[c, t + s] for c in range(2) for s in range(2)
            )
    # A handful of products summed in another order: rounding only.
    np.testing.assert_allclose(layer.forward(x), expected.reshape(-1), rtol=1e-13)


def test_conv1d_parameter_jacobian_has_kronecker_blocks(
    rng: np.random.Generator,
) -> None:
    layer = Conv1D(rng.normal(size=(2, 1, 3)), rng.normal(size=2), length=5)
    x = rng.normal(size=5)
    patches = layer.patches(x[None, :])[0]
    jac = layer.jacobian_params(x)
    # Copies of the same numbers: exactly equal.
    np.testing.assert_array_equal(jac[:, :6], np.kron(np.eye(2), patches))
    np.testing.assert_array_equal(jac[:, 6:], np.kron(np.eye(2), np.ones((3, 1))))


def test_activation_jacobian_is_diagonal(rng: np.random.Generator) -> None:
    layer = Activation("tanh", 4)
    jac = layer.jacobian_input(rng.normal(size=4))
    assert np.count_nonzero(jac - np.diag(np.diag(jac))) == 0


def test_relu_derivative_at_zero_is_zero() -> None:
    layer = Activation("relu", 3)
    jac = layer.jacobian_input(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(np.diag(jac), [0.0, 0.0, 1.0])


def test_softmax_survives_large_inputs() -> None:
    layer = Softmax(3)
    out = layer.forward(np.array([1000.0, 0.0, -1000.0]))
    assert np.all(np.isfinite(out))
    # exp(-1000) underflows to 0 and the first entry is 1 within rounding.
    np.testing.assert_allclose(out, [1.0, 0.0, 0.0], atol=1e-300)


def test_bad_layers_raise_spec_errors(rng: np.random.Generator) -> None:
    with pytest.raises(SpecError, match="choose one of"):
        Activation("swish", 3)
    with pytest.raises(SpecError, match="one bias per output"):
        Dense(rng.normal(size=(3, 2)), rng.normal(size=2))
    with pytest.raises(SpecError, match="kernel size 4"):
        Conv1D(rng.normal(size=(1, 1, 4)), np.zeros(1), length=3)
    with pytest.raises(SpecError, match="length 4"):
        Dense(rng.normal(size=(3, 4)), np.zeros(3)).forward(np.zeros(5))
    with pytest.raises(SpecError, match="no parameters"):
        Softmax(3).set_params(np.ones(2))


def test_copy_is_independent(rng: np.random.Generator) -> None:
    layer = Dense(rng.normal(size=(2, 2)), rng.normal(size=2))
    clone = layer.copy()
    clone.set_params(np.zeros(6))
    assert np.any(layer.get_params() != 0)
