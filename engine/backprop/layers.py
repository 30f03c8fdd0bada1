"""Layers as vector functions, with Jacobians written from their formulas.

Each layer maps a vector ``a_{l-1}`` of length ``n`` to a vector ``a_l`` of
length ``m``: ``a_l = f_l(theta_l, a_{l-1})``. Every layer offers

- ``forward(x)``: ``a_l``, shape ``(m,)`` for ``x`` of shape ``(n,)``, or
  ``(B, m)`` for a batch ``x`` of shape ``(B, n)``;
- ``jacobian_input(x)``: ``d a_l / d a_{l-1}``, shape ``(m, n)`` or
  ``(B, m, n)``;
- ``jacobian_params(x)``: ``d a_l / d theta_l``, shape ``(m, p)`` or
  ``(B, m, p)``, with ``p`` the number of parameters (0 for activations).

Vec convention: parameters are vectorised column-major. ``vec(W)`` stacks
the columns of ``W``, so entry ``W[i, j]`` of an ``(m, n)`` matrix sits at
position ``j * m + i``, and ``d(W x) / d vec(W) = x^T kron I_m``. A layer's
parameter vector is ``theta = [vec(W); b]``.

No Jacobian here comes from automatic differentiation: the tests compare
them with ``torch.autograd`` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from engine.backprop.errors import SpecError

#: Names of the element-wise activations, in the order a page lists them.
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "sigmoid", "softplus", "identity")


def _as_batch(x: np.ndarray, width: int, what: str) -> tuple[np.ndarray, bool]:
    """Return ``x`` as a float64 batch of shape ``(B, width)``.

    Parameters
    ----------
    x : numpy.ndarray
        One vector, shape ``(width,)``, or a batch, shape ``(B, width)``.
    width : int
        The length each vector must have.
    what : str
        The layer's name, for the error message.

    Returns
    -------
    batch : numpy.ndarray
        Shape ``(B, width)``.
    single : bool
        Whether ``x`` was one vector, so that results drop the batch axis.
    """
    # Bring x to two dimensions
    arr = np.asarray(x, dtype=np.float64)
    single = arr.ndim == 1
    batch = arr[None, :] if single else arr

    # Check the width
    if batch.ndim != 2 or batch.shape[1] != width:
        raise SpecError(
            f"{what} takes vectors of length {width}, got an array of shape "
            f"{arr.shape}; pass shape ({width},) or (batch, {width})"
        )
    return batch, single


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-z))``, without overflow.

    Parameters
    ----------
    z : numpy.ndarray
        Any shape.

    Returns
    -------
    numpy.ndarray
        Same shape as ``z``, values in ``[0, 1]``.
    """
    # exp(-log(1 + exp(-z))) is 1 / (1 + exp(-z)) with a stable log
    return np.exp(-np.logaddexp(0.0, -z))


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def _relu_prime(z: np.ndarray) -> np.ndarray:
    # The derivative at 0 is taken as 0, as torch does
    return (z > 0.0).astype(np.float64)


def _tanh_prime(z: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(z) ** 2


def _sigmoid_prime(z: np.ndarray) -> np.ndarray:
    s = sigmoid(z)
    return s * (1.0 - s)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _identity(z: np.ndarray) -> np.ndarray:
    return z.copy()


def _ones(z: np.ndarray) -> np.ndarray:
    return np.ones_like(z)


_Elementwise = Callable[[np.ndarray], np.ndarray]

#: For each activation: the function, its derivative, and both in LaTeX.
_ACTIVATION_TABLE: dict[str, tuple[_Elementwise, _Elementwise, str, str]] = {
    "relu": (_relu, _relu_prime, r"\max(0, {x})", r"\mathbb{{1}}[{x} > 0]"),
    "tanh": (np.tanh, _tanh_prime, r"\tanh({x})", r"1 - \tanh^2({x})"),
    "sigmoid": (
        sigmoid,
        _sigmoid_prime,
        r"\sigma({x})",
        r"\sigma({x})\,(1 - \sigma({x}))",
    ),
    "softplus": (_softplus, sigmoid, r"\log(1 + e^{{{x}}})", r"\sigma({x})"),
    "identity": (_identity, _ones, r"{x}", r"1"),
}


class Layer(ABC):
    """A vector function ``a_l = f(theta, a_{l-1})`` with its two Jacobians.

    Subclasses implement the batched ``_forward``, ``_jacobian_input`` and,
    when they have parameters, ``_jacobian_params``; the public methods
    accept one vector or a batch.

    Attributes
    ----------
    name : str
        Unique name in its network, such as ``"dense_1"``.
    input_dim : int
        Length ``n`` of the input vector.
    """

    #: Short kind name, as in a network specification.
    kind: ClassVar[str] = "layer"

    def __init__(self, input_dim: int, name: str) -> None:
        self.input_dim = int(input_dim)
        self.name = name

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Length ``m`` of the output vector."""

    @property
    def n_params(self) -> int:
        """Number ``p`` of parameters, the length of ``theta``."""
        return int(self.get_params().size)

    def get_params(self) -> np.ndarray:
        """Return a copy of the parameter vector ``theta``, shape ``(p,)``."""
        return np.empty(0, dtype=np.float64)

    def set_params(self, theta: np.ndarray) -> None:
        """Set the parameters from a vector ``theta`` of shape ``(p,)``."""
        # Only layers without parameters reach this default
        if np.asarray(theta).size != 0:
            raise SpecError(f"{self.name} has no parameters; pass an empty vector")

    def param_labels(self) -> list[str]:
        """Names of the entries of ``theta``, in vec order, 1-based."""
        return []

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the layer.

        Parameters
        ----------
        x : numpy.ndarray
            Shape ``(n,)`` or ``(B, n)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(m,)`` or ``(B, m)``.
        """
        # Evaluate on the batch, then drop the batch axis for one vector
        batch, single = _as_batch(x, self.input_dim, self.name)
        out = self._forward(batch)
        return out[0] if single else out

    def jacobian_input(self, x: np.ndarray) -> np.ndarray:
        """Jacobian ``d a_l / d a_{l-1}`` at ``x``.

        Parameters
        ----------
        x : numpy.ndarray
            Shape ``(n,)`` or ``(B, n)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(m, n)`` or ``(B, m, n)``.
        """
        # Evaluate on the batch, then drop the batch axis for one vector
        batch, single = _as_batch(x, self.input_dim, self.name)
        jac = self._jacobian_input(batch)
        return jac[0] if single else jac

    def jacobian_params(self, x: np.ndarray) -> np.ndarray:
        """Jacobian ``d a_l / d theta_l`` at ``x`` (column-major vec).

        Parameters
        ----------
        x : numpy.ndarray
            Shape ``(n,)`` or ``(B, n)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(m, p)`` or ``(B, m, p)``; ``p`` is 0 for layers without
            parameters.
        """
        # Evaluate on the batch, then drop the batch axis for one vector
        batch, single = _as_batch(x, self.input_dim, self.name)
        jac = self._jacobian_params(batch)
        return jac[0] if single else jac

    @abstractmethod
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """Batched forward pass, ``(B, n) -> (B, m)``."""

    @abstractmethod
    def _jacobian_input(self, batch: np.ndarray) -> np.ndarray:
        """Batched input Jacobian, ``(B, n) -> (B, m, n)``."""

    def _jacobian_params(self, batch: np.ndarray) -> np.ndarray:
        """Batched parameter Jacobian, ``(B, n) -> (B, m, p)``."""
        return np.zeros((batch.shape[0], self.output_dim, 0))

    @abstractmethod
    def equation(self, index: int) -> str:
        """LaTeX of ``a_l = f(a_{l-1})`` for layer number ``index``."""

    @abstractmethod
    def jacobian_input_formula(self, index: int) -> str:
        """LaTeX of the input Jacobian's formula for layer ``index``."""

    def jacobian_params_formula(self, index: int) -> str:
        """LaTeX of the parameter Jacobian's formula for layer ``index``."""
        return ""

    def copy(self) -> Layer:
        """Return an independent copy (parameters are copied)."""
        # Same class and attributes, every array copied
        clone = object.__new__(type(self))
        clone.__dict__ = {
            key: value.copy() if isinstance(value, np.ndarray) else value
            for key, value in self.__dict__.items()
        }
        return clone

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, "
            f"{self.input_dim}->{self.output_dim}, p={self.n_params})"
        )


class Dense(Layer):
    """Affine layer ``a_l = W a_{l-1} + b``.

    Parameters
    ----------
    weight : numpy.ndarray
        ``W``, shape ``(m, n)``.
    bias : numpy.ndarray
        ``b``, shape ``(m,)``.
    name : str
        Layer name.

    Notes
    -----
    With ``theta = [vec(W); b]`` and column-major ``vec``, the Jacobians are

    - input: ``W``, shape ``(m, n)``;
    - parameters: ``[x^T kron I_m, I_m]``, shape ``(m, m n + m)``, where
      ``x^T kron I_m`` is built with ``numpy.kron``.
    """

    kind: ClassVar[str] = "dense"

    def __init__(
        self, weight: np.ndarray, bias: np.ndarray, name: str = "dense"
    ) -> None:
        # Store float64 copies and check that the shapes agree
        weight = np.array(weight, dtype=np.float64)
        bias = np.array(bias, dtype=np.float64).reshape(-1)
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise SpecError(
                f"{name}: weight must be (m, n) and bias (m,), got {weight.shape} "
                f"and {bias.shape}; give one bias per output"
            )
        super().__init__(weight.shape[1], name)
        self.weight = weight
        self.bias = bias

    @property
    def output_dim(self) -> int:
        return int(self.weight.shape[0])

    def get_params(self) -> np.ndarray:
        # vec(W) stacks columns (Fortran order), then the bias follows
        return np.concatenate([self.weight.ravel(order="F"), self.bias])

    def set_params(self, theta: np.ndarray) -> None:
        # Check the length
        theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        m, n = self.weight.shape
        if theta.size != m * n + m:
            raise SpecError(
                f"{self.name} has {m * n + m} parameters, got {theta.size}; "
                "pass [vec(W); b] with vec column-major"
            )

        # Undo the column-major vec
        self.weight = theta[: m * n].reshape((m, n), order="F").copy()
        self.bias = theta[m * n :].copy()

    def param_labels(self) -> list[str]:
        # Column-major: the row index runs fastest
        m, n = self.weight.shape
        labels = [f"W[{i + 1},{j + 1}]" for j in range(n) for i in range(m)]
        return labels + [f"b[{i + 1}]" for i in range(m)]

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return batch @ self.weight.T + self.bias

    def _jacobian_input(self, batch: np.ndarray) -> np.ndarray:
        # The same W for every row of the batch
        return np.broadcast_to(self.weight, (batch.shape[0], *self.weight.shape)).copy()

    def _jacobian_params(self, batch: np.ndarray) -> np.ndarray:
        # Weight block x^T kron I_m for every row at once: kron of (B, 1, n)
        # with (1, m, m) has entry [b, i, j * m + k] = x[b, j] * I[i, k]
        m = self.output_dim
        eye = np.eye(m)
        weight_block = np.kron(batch[:, None, :], eye[None, :, :])

        # Bias block I_m, then both side by side
        bias_block = np.broadcast_to(eye, (batch.shape[0], m, m))
        return np.concatenate([weight_block, bias_block], axis=2)

    def equation(self, index: int) -> str:
        return rf"a_{{{index}}} = W_{{{index}}}\, a_{{{index - 1}}} + b_{{{index}}}"

    def jacobian_input_formula(self, index: int) -> str:
        return (
            rf"\frac{{\partial a_{{{index}}}}}{{\partial a_{{{index - 1}}}}}"
            rf" = W_{{{index}}}"
        )

    def jacobian_params_formula(self, index: int) -> str:
        m = self.output_dim
        return (
            rf"\frac{{\partial a_{{{index}}}}}{{\partial \theta_{{{index}}}}}"
            rf" = \left[\, a_{{{index - 1}}}^\top \otimes I_{{{m}}} \;\middle|\;"
            rf" I_{{{m}}} \,\right]"
        )


class Activation(Layer):
    """Element-wise activation ``a_l = s(a_{l-1})``.

    Parameters
    ----------
    function : str
        One of ``ACTIVATIONS``: relu, tanh, sigmoid, softplus, identity.
    dim : int
        Length of input and output.
    name : str
        Layer name.

    Notes
    -----
    The input Jacobian is ``diag(s'(x))``, shape ``(n, n)``; there are no
    parameters. ReLU's derivative at 0 is taken as 0.
    """

    kind: ClassVar[str] = "activation"

    def __init__(self, function: str, dim: int, name: str = "activation") -> None:
        # Look the function up
        if function not in _ACTIVATION_TABLE:
            raise SpecError(
                f"{name}: unknown activation {function!r}; choose one of "
                + ", ".join(ACTIVATIONS)
            )
        super().__init__(dim, name)
        self.function = function

    @property
    def output_dim(self) -> int:
        return self.input_dim

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return _ACTIVATION_TABLE[self.function][0](batch)

    def _jacobian_input(self, batch: np.ndarray) -> np.ndarray:
        # Derivatives on the diagonal of an (n, n) matrix per row
        slope = _ACTIVATION_TABLE[self.function][1](batch)
        return slope[:, :, None] * np.eye(self.input_dim)[None, :, :]

    def equation(self, index: int) -> str:
        body = _ACTIVATION_TABLE[self.function][2].format(x=f"a_{{{index - 1}}}")
        return rf"a_{{{index}}} = {body}"

    def jacobian_input_formula(self, index: int) -> str:
        slope = _ACTIVATION_TABLE[self.function][3].format(x=f"a_{{{index - 1}}}")
        return (
            rf"\frac{{\partial a_{{{index}}}}}{{\partial a_{{{index - 1}}}}}"
            rf" = \operatorname{{diag}}\!\left({slope}\right)"
        )


class Softmax(Layer):
    """Softmax ``a_l = exp(x) / sum(exp(x))``.

    Parameters
    ----------
    dim : int
        Length of input and output.
    name : str
        Layer name.

    Notes
    -----
    With ``p = softmax(x)`` the input Jacobian is ``diag(p) - p p^T``, shape
    ``(n, n)``; there are no parameters.
    """

    kind: ClassVar[str] = "softmax"

    def __init__(self, dim: int, name: str = "softmax") -> None:
        super().__init__(dim, name)

    @property
    def output_dim(self) -> int:
        return self.input_dim

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        # Shift by the row maximum so that exp cannot overflow
        shifted = np.exp(batch - batch.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def _jacobian_input(self, batch: np.ndarray) -> np.ndarray:
        # diag(p) - p p^T per row
        p = self._forward(batch)
        eye = np.eye(self.input_dim)[None, :, :]
        return p[:, :, None] * eye - p[:, :, None] * p[:, None, :]

    def equation(self, index: int) -> str:
        return rf"a_{{{index}}} = \operatorname{{softmax}}(a_{{{index - 1}}})"

    def jacobian_input_formula(self, index: int) -> str:
        return (
            rf"\frac{{\partial a_{{{index}}}}}{{\partial a_{{{index - 1}}}}}"
            rf" = \operatorname{{diag}}(a_{{{index}}})"
            rf" - a_{{{index}}} a_{{{index}}}^\top"
        )


class Conv1D(Layer):
    """One-dimensional convolution on a vec'ed multi-channel signal.

    The input vector of length ``C_in * L`` holds channel ``c`` at positions
    ``c * L .. c * L + L - 1``. The layer computes, with stride 1 and no
    padding (cross-correlation, as in deep-learning libraries),

    ``y[o, t] = sum_{c, s} K[o, c, s] x[c, t + s] + b[o]``

    for ``t = 0 .. L_out - 1``, ``L_out = L - k + 1``, and returns the output
    channel-major, ``a_l[o * L_out + t] = y[o, t]``: column-major ``vec`` of
    the ``(L_out, C_out)`` matrix ``Y``.

    Parameters
    ----------
    weight : numpy.ndarray
        Kernels ``K``, shape ``(C_out, C_in, k)``.
    bias : numpy.ndarray
        One bias per output channel, shape ``(C_out,)``.
    length : int
        Signal length ``L`` per input channel.
    name : str
        Layer name.

    Notes
    -----
    Write the patches of the input as ``P`` with ``P[t, c k + s] =
    x[c, t + s]``, shape ``(L_out, C_in k)``, and the kernels as ``K_mat``,
    shape ``(C_in k, C_out)``, column ``o`` being ``K[o]`` flattened. Then
    ``Y = P K_mat + 1 b^T`` and, with ``theta = [vec(K_mat); b]`` (which is
    ``K`` flattened in C order, then ``b``), the parameter Jacobian is
    ``[I_{C_out} kron P, I_{C_out} kron 1_{L_out}]``, shape
    ``(C_out L_out, C_out C_in k + C_out)``, built with ``numpy.kron``. The
    input Jacobian is a ``C_out x C_in`` grid of banded Toeplitz blocks,
    shape ``(C_out L_out, C_in L)``, with ``K[o, c, s]`` at row
    ``o L_out + t`` and column ``c L + t + s``.
    """

    kind: ClassVar[str] = "conv1d"

    def __init__(
        self, weight: np.ndarray, bias: np.ndarray, length: int, name: str = "conv1d"
    ) -> None:
        # Store float64 copies and check that the shapes agree
        weight = np.array(weight, dtype=np.float64)
        bias = np.array(bias, dtype=np.float64).reshape(-1)
        if weight.ndim != 3 or bias.shape != (weight.shape[0],):
            raise SpecError(
                f"{name}: weight must be (C_out, C_in, k) and bias (C_out,), got "
                f"{weight.shape} and {bias.shape}"
            )
        out_channels, in_channels, kernel = weight.shape
        if not 1 <= kernel <= length:
            raise SpecError(
                f"{name}: kernel size {kernel} does not fit a signal of length "
                f"{length}; use a kernel of 1 to {length}"
            )
        super().__init__(in_channels * length, name)
        self.weight = weight
        self.bias = bias
        self.length = int(length)

        # Column of x feeding patch entry (t, c k + s): c L + t + s
        t = np.arange(self.out_length)[:, None, None]
        c = np.arange(in_channels)[None, :, None]
        s = np.arange(kernel)[None, None, :]
        self._patch_index = (c * self.length + t + s).reshape(self.out_length, -1)

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel_size(self) -> int:
        return int(self.weight.shape[2])

    @property
    def out_length(self) -> int:
        return self.length - self.kernel_size + 1

    @property
    def output_dim(self) -> int:
        return self.out_channels * self.out_length

    def get_params(self) -> np.ndarray:
        # C-order flattening of K equals the column-major vec of K_mat
        return np.concatenate([self.weight.ravel(), self.bias])

    def set_params(self, theta: np.ndarray) -> None:
        # Check the length
        theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        size = self.weight.size
        if theta.size != size + self.out_channels:
            raise SpecError(
                f"{self.name} has {size + self.out_channels} parameters, got "
                f"{theta.size}; pass [K flattened in C order; b]"
            )

        # Split kernels and biases
        self.weight = theta[:size].reshape(self.weight.shape).copy()
        self.bias = theta[size:].copy()

    def param_labels(self) -> list[str]:
        # C order over (o, c, s), then one bias per output channel
        labels = [
            f"K[{o + 1},{c + 1},{s + 1}]"
            for o in range(self.out_channels)
            for c in range(self.in_channels)
            for s in range(self.kernel_size)
        ]
        return labels + [f"b[{o + 1}]" for o in range(self.out_channels)]

    def patches(self, batch: np.ndarray) -> np.ndarray:
        """Patch matrices ``P``, shape ``(B, L_out, C_in k)``, of a batch."""
        return batch[:, self._patch_index]

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        # Y = P K_mat + b, shape (B, L_out, C_out)
        kernel_matrix = self.weight.reshape(self.out_channels, -1).T
        y = self.patches(batch) @ kernel_matrix + self.bias

        # Channel-major output: column-major vec of each Y
        return y.transpose(0, 2, 1).reshape(batch.shape[0], -1)

    def _jacobian_input(self, batch: np.ndarray) -> np.ndarray:
        # Row o L_out + t, column c L + t + s, value K[o, c, s]
        jac = np.zeros((self.output_dim, self.input_dim))
        rows = (
            np.arange(self.out_channels)[:, None, None] * self.out_length
            + np.arange(self.out_length)[None, :, None]
        )
        rows = np.broadcast_to(rows, (self.out_channels, *self._patch_index.shape))
        cols = np.broadcast_to(self._patch_index, rows.shape)
        values = np.broadcast_to(
            self.weight.reshape(self.out_channels, 1, -1), rows.shape
        )
        jac[rows, cols] = values

        # The same matrix for every row of the batch
        return np.broadcast_to(jac, (batch.shape[0], *jac.shape)).copy()

    def _jacobian_params(self, batch: np.ndarray) -> np.ndarray:
        # Kernel block I_{C_out} kron P for every row: kron of (1, C, C)
        # with (B, L_out, C_in k) puts P on the diagonal blocks
        eye = np.eye(self.out_channels)
        kernel_block = np.kron(eye[None, :, :], self.patches(batch))

        # Bias block I_{C_out} kron 1_{L_out}, then both side by side
        bias_block = np.kron(eye, np.ones((self.out_length, 1)))
        bias_block = np.broadcast_to(bias_block, (batch.shape[0], *bias_block.shape))
        return np.concatenate([kernel_block, bias_block], axis=2)

    def equation(self, index: int) -> str:
        return (
            rf"a_{{{index}}} = \operatorname{{vec}}\!\left(P(a_{{{index - 1}}})\,"
            rf"K_{{{index}}}\right) + b_{{{index}}} \otimes \mathbf{{1}}"
        )

    def jacobian_input_formula(self, index: int) -> str:
        return (
            rf"\frac{{\partial a_{{{index}}}}}{{\partial a_{{{index - 1}}}}}"
            rf" = \left[\,T(K_{{{index}}}[o, c])\,\right]_{{o, c}}"
            r"\ \text{(Toeplitz blocks)}"
        )

    def jacobian_params_formula(self, index: int) -> str:
        o = self.out_channels
        return (
            rf"\frac{{\partial a_{{{index}}}}}{{\partial \theta_{{{index}}}}}"
            rf" = \left[\, I_{{{o}}} \otimes P(a_{{{index - 1}}}) \;\middle|\;"
            rf" I_{{{o}}} \otimes \mathbf{{1}}_{{{self.out_length}}} \,\right]"
        )
