"""A recorded forward and backward pass, step by step, for a page to show.

The forward pass has one step per layer and one for the loss. The backward
pass starts with the loss Jacobian and then, layer by layer from the top,
multiplies the running row ``dL/da_l`` by the layer's parameter Jacobian
(a gradient, branching off) and by its input Jacobian (the next running
row). Layers below the lowest one with parameters are not visited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from engine.backprop.chain import ORDERS, ChainCost, chain_gradients
from engine.backprop.network import Network

#: Step kinds.
FORWARD, BACKWARD = "forward", "backward"


def partial(numerator: str, denominator: str) -> str:
    r"""LaTeX ``\frac{\partial num}{\partial den}``."""
    return rf"\frac{{\partial {numerator}}}{{\partial {denominator}}}"


@dataclass(frozen=True)
class Step:
    """One step of a trace.

    Attributes
    ----------
    kind : str
        ``"forward"`` or ``"backward"``.
    role : str
        ``"layer"`` (a forward layer), ``"loss"`` (loss value or loss
        Jacobian), ``"parameters"`` (multiply by a parameter Jacobian) or
        ``"input"`` (multiply by an input Jacobian).
    layer : str
        Layer name, or ``"loss"``.
    layer_index : int
        ``l`` in ``1 .. L``; ``L + 1`` for the loss.
    title : str
        One line of plain text saying what happens.
    equation : str
        LaTeX: the layer's equation (forward) or the Jacobian's formula
        (backward).
    inputs, outputs : dict of str to numpy.ndarray
        Vectors going in and coming out, keyed by plain names such as
        ``"a_1"`` or ``"dL/da_2"``.
    jacobian : numpy.ndarray or None
        The Jacobian multiplied in this step, shape ``(rows, cols)``;
        ``None`` on the forward pass.
    jacobian_label : str
        LaTeX name of the Jacobian.
    row_axis, column_axis : str
        What the Jacobian's rows and columns index, in plain text.
    column_labels : tuple of str
        Names of the Jacobian's columns (parameters in vec order), or empty
        when plain indices do.
    running : numpy.ndarray or None
        The product of all Jacobians so far, ending with this one, shape
        ``(1, cols)``; ``None`` on the forward pass.
    running_label : str
        LaTeX name of the running product.
    chain : str
        LaTeX of the running product written as its factors.
    """

    kind: str
    role: str
    layer: str
    layer_index: int
    title: str
    equation: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    jacobian: np.ndarray | None = None
    jacobian_label: str = ""
    row_axis: str = ""
    column_axis: str = ""
    column_labels: tuple[str, ...] = ()
    running: np.ndarray | None = None
    running_label: str = ""
    chain: str = ""

    @property
    def jacobian_shape(self) -> tuple[int, ...] | None:
        """Shape of the Jacobian, or None."""
        return None if self.jacobian is None else tuple(self.jacobian.shape)

    @property
    def running_shape(self) -> tuple[int, ...] | None:
        """Shape of the running product, or None."""
        return None if self.running is None else tuple(self.running.shape)


@dataclass(frozen=True)
class Trace:
    """A forward and a backward pass of one example.

    Attributes
    ----------
    steps : tuple of Step
        Forward steps, then backward steps.
    names, kinds : tuple of str
        Layer names and kinds, input side first.
    dims : tuple of int
        Widths ``(n_0, ..., n_L)``.
    param_counts : tuple of int
        ``(p_1, ..., p_L)``.
    param_labels : tuple of tuple of str
        Names of each layer's parameters, in vec order.
    x, y : numpy.ndarray
        The input, shape ``(n_0,)``, and target, shape ``(n_L,)``.
    loss_name : str
        ``"squared_error"`` or ``"cross_entropy"``.
    loss : float
        The loss of the example.
    gradients : tuple of numpy.ndarray
        ``dL/dtheta_l`` from the backward steps, shape ``(p_l,)``.
    costs : Mapping of str to ChainCost
        ``{"reverse": ..., "forward": ...}`` for this network.
    """

    steps: tuple[Step, ...]
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    dims: tuple[int, ...]
    param_counts: tuple[int, ...]
    param_labels: tuple[tuple[str, ...], ...]
    x: np.ndarray
    y: np.ndarray
    loss_name: str
    loss: float
    gradients: tuple[np.ndarray, ...]
    costs: Mapping[str, ChainCost]

    @property
    def n_steps(self) -> int:
        """Number of steps."""
        return len(self.steps)

    @property
    def forward_steps(self) -> tuple[Step, ...]:
        """The forward steps, in order."""
        return tuple(step for step in self.steps if step.kind == FORWARD)

    @property
    def backward_steps(self) -> tuple[Step, ...]:
        """The backward steps, in order."""
        return tuple(step for step in self.steps if step.kind == BACKWARD)

    @property
    def gradient_vector(self) -> np.ndarray:
        """All gradients in one vector, shape ``(sum p_l,)``."""
        return np.concatenate([np.empty(0), *self.gradients])


def _forward_steps(
    network: Network, acts: list[np.ndarray], y: np.ndarray
) -> list[Step]:
    """One step per layer, then the loss."""
    # Layers
    n_layers = len(network.layers)
    steps = []
    for i, layer in enumerate(network.layers):
        pos = i + 1
        steps.append(
            Step(
                kind=FORWARD,
                role="layer",
                layer=layer.name,
                layer_index=pos,
                title=(
                    f"Forward, layer {pos} of {n_layers} ({layer.name}): "
                    f"{layer.input_dim} values in, {layer.output_dim} out"
                ),
                equation=layer.equation(pos),
                inputs={f"a_{pos - 1}": acts[i]},
                outputs={f"a_{pos}": acts[pos]},
            )
        )

    # Loss
    loss = float(network.loss.value(acts[-1], y))
    steps.append(
        Step(
            kind=FORWARD,
            role="loss",
            layer="loss",
            layer_index=n_layers + 1,
            title=f"Forward, the loss ({network.loss.name.replace('_', ' ')})",
            equation=network.loss.equation(n_layers, network.output_dim),
            inputs={f"a_{n_layers}": acts[-1], "y": y},
            outputs={"L": np.array([loss])},
        )
    )
    return steps


def build_trace(network: Network, x: np.ndarray, y: np.ndarray) -> Trace:
    """Record the forward and backward pass of one example.

    Parameters
    ----------
    network : Network
        The network and its loss.
    x : numpy.ndarray
        One input, shape ``(n_0,)``.
    y : numpy.ndarray
        Its target, shape ``(n_L,)``.

    Returns
    -------
    Trace
        Steps in order, gradients and the cost of both orders.
    """
    # Forward pass
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    acts = network.forward(x)
    steps = _forward_steps(network, acts, y)
    n_layers = len(network.layers)
    top = f"a_{{{n_layers}}}"

    # Backward: the loss Jacobian starts the running row
    row = network.loss.jacobian(acts[-1], y)
    factors = [partial("L", top)]
    steps.append(
        Step(
            kind=BACKWARD,
            role="loss",
            layer="loss",
            layer_index=n_layers + 1,
            title="Backward: the loss Jacobian starts the chain",
            equation=network.loss.jacobian_formula(n_layers, network.output_dim),
            inputs={f"a_{n_layers}": acts[-1], "y": y},
            outputs={f"dL/da_{n_layers}": row[0]},
            jacobian=row,
            jacobian_label=partial("L", top),
            row_axis="L (one scalar)",
            column_axis=f"a_{n_layers} (network output)",
            running=row,
            running_label=partial("L", top),
            chain=factors[0],
        )
    )

    # Each layer from the top: parameter Jacobian, then input Jacobian
    gradients = [np.empty(0) for _ in network.layers]
    lowest = next((i for i, lay in enumerate(network.layers) if lay.n_params), None)
    stop = n_layers if lowest is None else lowest
    for i in range(n_layers - 1, stop - 1, -1):
        layer, pos = network.layers[i], i + 1
        here, below = f"a_{{{pos}}}", f"a_{{{pos - 1}}}"
        if layer.n_params:
            jac = layer.jacobian_params(acts[i])
            grad = row @ jac
            gradients[i] = grad[0]
            theta = rf"\theta_{{{pos}}}"
            steps.append(
                Step(
                    kind=BACKWARD,
                    role="parameters",
                    layer=layer.name,
                    layer_index=pos,
                    title=(
                        f"Backward, layer {pos} ({layer.name}): multiply by the "
                        "parameter Jacobian to get this layer's gradient"
                    ),
                    equation=layer.jacobian_params_formula(pos),
                    inputs={f"dL/da_{pos}": row[0], f"a_{pos - 1}": acts[i]},
                    outputs={f"dL/dtheta_{pos}": grad[0]},
                    jacobian=jac,
                    jacobian_label=partial(here, theta),
                    row_axis=f"a_{pos} ({layer.output_dim} outputs)",
                    column_axis=f"theta_{pos} ({layer.n_params} parameters, vec order)",
                    column_labels=tuple(layer.param_labels()),
                    running=grad,
                    running_label=partial("L", theta),
                    chain=r"\,".join([*factors, partial(here, theta)]),
                )
            )
        if i > stop:
            jac = layer.jacobian_input(acts[i])
            incoming, row = row, row @ jac
            factors.append(partial(here, below))
            steps.append(
                Step(
                    kind=BACKWARD,
                    role="input",
                    layer=layer.name,
                    layer_index=pos,
                    title=(
                        f"Backward, layer {pos} ({layer.name}): multiply by the "
                        "input Jacobian to pass the gradient down"
                    ),
                    equation=layer.jacobian_input_formula(pos),
                    inputs={f"dL/da_{pos}": incoming[0], f"a_{pos - 1}": acts[i]},
                    outputs={f"dL/da_{pos - 1}": row[0]},
                    jacobian=jac,
                    jacobian_label=partial(here, below),
                    row_axis=f"a_{pos} ({layer.output_dim} outputs)",
                    column_axis=f"a_{pos - 1} ({layer.input_dim} inputs)",
                    running=row,
                    running_label=partial("L", below),
                    chain=r"\,".join(factors),
                )
            )

    # The cost of both orders, from the same example
    costs = {order: chain_gradients(network, x, y, order).cost for order in ORDERS}
    return Trace(
        steps=tuple(steps),
        names=network.names,
        kinds=tuple(layer.kind for layer in network.layers),
        dims=network.dims,
        param_counts=network.param_counts,
        param_labels=tuple(tuple(layer.param_labels()) for layer in network.layers),
        x=x,
        y=y,
        loss_name=network.loss.name,
        loss=float(network.loss.value(acts[-1], y)),
        gradients=tuple(gradients),
        costs=costs,
    )
