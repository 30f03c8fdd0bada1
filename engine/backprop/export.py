"""Export of a trace: the chain in LaTeX with its shapes, and JSON both ways.

The JSON keeps every number (float64 written with Python's shortest
round-tripping repr), so ``trace_from_json(trace_to_json(t))`` gives back
equal arrays. Arrays are stored as ``{"shape": [...], "data": [...]}``
with the data flattened in C order, so that empty arrays such as a
``(1, 0)`` Jacobian keep their shape.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from engine.backprop.chain import ChainCost, Product
from engine.backprop.errors import BackpropError
from engine.backprop.trace import Step, Trace, partial

#: Written into every JSON export, checked on reading.
JSON_FORMAT = "greenbed-backprop-trace"
JSON_VERSION = 1


def _shape(rows: int, cols: int) -> str:
    r"""LaTeX ``rows \times cols``."""
    return rf"{rows} \times {cols}"


def _brace(term: str, rows: int, cols: int) -> str:
    r"""``term`` with its shape under an ``\underbrace``."""
    return rf"\underbrace{{{term}}}_{{{_shape(rows, cols)}}}"


def chain_latex(trace: Trace, layer_index: int) -> str:
    """The chain of one layer's gradient, each factor over its shape.

    Parameters
    ----------
    trace : Trace
        A recorded pass.
    layer_index : int
        ``l`` in ``1 .. L``, a layer with parameters.

    Returns
    -------
    str
        LaTeX such as ``\\frac{\\partial L}{\\partial \\theta_2} =
        \\underbrace{...}_{1 \\times 2} ...``, for an ``align`` row.
    """
    # The factors from the loss down to the layer's parameters
    dims, top = trace.dims, len(trace.names)
    count = trace.param_counts[layer_index - 1]
    if count == 0:
        raise BackpropError(
            f"layer {layer_index} ({trace.names[layer_index - 1]}) has no "
            "parameters, so it has no gradient chain; pick a dense or conv1d layer"
        )
    factors = [_brace(partial("L", f"a_{{{top}}}"), 1, dims[top])]
    for pos in range(top, layer_index, -1):
        term = partial(f"a_{{{pos}}}", f"a_{{{pos - 1}}}")
        factors.append(_brace(term, dims[pos], dims[pos - 1]))
    theta = rf"\theta_{{{layer_index}}}"
    last = partial(f"a_{{{layer_index}}}", theta)
    factors.append(_brace(last, dims[layer_index], count))

    # Left side, the product, and the shape of the result
    return (
        rf"{partial('L', theta)} &= "
        + r"\,".join(factors)
        + rf" \quad ({_shape(1, count)})"
    )


def trace_to_latex(trace: Trace, standalone: bool = False) -> str:
    """The trace as LaTeX: forward equations, gradient chains, their cost.

    Parameters
    ----------
    trace : Trace
        A recorded pass.
    standalone : bool
        Wrap it in a minimal ``article`` document.

    Returns
    -------
    str
        Needs ``amsmath``. One ``align*`` of the forward pass, one of the
        chains (one row per layer with parameters, every factor with its
        shape underneath), and the cost of both orders.
    """
    # Forward pass, with each activation's width
    lines = [
        "% Backpropagation as a product of Jacobians (engine.backprop).",
        "% Needs \\usepackage{amsmath}. Shapes are rows x columns; vec is",
        "% column-major, theta_l = [vec(W_l); b_l].",
        r"\begin{align*}",
    ]
    forward = [s for s in trace.forward_steps if s.role == "layer"]
    rows = [
        rf"{step.equation} &\quad a_{{{step.layer_index}}} \in "
        rf"\mathbb{{R}}^{{{trace.dims[step.layer_index]}}}"
        for step in forward
    ]
    loss_step = next(s for s in trace.forward_steps if s.role == "loss")
    rows.append(rf"{loss_step.equation} &\quad L = {trace.loss:.6g}")
    lines.append(" \\\\\n".join(rows))
    lines.append(r"\end{align*}")

    # Gradient chains, from the top layer down
    chains = [
        chain_latex(trace, pos)
        for pos in range(len(trace.names), 0, -1)
        if trace.param_counts[pos - 1]
    ]
    if chains:
        lines.append(r"\begin{align*}")
        lines.append(" \\\\\n".join(chains))
        lines.append(r"\end{align*}")

    # Cost of both orders
    reverse = trace.costs["reverse"].multiplications
    forward_cost = trace.costs["forward"].multiplications
    lines.append(
        rf"Scalar multiplications: reverse order ${reverse}$, "
        rf"forward order ${forward_cost}$."
    )
    body = "\n".join(lines)

    # Optional document wrapper
    if not standalone:
        return body + "\n"
    return (
        "\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
        "\\begin{document}\n" + body + "\n\\end{document}\n"
    )


def _array_to_json(array: np.ndarray | None) -> dict[str, Any] | None:
    """``{"shape", "data"}`` of an array, or None."""
    if array is None:
        return None
    arr = np.asarray(array, dtype=np.float64)
    return {"shape": list(arr.shape), "data": [float(v) for v in arr.reshape(-1)]}


def _array_from_json(item: dict[str, Any] | None) -> np.ndarray | None:
    """Inverse of ``_array_to_json``."""
    if item is None:
        return None
    return np.asarray(item["data"], dtype=np.float64).reshape(item["shape"])


def _step_to_json(step: Step) -> dict[str, Any]:
    """A step as plain JSON values."""
    return {
        "kind": step.kind,
        "role": step.role,
        "layer": step.layer,
        "layer_index": step.layer_index,
        "title": step.title,
        "equation": step.equation,
        "inputs": {k: _array_to_json(v) for k, v in step.inputs.items()},
        "outputs": {k: _array_to_json(v) for k, v in step.outputs.items()},
        "jacobian": _array_to_json(step.jacobian),
        "jacobian_label": step.jacobian_label,
        "row_axis": step.row_axis,
        "column_axis": step.column_axis,
        "column_labels": list(step.column_labels),
        "running": _array_to_json(step.running),
        "running_label": step.running_label,
        "chain": step.chain,
    }


def _step_from_json(item: dict[str, Any]) -> Step:
    """Inverse of ``_step_to_json``."""
    return Step(
        kind=item["kind"],
        role=item["role"],
        layer=item["layer"],
        layer_index=int(item["layer_index"]),
        title=item["title"],
        equation=item["equation"],
        inputs={k: _array_from_json(v) for k, v in item["inputs"].items()},
        outputs={k: _array_from_json(v) for k, v in item["outputs"].items()},
        jacobian=_array_from_json(item["jacobian"]),
        jacobian_label=item["jacobian_label"],
        row_axis=item["row_axis"],
        column_axis=item["column_axis"],
        column_labels=tuple(item["column_labels"]),
        running=_array_from_json(item["running"]),
        running_label=item["running_label"],
        chain=item["chain"],
    )


def _cost_to_json(cost: ChainCost) -> dict[str, Any]:
    """A chain cost as plain JSON values, with its totals for readers."""
    return {
        "order": cost.order,
        "multiplications": cost.multiplications,
        "products": [
            {
                "left": p.left,
                "right": p.right,
                "left_shape": list(p.left_shape),
                "right_shape": list(p.right_shape),
                "multiplications": p.multiplications,
            }
            for p in cost.products
        ],
    }


def _cost_from_json(item: dict[str, Any]) -> ChainCost:
    """Inverse of ``_cost_to_json`` (totals are recomputed)."""
    products = tuple(
        Product(p["left"], p["right"], tuple(p["left_shape"]), tuple(p["right_shape"]))
        for p in item["products"]
    )
    return ChainCost(item["order"], products)


def trace_to_json(trace: Trace, indent: int | None = None) -> str:
    """The whole trace as JSON text.

    Parameters
    ----------
    trace : Trace
        A recorded pass.
    indent : int or None
        Passed to ``json.dumps``.

    Returns
    -------
    str
        An object with ``format``, ``version``, the network's shapes, the
        example, the loss, the gradients, the steps and the costs.
    """
    # Refuse values JSON cannot carry
    if not math.isfinite(trace.loss):
        raise BackpropError(
            f"the loss is {trace.loss}, which JSON cannot store; pick an example "
            "or parameters with a finite loss"
        )

    # Everything as plain values
    payload = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "names": list(trace.names),
        "kinds": list(trace.kinds),
        "dims": list(trace.dims),
        "param_counts": list(trace.param_counts),
        "param_labels": [list(labels) for labels in trace.param_labels],
        "x": _array_to_json(trace.x),
        "y": _array_to_json(trace.y),
        "loss_name": trace.loss_name,
        "loss": trace.loss,
        "gradients": [_array_to_json(g) for g in trace.gradients],
        "steps": [_step_to_json(step) for step in trace.steps],
        "costs": {order: _cost_to_json(cost) for order, cost in trace.costs.items()},
    }
    try:
        return json.dumps(payload, indent=indent, allow_nan=False)
    except ValueError:
        raise BackpropError(
            "the trace holds NaN or infinite values, which JSON cannot store; "
            "pick an example or parameters with finite values"
        ) from None


def trace_from_json(text: str) -> Trace:
    """Read a trace written by ``trace_to_json``.

    Raises
    ------
    BackpropError
        When the text is not JSON or not a trace of a known version.
    """
    # Parse and check the header
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BackpropError(
            f"the trace is not valid JSON ({error.msg} at line {error.lineno}); "
            "export it again with trace_to_json"
        ) from None
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
        raise BackpropError(
            f"this JSON is not a backprop trace (no format {JSON_FORMAT!r}); "
            "export it again with trace_to_json"
        )
    if data.get("version") != JSON_VERSION:
        raise BackpropError(
            f"trace version {data.get('version')!r} is not supported; this engine "
            f"reads version {JSON_VERSION}"
        )

    # Rebuild the dataclasses
    return Trace(
        steps=tuple(_step_from_json(item) for item in data["steps"]),
        names=tuple(data["names"]),
        kinds=tuple(data["kinds"]),
        dims=tuple(int(d) for d in data["dims"]),
        param_counts=tuple(int(p) for p in data["param_counts"]),
        param_labels=tuple(tuple(labels) for labels in data["param_labels"]),
        x=_array_from_json(data["x"]),
        y=_array_from_json(data["y"]),
        loss_name=data["loss_name"],
        loss=float(data["loss"]),
        gradients=tuple(_array_from_json(g) for g in data["gradients"]),
        costs={order: _cost_from_json(c) for order, c in data["costs"].items()},
    )
