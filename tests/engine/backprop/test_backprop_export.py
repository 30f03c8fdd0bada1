"""LaTeX and JSON export of a trace."""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine.backprop.errors import BackpropError
from engine.backprop.export import (
    chain_latex,
    trace_from_json,
    trace_to_json,
    trace_to_latex,
)
from engine.backprop.network import build_network, classifier_spec
from engine.backprop.trace import Trace, build_trace

SHAPE = re.compile(r"\\underbrace\{.*?\}_\{(\d+) \\times (\d+)\}")


@pytest.fixture
def trace() -> Trace:
    net = build_network(classifier_spec(2, 2, [3, 2], "relu", conv=(2, 2), seed=5))
    return build_trace(net, np.array([0.4, -1.2]), np.array([1.0, 0.0]))


def test_json_round_trip_keeps_every_number(trace: Trace) -> None:
    text = trace_to_json(trace)
    again = trace_from_json(text)
    assert trace_to_json(again) == text
    assert again.names == trace.names and again.dims == trace.dims
    assert again.loss == trace.loss
    # repr of a float64 reads back to the same float: exact equality.
    for a, b in zip(again.gradients, trace.gradients, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(again.steps, trace.steps, strict=True):
        assert (a.kind, a.role, a.layer, a.title, a.chain) == (
            b.kind,
            b.role,
            b.layer,
            b.title,
            b.chain,
        )
        assert a.jacobian_shape == b.jacobian_shape
        if b.jacobian is not None:
            np.testing.assert_array_equal(a.jacobian, b.jacobian)
            np.testing.assert_array_equal(a.running, b.running)
        assert a.inputs.keys() == b.inputs.keys()
    for order in ("forward", "reverse"):
        assert again.costs[order] == trace.costs[order]


def test_latex_chains_carry_the_actual_shapes(trace: Trace) -> None:
    text = trace_to_latex(trace)
    assert text.count(r"\begin{align*}") == text.count(r"\end{align*}") == 2
    assert text.count("{") == text.count("}")
    lines = text.splitlines()
    chain_rows = [line for line in lines if line.startswith(r"\frac{\partial L}")]
    top_down = range(len(trace.names), 0, -1)
    trainable = [pos for pos in top_down if trace.param_counts[pos - 1]]
    assert len(chain_rows) == len(trainable)
    for line, pos in zip(chain_rows, trainable, strict=True):
        shapes = [(int(r), int(c)) for r, c in SHAPE.findall(line)]
        top = len(trace.names)
        expected = [(1, trace.dims[top])]
        expected += [(trace.dims[k], trace.dims[k - 1]) for k in range(top, pos, -1)]
        expected.append((trace.dims[pos], trace.param_counts[pos - 1]))
        assert shapes == expected
        # Neighbouring factors fit: columns of one are rows of the next.
        assert all(a[1] == b[0] for a, b in zip(shapes, shapes[1:]))
    reverse = trace.costs["reverse"].multiplications
    assert f"reverse order ${reverse}$" in text


def test_standalone_latex_is_a_document(trace: Trace) -> None:
    text = trace_to_latex(trace, standalone=True)
    assert text.startswith(r"\documentclass{article}")
    assert text.rstrip().endswith(r"\end{document}")


def test_chain_latex_refuses_a_layer_without_parameters(trace: Trace) -> None:
    with pytest.raises(BackpropError, match="no parameters"):
        chain_latex(trace, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "other"}', "not a backprop trace"),
        ('{"format": "greenbed-backprop-trace", "version": 99}', "version 99"),
    ],
)
def test_bad_json_is_refused(text: str, message: str) -> None:
    with pytest.raises(BackpropError, match=message):
        trace_from_json(text)
