"""The gradient as a product of Jacobians, its cost, and a step-by-step trace.

For a network ``a_l = f_l(theta_l, a_{l-1})``, ``l = 1 .. L``, followed by a
scalar loss ``L(a_L, y)``, the gradient with respect to layer ``l``'s
parameters is the matrix product

``dL/dtheta_l = dL/da_L . da_L/da_{L-1} ... da_{l+1}/da_l . da_l/dtheta_l``

of shapes ``(1, n_L) (n_L, n_{L-1}) ... (n_{l+1}, n_l) (n_l, p_l)``. The
product is associative, but the order matters for its cost:

- reverse order starts from the loss: ``v = dL/da_L`` is a row, and every
  step is a vector-Jacobian product that keeps it a row
  (backpropagation);
- forward order starts at the input side: ``T = da_l/dtheta`` has one
  column per parameter, and every step is a Jacobian-Jacobian product
  that carries all those columns up to the loss.

Jacobians are multiplied as dense matrices, as the chain is written; the
counts below do not exploit the diagonal Jacobians of activations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from engine.backprop.errors import SpecError
from engine.backprop.network import Network

#: The two orders of multiplication.
ORDERS: tuple[str, ...] = ("reverse", "forward")


@dataclass(frozen=True)
class Product:
    """One matrix product ``left @ right`` counted in a chain.

    Attributes
    ----------
    left, right : str
        Plain-text names of the factors, such as ``"dL/da_3"``.
    left_shape, right_shape : tuple of int
        ``(r, k)`` and ``(k, c)``.
    """

    left: str
    right: str
    left_shape: tuple[int, int]
    right_shape: tuple[int, int]

    @property
    def result_shape(self) -> tuple[int, int]:
        """``(r, c)``."""
        return (self.left_shape[0], self.right_shape[1])

    @property
    def multiplications(self) -> int:
        """Scalar multiplications of the textbook product, ``r k c``."""
        return self.left_shape[0] * self.left_shape[1] * self.right_shape[1]


@dataclass(frozen=True)
class ChainCost:
    """The products one order of multiplication performs.

    Attributes
    ----------
    order : str
        ``"reverse"`` or ``"forward"``.
    products : tuple of Product
        In the order they are computed.
    """

    order: str
    products: tuple[Product, ...] = field(default_factory=tuple)

    @property
    def multiplications(self) -> int:
        """Total scalar multiplications."""
        return sum(product.multiplications for product in self.products)

    @property
    def largest_intermediate(self) -> int:
        """Entries of the largest product computed (0 when none)."""
        sizes = [p.result_shape[0] * p.result_shape[1] for p in self.products]
        return max(sizes, default=0)


@dataclass(frozen=True)
class ChainResult:
    """Gradients from one order of multiplication, with its cost.

    Attributes
    ----------
    gradients : tuple of numpy.ndarray
        ``dL/dtheta_l`` per layer, shape ``(p_l,)`` (empty for layers
        without parameters), in the column-major vec convention.
    loss : float
        The loss of the example.
    cost : ChainCost
        The products performed.
    """

    gradients: tuple[np.ndarray, ...]
    loss: float
    cost: ChainCost


def _multiply(
    left: np.ndarray,
    right: np.ndarray,
    names: tuple[str, str],
    products: list[Product],
) -> np.ndarray:
    """Return ``left @ right`` and record the product."""
    # Record the shapes, then multiply
    products.append(Product(names[0], names[1], left.shape, right.shape))
    return left @ right


def _lowest_trainable(network: Network) -> int | None:
    """0-based index of the first layer with parameters, or None."""
    # Layers below it never need a Jacobian
    for i, layer in enumerate(network.layers):
        if layer.n_params:
            return i
    return None


def chain_gradients(
    network: Network, x: np.ndarray, y: np.ndarray, order: str = "reverse"
) -> ChainResult:
    """Gradient of one example's loss from the product of Jacobians.

    Parameters
    ----------
    network : Network
        The network and its loss.
    x : numpy.ndarray
        One input, shape ``(n_0,)``.
    y : numpy.ndarray
        Its target, shape ``(n_L,)``.
    order : str
        ``"reverse"`` (vector-Jacobian products from the loss) or
        ``"forward"`` (Jacobian-Jacobian products from the input side).

    Returns
    -------
    ChainResult
        Gradients per layer, the loss and the products performed.
    """
    # Forward pass and the loss Jacobian, shape (1, n_L)
    if order not in ORDERS:
        raise SpecError(f"unknown order {order!r}; choose one of " + ", ".join(ORDERS))
    acts = network.forward(np.asarray(x, dtype=np.float64).reshape(-1))
    loss = float(network.loss.value(acts[-1], y))
    loss_row = network.loss.jacobian(acts[-1], y)
    n_layers = len(network.layers)
    gradients = [np.empty(0) for _ in range(n_layers)]
    products: list[Product] = []
    lowest = _lowest_trainable(network)

    # No parameters: nothing to multiply
    if lowest is None:
        return ChainResult(tuple(gradients), loss, ChainCost(order))

    # Reverse: v = dL/da_l, one row, from the loss down
    if order == "reverse":
        row, row_name = loss_row, f"dL/da_{n_layers}"
        for i in range(n_layers - 1, lowest - 1, -1):
            layer, pos = network.layers[i], i + 1
            if layer.n_params:
                names = (row_name, f"da_{pos}/dtheta_{pos}")
                grad = _multiply(row, layer.jacobian_params(acts[i]), names, products)
                gradients[i] = grad[0]
            if i > lowest:
                names = (row_name, f"da_{pos}/da_{pos - 1}")
                row = _multiply(row, layer.jacobian_input(acts[i]), names, products)
                row_name = f"dL/da_{pos - 1}"
        return ChainResult(tuple(gradients), loss, ChainCost(order, tuple(products)))

    # Forward: T = da_l/d(theta_lowest .. theta_l), one column per parameter
    tangent = np.zeros((network.dims[lowest + 1], 0))
    owners: list[int] = []
    tangent_name = ""
    for i in range(lowest, n_layers):
        layer, pos = network.layers[i], i + 1
        if tangent.shape[1]:
            names = (f"da_{pos}/da_{pos - 1}", tangent_name)
            tangent = _multiply(layer.jacobian_input(acts[i]), tangent, names, products)
        if layer.n_params:
            tangent = np.hstack([tangent, layer.jacobian_params(acts[i])])
            owners += [i] * layer.n_params
        tangent_name = f"da_{pos}/dtheta"

    # The loss row closes the chain; split the result by layer
    row = _multiply(loss_row, tangent, (f"dL/da_{n_layers}", tangent_name), products)[0]
    owner = np.asarray(owners)
    for i in set(owners):
        gradients[i] = row[owner == i]
    return ChainResult(tuple(gradients), loss, ChainCost(order, tuple(products)))


def chain_costs(network: Network, x: np.ndarray, y: np.ndarray) -> dict[str, ChainCost]:
    """Cost of both orders for one example, by order name."""
    return {order: chain_gradients(network, x, y, order).cost for order in ORDERS}


def cost_summary(costs: Mapping[str, ChainCost], n_params: int) -> str:
    """One sentence comparing the two orders, for a page.

    Parameters
    ----------
    costs : Mapping
        ``{"reverse": ChainCost, "forward": ChainCost}``.
    n_params : int
        Total number of parameters of the network.
    """
    # Totals and their ratio
    reverse = costs["reverse"].multiplications
    forward = costs["forward"].multiplications
    if reverse == 0:
        return "The network has no parameters, so there is no chain to multiply."
    ratio = forward / reverse

    # The reason, in one sentence
    return (
        f"Reverse order takes {reverse:,} scalar multiplications and forward "
        f"order {forward:,} ({ratio:.1f} times as many): the loss is a "
        "scalar, so starting from it every intermediate is a single row, "
        "while starting from the input carries one column per parameter "
        f"({n_params:,} of them) through every later Jacobian."
    )


def batch_gradients(
    network: Network, inputs: np.ndarray, targets: np.ndarray, chunk: int = 256
) -> tuple[float, list[np.ndarray]]:
    """Mean loss and mean gradients over a batch, by the reverse chain.

    Each example's gradient is the product of its own Jacobians, built for
    ``chunk`` examples at a time as stacks of matrices.

    Parameters
    ----------
    network : Network
        The network and its loss.
    inputs : numpy.ndarray
        Shape ``(B, n_0)``.
    targets : numpy.ndarray
        Shape ``(B, n_L)``.
    chunk : int
        Examples per stack, bounding memory to about
        ``chunk * max_l(n_l * p_l)`` floats.

    Returns
    -------
    loss : float
        Mean loss.
    gradients : list of numpy.ndarray
        Mean ``dL/dtheta_l`` per layer, shape ``(p_l,)``.
    """
    # Sums of losses and gradients
    inputs = np.asarray(inputs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64).reshape(len(inputs), -1)
    totals = [np.zeros(count) for count in network.param_counts]
    loss_total = 0.0
    lowest = _lowest_trainable(network)

    # One stack of examples at a time: rows (b, 1, n_l) times (b, n_l, .)
    for start in range(0, len(inputs), chunk):
        acts = network.forward(inputs[start : start + chunk])
        part = targets[start : start + chunk]
        loss_total += float(np.sum(network.loss.value(acts[-1], part)))
        if lowest is None:
            continue
        row = network.loss.jacobian(acts[-1], part)
        for i in range(len(network.layers) - 1, lowest - 1, -1):
            layer = network.layers[i]
            if layer.n_params:
                totals[i] += (row @ layer.jacobian_params(acts[i])).sum(axis=(0, 1))
            if i > lowest:
                row = row @ layer.jacobian_input(acts[i])

    # Means
    count = max(len(inputs), 1)
    return loss_total / count, [total / count for total in totals]
