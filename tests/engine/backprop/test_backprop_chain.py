"""The product of Jacobians against torch.autograd, and its cost."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.backprop.chain import (
    Product,
    batch_gradients,
    chain_costs,
    chain_gradients,
    cost_summary,
)
from engine.backprop.layers import ACTIVATIONS
from engine.backprop.network import Network, NetworkSpec, build_network
from engine.backprop.reference import autograd_gradients, compare_gradients

# The chain and autograd do the same float64 arithmetic in other orders, so
# they differ by rounding: a few ulps (1e-16) of the largest gradient entry,
# times the depth. 1e-10, the bound the design asks for, leaves ample room.
REL_TOL = 1e-10


@st.composite
def random_networks(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A random network specification (depths 1-5, widths 1-6) and a seed."""
    input_dim = draw(st.integers(1, 5))
    width = input_dim
    layers: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 5))):
        if width >= 2 and draw(st.booleans()) and draw(st.booleans()):
            channels = draw(st.sampled_from([c for c in (1, 2) if width % c == 0]))
            length = width // channels
            kernel = draw(st.integers(1, length))
            out_channels = draw(st.integers(1, 3))
            layers.append(
                {
                    "kind": "conv1d",
                    "in_channels": channels,
                    "out_channels": out_channels,
                    "kernel_size": kernel,
                }
            )
            width = out_channels * (length - kernel + 1)
        else:
            width = draw(st.integers(1, 6))
            layers.append({"kind": "dense", "units": width})
        activation = draw(st.sampled_from((*ACTIVATIONS, None)))
        if activation:
            layers.append({"kind": "activation", "function": activation})

    # Output head
    head = draw(st.sampled_from(["squared", "softmax", "sigmoid"]))
    if head == "softmax":
        classes = draw(st.integers(2, 4))
        layers += [{"kind": "dense", "units": classes}, {"kind": "softmax"}]
    elif head == "sigmoid":
        layers += [
            {"kind": "dense", "units": 1},
            {"kind": "activation", "function": "sigmoid"},
        ]
    loss = "squared_error" if head == "squared" else "cross_entropy"
    seed = draw(st.integers(0, 2**31 - 1))
    spec = {"input_dim": input_dim, "layers": layers, "loss": loss, "seed": seed}
    return spec, seed


def example_for(net: Network, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random input and a target that suits the loss."""
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=net.input_dim)
    m = net.output_dim
    if net.loss.name == "squared_error":
        return x, rng.normal(size=m)
    if m == 1:
        return x, np.array([float(rng.integers(0, 2))])
    return x, np.eye(m)[rng.integers(0, m)]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(random_networks())
def test_chain_matches_autograd_on_random_networks(case: tuple[dict, int]) -> None:
    spec, seed = case
    net = build_network(NetworkSpec.from_dict(spec))
    # Random parameter scales, so that activations are not all near zero
    scale = np.random.default_rng(seed).uniform(0.3, 2.0)
    net.set_params([scale * p for p in net.get_params()])
    x, y = example_for(net, seed)
    reference = autograd_gradients(net, x, y)
    for order in ("reverse", "forward"):
        result = chain_gradients(net, x, y, order)
        assert [g.shape for g in result.gradients] == [(p,) for p in net.param_counts]
        comparison = compare_gradients(net.names, result.gradients, reference.gradients)
        assert comparison.overall_rel <= REL_TOL, (order, spec, comparison)
        # The loss itself: one float64 evaluation on each side.
        assert result.loss == pytest.approx(reference.loss, rel=1e-12, abs=1e-12)


def test_wider_seeded_networks_match_autograd() -> None:
    rng = np.random.default_rng(5)
    for trial in range(8):
        hidden = rng.integers(4, 13, size=rng.integers(2, 6))
        layers: list[dict[str, Any]] = []
        for width in hidden:
            layers.append({"kind": "dense", "units": int(width)})
            function = str(rng.choice(ACTIVATIONS))
            layers.append({"kind": "activation", "function": function})
        layers += [{"kind": "dense", "units": 3}, {"kind": "softmax"}]
        spec = {
            "input_dim": 4,
            "layers": layers,
            "loss": "cross_entropy",
            "seed": trial,
        }
        net = build_network(NetworkSpec.from_dict(spec))
        x, y = rng.normal(size=4), np.eye(3)[trial % 3]
        reference = autograd_gradients(net, x, y)
        result = chain_gradients(net, x, y)
        comparison = compare_gradients(net.names, result.gradients, reference.gradients)
        assert comparison.overall_rel <= REL_TOL, (trial, comparison)


def tiny_network() -> Network:
    """2 -> dense 3 -> tanh -> dense 1, squared error."""
    return build_network(
        NetworkSpec.from_dict(
            {
                "input_dim": 2,
                "layers": [
                    {"kind": "dense", "units": 3},
                    {"kind": "activation", "function": "tanh"},
                    {"kind": "dense", "units": 1},
                ],
                "loss": "squared_error",
            }
        )
    )


def test_cost_by_hand_for_a_tiny_network() -> None:
    # p_1 = 3 * 2 + 3 = 9, p_3 = 1 * 3 + 1 = 4; widths a_1 = a_2 = 3, a_3 = 1.
    net = tiny_network()
    costs = chain_costs(net, np.array([0.5, -1.0]), np.array([0.2]))

    # Reverse: v = dL/da_3 (1x1).
    #   v @ da_3/dtheta_3 (1x4): 1*1*4 = 4
    #   v @ da_3/da_2     (1x3): 1*1*3 = 3
    #   v @ da_2/da_1     (3x3): 1*3*3 = 9
    #   v @ da_1/dtheta_1 (3x9): 1*3*9 = 27          total 43
    reverse = costs["reverse"]
    assert [(p.left_shape, p.right_shape) for p in reverse.products] == [
        ((1, 1), (1, 4)),
        ((1, 1), (1, 3)),
        ((1, 3), (3, 3)),
        ((1, 3), (3, 9)),
    ]
    assert reverse.multiplications == 43

    # Forward: T = da_1/dtheta_1 (3x9).
    #   da_2/da_1 @ T  (3x3)(3x9): 81, T is 3x9
    #   da_3/da_2 @ T  (1x3)(3x9): 27, then [T | da_3/dtheta_3] is 1x13
    #   dL/da_3 @ T    (1x1)(1x13): 13               total 121
    forward = costs["forward"]
    assert [(p.left_shape, p.right_shape) for p in forward.products] == [
        ((3, 3), (3, 9)),
        ((1, 3), (3, 9)),
        ((1, 1), (1, 13)),
    ]
    assert forward.multiplications == 121
    assert forward.largest_intermediate == 27
    assert reverse.largest_intermediate == 9


def test_reverse_is_cheaper_for_a_scalar_loss_on_a_wide_network() -> None:
    net = build_network(
        NetworkSpec.from_dict(
            {
                "input_dim": 2,
                "layers": [
                    {"kind": "dense", "units": 48},
                    {"kind": "activation", "function": "tanh"},
                    {"kind": "dense", "units": 48},
                    {"kind": "activation", "function": "tanh"},
                    {"kind": "dense", "units": 1},
                ],
            }
        )
    )
    x, y = np.array([0.1, 0.2]), np.array([1.0])
    costs = chain_costs(net, x, y)
    assert costs["reverse"].multiplications < costs["forward"].multiplications / 10
    sentence = cost_summary(costs, net.n_params)
    assert f"{costs['reverse'].multiplications:,}" in sentence
    assert "single row" in sentence

    # Both orders reach the same gradient; they only differ in rounding,
    # which stays at a few ulps of the largest entry.
    forward = chain_gradients(net, x, y, "forward").gradients
    reverse = chain_gradients(net, x, y, "reverse").gradients
    assert compare_gradients(net.names, forward, reverse).overall_rel < 1e-12


def test_product_counts_rows_times_inner_times_columns() -> None:
    product = Product("A", "B", (2, 3), (3, 5))
    assert product.result_shape == (2, 5)
    assert product.multiplications == 30


def test_network_without_parameters_has_nothing_to_multiply() -> None:
    net = build_network(
        NetworkSpec.from_dict(
            {"input_dim": 2, "layers": [{"kind": "activation", "function": "tanh"}]}
        )
    )
    result = chain_gradients(net, np.ones(2), np.zeros(2))
    assert result.cost.multiplications == 0
    assert [g.size for g in result.gradients] == [0]


def test_layers_below_the_first_trainable_one_are_skipped() -> None:
    net = build_network(
        NetworkSpec.from_dict(
            {
                "input_dim": 3,
                "layers": [
                    {"kind": "activation", "function": "tanh"},
                    {"kind": "dense", "units": 2},
                ],
            }
        )
    )
    cost = chain_gradients(net, np.ones(3), np.zeros(2)).cost
    # Only dL/da_2 @ da_2/dtheta_2; no product reaches the tanh layer.
    assert [(p.left, p.right) for p in cost.products] == [("dL/da_2", "da_2/dtheta_2")]


def test_batch_gradients_are_the_mean_of_single_chains(
    rng: np.random.Generator,
) -> None:
    net = build_network(
        NetworkSpec.from_dict(
            {
                "input_dim": 2,
                "layers": [
                    {"kind": "dense", "units": 4},
                    {"kind": "activation", "function": "relu"},
                    {"kind": "conv1d", "out_channels": 2, "kernel_size": 2},
                    {"kind": "dense", "units": 3},
                    {"kind": "softmax"},
                ],
                "loss": "cross_entropy",
            }
        )
    )
    inputs = rng.normal(size=(7, 2))
    targets = np.eye(3)[rng.integers(0, 3, size=7)]
    singles = [chain_gradients(net, x, y) for x, y in zip(inputs, targets, strict=True)]
    loss, gradients = batch_gradients(net, inputs, targets, chunk=3)
    mean = [np.mean([s.gradients[i] for s in singles], axis=0) for i in range(5)]
    # Same products, summed in chunks instead of one by one: rounding only.
    assert compare_gradients(net.names, gradients, mean).overall_rel < 1e-12
    # Seven float64 losses averaged in another order: rounding only.
    assert loss == pytest.approx(np.mean([s.loss for s in singles]), rel=1e-12)
