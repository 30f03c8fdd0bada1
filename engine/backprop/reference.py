"""The same networks written with torch operations, for autograd to check.

Nothing in the chain of Jacobians uses this module: it exists so that the
tests and the page can set the engine's gradients beside
``torch.autograd``'s, in float64. Each layer becomes a function
``f(theta, x)`` of its parameter vector (in the engine's column-major vec
convention) and its input, so that autograd's derivatives come out in the
same order as the engine's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.backprop.errors import SpecError
from engine.backprop.layers import Activation, Conv1D, Dense, Layer, Softmax
from engine.backprop.losses import PROBABILITY_FLOOR, CrossEntropy, Loss, SquaredError
from engine.backprop.network import Network

TorchFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_TORCH_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    # torch's softplus turns linear above a threshold; logaddexp does not
    "softplus": lambda z: torch.logaddexp(torch.zeros_like(z), z),
    "identity": lambda z: z,
}


def torch_layer(layer: Layer) -> TorchFunction:
    """``f(theta, x)`` of a layer, with torch operations.

    Parameters
    ----------
    layer : Layer
        An engine layer; only its kind and shapes are read.

    Returns
    -------
    callable
        Takes ``theta``, shape ``(p,)``, and ``x``, shape ``(n,)``, both
        float64 tensors; returns ``a``, shape ``(m,)``.
    """
    # Dense: undo the column-major vec, W[i, j] = theta[j * m + i]
    if isinstance(layer, Dense):
        m, n = layer.weight.shape

        def dense(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            weight = theta[: m * n].reshape(n, m).T
            return weight @ x + theta[m * n :]

        return dense

    # Convolution: kernels flattened in C order, then biases
    if isinstance(layer, Conv1D):
        shape = layer.weight.shape
        size = layer.weight.size

        def conv(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            kernels = theta[:size].reshape(shape)
            signal = x.reshape(1, layer.in_channels, layer.length)
            out = torch.nn.functional.conv1d(signal, kernels, theta[size:])
            return out.reshape(-1)

        return conv

    # Parameter-free layers ignore theta
    if isinstance(layer, Activation):
        function = _TORCH_ACTIVATIONS[layer.function]
        return lambda theta, x: function(x)
    if isinstance(layer, Softmax):
        return lambda theta, x: torch.softmax(x, dim=-1)
    raise SpecError(f"no torch version of {type(layer).__name__}; add one here")


def torch_loss(loss: Loss) -> TorchFunction:
    """``L(a, y)`` with torch operations, for one example of shape ``(m,)``."""
    # Squared error
    if isinstance(loss, SquaredError):
        return lambda a, y: 0.5 * torch.sum((a - y) ** 2)

    # Cross-entropy, clamped as the engine clamps
    if isinstance(loss, CrossEntropy):

        def cross_entropy(a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if a.numel() > 1:
                return -torch.sum(y * torch.log(torch.clamp(a, min=PROBABILITY_FLOOR)))
            log_p = torch.log(torch.clamp(a, min=PROBABILITY_FLOOR))
            log_q = torch.log(torch.clamp(1.0 - a, min=PROBABILITY_FLOOR))
            return -torch.sum(y * log_p + (1.0 - y) * log_q)

        return cross_entropy
    raise SpecError(f"no torch version of {type(loss).__name__}; add one here")


@dataclass(frozen=True)
class AutogradResult:
    """Loss and gradients from ``torch.autograd``.

    Attributes
    ----------
    loss : float
        Loss of the example.
    gradients : tuple of numpy.ndarray
        ``dL/dtheta_l`` per layer, shape ``(p_l,)``, column-major vec.
    """

    loss: float
    gradients: tuple[np.ndarray, ...]


def autograd_gradients(
    network: Network, x: np.ndarray, y: np.ndarray
) -> AutogradResult:
    """Loss and parameter gradients of one example by ``torch.autograd``.

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
    AutogradResult
    """
    # Leaf tensors for every layer's parameters
    thetas = [
        torch.tensor(layer.get_params(), dtype=torch.float64, requires_grad=True)
        for layer in network.layers
    ]

    # Forward with torch operations, then backward
    a = torch.tensor(np.asarray(x, dtype=np.float64).reshape(-1))
    for layer, theta in zip(network.layers, thetas, strict=True):
        a = torch_layer(layer)(theta, a)
    target = torch.tensor(np.asarray(y, dtype=np.float64).reshape(-1))
    loss = torch_loss(network.loss)(a, target)
    loss.backward()

    # Gradients as numpy, zeros where a layer does not touch the loss
    gradients = tuple(
        np.zeros(theta.numel()) if theta.grad is None else theta.grad.numpy().copy()
        for theta in thetas
    )
    return AutogradResult(float(loss.detach()), gradients)


@dataclass(frozen=True)
class GradientComparison:
    """Differences between two sets of gradients.

    The relative difference of a layer is its largest absolute difference
    divided by the largest absolute reference entry of the whole network
    (so that entries near zero do not blow it up).

    Attributes
    ----------
    names : tuple of str
        Layer names.
    max_abs : tuple of float
        Largest absolute difference per layer (0 for none).
    max_rel : tuple of float
        Per-layer relative difference, as above.
    overall_abs, overall_rel : float
        The same over all parameters.
    """

    names: tuple[str, ...]
    max_abs: tuple[float, ...]
    max_rel: tuple[float, ...]
    overall_abs: float
    overall_rel: float


def compare_gradients(
    names: Sequence[str],
    gradients: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
) -> GradientComparison:
    """Compare gradients with reference gradients, layer by layer.

    Parameters
    ----------
    names : sequence of str
        Layer names.
    gradients, reference : sequence of numpy.ndarray
        One vector per layer each, matching shapes.

    Returns
    -------
    GradientComparison
    """
    # The scale: largest reference entry, floored to avoid 0 / 0
    flat = [np.asarray(ref, dtype=np.float64).reshape(-1) for ref in reference]
    scale = max((float(np.max(np.abs(ref))) for ref in flat if ref.size), default=0.0)
    scale = max(scale, np.finfo(np.float64).tiny)

    # Largest absolute difference per layer
    max_abs = tuple(
        float(np.max(np.abs(np.asarray(g).reshape(-1) - ref))) if ref.size else 0.0
        for g, ref in zip(gradients, flat, strict=True)
    )
    overall = max(max_abs, default=0.0)
    return GradientComparison(
        names=tuple(names),
        max_abs=max_abs,
        max_rel=tuple(value / scale for value in max_abs),
        overall_abs=overall,
        overall_rel=overall / scale,
    )
