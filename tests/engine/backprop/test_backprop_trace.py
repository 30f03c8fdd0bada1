"""The recorded forward and backward pass: order, shapes, values."""

from __future__ import annotations

import numpy as np
import pytest

from engine.backprop.network import Network, NetworkSpec, build_network, classifier_spec
from engine.backprop.reference import autograd_gradients, compare_gradients
from engine.backprop.trace import Trace, build_trace


@pytest.fixture
def net() -> Network:
    return build_network(classifier_spec(2, 3, [4, 3], "tanh", conv=(2, 2), seed=2))


@pytest.fixture
def trace(net: Network) -> Trace:
    return build_trace(net, np.array([0.3, -0.7]), np.array([0.0, 0.0, 1.0]))


def test_forward_steps_come_first_in_layer_order(net: Network, trace: Trace) -> None:
    n_layers = len(net.layers)
    kinds = [step.kind for step in trace.steps]
    backward = len(kinds) - n_layers - 1
    assert kinds == ["forward"] * (n_layers + 1) + ["backward"] * backward
    forward = trace.forward_steps
    assert [s.layer_index for s in forward] == list(range(1, n_layers + 2))
    assert [s.layer for s in forward[:-1]] == list(net.names)
    assert forward[-1].role == "loss"


def test_forward_steps_hold_the_activations(net: Network, trace: Trace) -> None:
    acts = net.forward(trace.x)
    for pos, step in enumerate(trace.forward_steps[:-1], start=1):
        # The very same computation: equal to the last bit.
        np.testing.assert_array_equal(step.inputs[f"a_{pos - 1}"], acts[pos - 1])
        np.testing.assert_array_equal(step.outputs[f"a_{pos}"], acts[pos])
        assert step.jacobian is None and step.running is None
    assert trace.forward_steps[-1].outputs["L"][0] == trace.loss


def test_backward_steps_chain_with_the_right_shapes(net: Network, trace: Trace) -> None:
    backward = trace.backward_steps
    dims = net.dims
    top = len(net.layers)

    # The loss Jacobian starts the chain as one row
    assert backward[0].role == "loss"
    assert backward[0].jacobian_shape == (1, dims[top])
    assert backward[0].running_shape == (1, dims[top])

    # Then layers from the top down, each factor fitting the running row
    row_cols = dims[top]
    indices = [s.layer_index for s in backward[1:]]
    assert indices == sorted(indices, reverse=True)
    for step in backward[1:]:
        pos = step.layer_index
        rows, cols = step.jacobian_shape
        assert rows == row_cols == dims[pos]
        if step.role == "parameters":
            assert (rows, cols) == (dims[pos], net.param_counts[pos - 1])
            assert len(step.column_labels) == cols
        else:
            assert step.role == "input"
            assert (rows, cols) == (dims[pos], dims[pos - 1])
            row_cols = cols
        assert step.running_shape == (1, cols)


def test_parameter_steps_hold_the_gradients(net: Network, trace: Trace) -> None:
    for step in trace.backward_steps:
        if step.role == "parameters":
            gradient = trace.gradients[step.layer_index - 1]
            np.testing.assert_array_equal(step.running[0], gradient)
    reference = autograd_gradients(net, trace.x, trace.y)
    comparison = compare_gradients(net.names, trace.gradients, reference.gradients)
    # Same arithmetic in another order: rounding of a few ulps only.
    assert comparison.overall_rel < 1e-10


def test_backward_steps_match_the_reverse_products(trace: Trace) -> None:
    products = trace.costs["reverse"].products
    steps = trace.backward_steps[1:]
    assert len(products) == len(steps)
    for product, step in zip(products, steps, strict=True):
        assert product.right_shape == step.jacobian_shape
        assert product.result_shape == step.running_shape


def test_untrainable_bottom_layers_are_not_visited() -> None:
    spec = NetworkSpec.from_dict(
        {
            "input_dim": 2,
            "layers": [
                {"kind": "activation", "function": "sigmoid"},
                {"kind": "dense", "units": 2},
                {"kind": "softmax"},
            ],
            "loss": "cross_entropy",
        }
    )
    trace = build_trace(build_network(spec), np.ones(2), np.array([1.0, 0.0]))
    visited = [(s.role, s.layer) for s in trace.backward_steps]
    assert visited == [
        ("loss", "loss"),
        ("input", "softmax_3"),
        ("parameters", "dense_2"),
    ]
    assert trace.gradient_vector.shape == (6,)
