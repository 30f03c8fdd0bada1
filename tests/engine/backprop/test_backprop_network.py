"""Network specifications: building, validation, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from engine.backprop.errors import SpecError
from engine.backprop.network import (
    LayerSpec,
    NetworkSpec,
    build_network,
    classifier_spec,
)


def spec_of(
    layers: list[dict], loss: str = "squared_error", input_dim: int = 3
) -> NetworkSpec:
    """A specification from plain dicts."""
    data = {"input_dim": input_dim, "layers": layers, "loss": loss}
    return NetworkSpec.from_dict(data)


DENSE_2 = {"kind": "dense", "units": 2}
SE, CE = "squared_error", "cross_entropy"


def test_build_from_dicts_gives_widths_and_names() -> None:
    spec = spec_of(
        [
            {"kind": "dense", "units": 6},
            {"kind": "activation", "function": "relu"},
            {"kind": "conv1d", "in_channels": 2, "out_channels": 2, "kernel_size": 2},
            {"kind": "dense", "units": 2},
            {"kind": "softmax"},
        ],
        loss="cross_entropy",
    )
    net = build_network(spec)
    # conv: 6 values = 2 channels of 3, kernel 2 -> 2 channels of 2
    assert net.dims == (3, 6, 6, 4, 2, 2)
    assert net.names == ("dense_1", "relu_2", "conv1d_3", "dense_4", "softmax_5")
    assert net.param_counts == (24, 0, 10, 10, 0)
    assert net.n_params == 44


def test_spec_json_round_trip_and_hashable() -> None:
    spec = classifier_spec(2, 3, [4, 4], "softplus", conv=(2, 3), seed=7)
    again = NetworkSpec.from_json(spec.to_json())
    assert again == spec
    assert hash(again) == hash(spec)


def test_same_seed_same_parameters() -> None:
    spec = classifier_spec(2, 2, [5], seed=3)
    first = build_network(spec).get_params()
    second = build_network(spec).get_params()
    other = build_network(classifier_spec(2, 2, [5], seed=4)).get_params()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize(
    ("layers", "loss", "message"),
    [
        ([], SE, "no layers"),
        ([{"kind": "dense", "units": 0}], SE, "positive integer"),
        ([{"kind": "activation", "function": "gelu"}], SE, "unknown activation"),
        ([DENSE_2], "hinge", "unknown loss"),
        ([{"kind": "pool"}], SE, "unknown kind"),
        ([DENSE_2 | {"function": "tanh"}], SE, "unknown field"),
        ([{"kind": "conv1d", "in_channels": 2}], SE, "divisor of 3"),
        ([{"kind": "conv1d", "kernel_size": 5}], SE, "at most 3"),
        ([DENSE_2], CE, "end it with a softmax"),
        ([DENSE_2, {"kind": "activation", "function": "sigmoid"}], CE, "use a softmax"),
        ([{"kind": "dense", "units": 1}, {"kind": "softmax"}], SE, "single"),
    ],
)
def test_bad_specs_name_the_problem(
    layers: list[dict], loss: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        build_network(spec_of(layers, loss))


def test_classifier_spec_heads() -> None:
    softmax = build_network(classifier_spec(2, 3, [4]))
    assert softmax.output_dim == 3 and softmax.loss.name == "cross_entropy"
    sigmoid = build_network(classifier_spec(2, 2, [4], head="sigmoid_cross_entropy"))
    assert sigmoid.output_dim == 1
    identity = build_network(classifier_spec(2, 2, [4], head="identity_squared_error"))
    assert identity.output_dim == 2 and identity.loss.name == "squared_error"
    with pytest.raises(SpecError, match="2 classes"):
        classifier_spec(2, 3, [4], head="sigmoid_cross_entropy")
    mixed = build_network(classifier_spec(2, 2, [3, 4], ["relu", "softplus"]))
    assert mixed.names[:4] == ("dense_1", "relu_2", "dense_3", "softplus_4")
    with pytest.raises(SpecError, match="one activation per hidden layer"):
        classifier_spec(2, 2, [3, 4], ["relu"])
    with pytest.raises(SpecError, match="add a hidden layer"):
        classifier_spec(2, 2, [], conv=(2, 2))


def test_layer_spec_to_dict_keeps_only_used_fields() -> None:
    assert LayerSpec("softmax").to_dict() == {"kind": "softmax"}
    assert LayerSpec("dense", units=3).to_dict() == {"kind": "dense", "units": 3}


def test_copy_and_set_params() -> None:
    net = build_network(classifier_spec(2, 2, [3]))
    clone = net.copy()
    clone.set_params([np.zeros_like(p) for p in clone.get_params()])
    assert np.any(net.get_params()[0] != 0)
    with pytest.raises(SpecError, match="one per layer"):
        net.set_params([np.zeros(1)])
