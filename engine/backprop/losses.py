"""Losses of one example, with their Jacobians (row gradients).

A loss maps the network output ``a_L`` (length ``m``) and the target ``y``
(length ``m``) to a scalar. Its Jacobian ``dL / d a_L`` is a row vector of
shape ``(1, m)``, the first factor of the chain of Jacobians.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from engine.backprop.errors import SpecError

#: Names of the losses, in the order a page lists them.
LOSSES: tuple[str, ...] = ("squared_error", "cross_entropy")

#: Probabilities below this are clamped before the logarithm, and the
#: clamped entries get zero derivative (as with ``torch.clamp``).
PROBABILITY_FLOOR: float = 1e-12


def _pair(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Output and target as float64 batches of equal shape ``(B, m)``."""
    # Bring both to two dimensions
    a = np.asarray(a, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    single = a.ndim == 1
    a2 = a[None, :] if single else a
    y2 = y.reshape(a2.shape) if single and y.size == a.size else y

    # Check that they match
    if y2.shape != a2.shape:
        raise SpecError(
            f"the target has shape {y.shape} but the network output has shape "
            f"{a.shape}; give one target value per output"
        )
    return a2, y2, single


class Loss(ABC):
    """A scalar loss ``L(a_L, y)`` of one example."""

    #: Short name, as in a network specification.
    name: ClassVar[str] = "loss"

    def value(self, a: np.ndarray, y: np.ndarray) -> float | np.ndarray:
        """Loss of one example, or one loss per row of a batch.

        Parameters
        ----------
        a : numpy.ndarray
            Network output, shape ``(m,)`` or ``(B, m)``.
        y : numpy.ndarray
            Target, same shape as ``a``.

        Returns
        -------
        float or numpy.ndarray
            A float for one example, shape ``(B,)`` for a batch.
        """
        # Evaluate on the batch, then unwrap one example
        a2, y2, single = _pair(a, y)
        out = self._value(a2, y2)
        return float(out[0]) if single else out

    def jacobian(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Row Jacobian ``dL / d a_L``.

        Parameters
        ----------
        a : numpy.ndarray
            Network output, shape ``(m,)`` or ``(B, m)``.
        y : numpy.ndarray
            Target, same shape as ``a``.

        Returns
        -------
        numpy.ndarray
            Shape ``(1, m)`` for one example, ``(B, 1, m)`` for a batch.
        """
        # Evaluate on the batch and add the row axis
        a2, y2, single = _pair(a, y)
        out = self._gradient(a2, y2)[:, None, :]
        return out[0] if single else out

    @abstractmethod
    def _value(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Batched loss, ``(B, m), (B, m) -> (B,)``."""

    @abstractmethod
    def _gradient(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Batched gradient, ``(B, m), (B, m) -> (B, m)``."""

    @abstractmethod
    def equation(self, last: int, width: int) -> str:
        """LaTeX of the loss of output ``a_{last}`` of length ``width``."""

    @abstractmethod
    def jacobian_formula(self, last: int, width: int) -> str:
        """LaTeX of ``dL / d a_{last}`` for an output of length ``width``."""


class SquaredError(Loss):
    """Squared error ``L = 1/2 ||a - y||^2``; Jacobian ``(a - y)^T``."""

    name: ClassVar[str] = "squared_error"

    def _value(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 * np.sum((a - y) ** 2, axis=1)

    def _gradient(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        return a - y

    def equation(self, last: int, width: int) -> str:
        return rf"L = \tfrac{{1}}{{2}}\,\lVert a_{{{last}}} - y \rVert^2"

    def jacobian_formula(self, last: int, width: int) -> str:
        head = rf"\frac{{\partial L}}{{\partial a_{{{last}}}}}"
        return rf"{head} = (a_{{{last}}} - y)^\top"


class CrossEntropy(Loss):
    """Cross-entropy of predicted probabilities.

    With ``m >= 2`` outputs (after a softmax) and a one-hot ``y``:
    ``L = -sum_i y_i log p_i``. With one output (after a sigmoid) and
    ``y`` in ``{0, 1}``: ``L = -(y log p + (1 - y) log(1 - p))``.

    Probabilities are clamped at ``PROBABILITY_FLOOR`` before the log; the
    derivative of a clamped entry is 0.
    """

    name: ClassVar[str] = "cross_entropy"

    def _value(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        # Multi-class: the one-hot target picks the log-probability
        if a.shape[1] > 1:
            return -np.sum(y * np.log(np.maximum(a, PROBABILITY_FLOOR)), axis=1)

        # Binary: both outcomes
        p, t = a[:, 0], y[:, 0]
        return -(
            t * np.log(np.maximum(p, PROBABILITY_FLOOR))
            + (1.0 - t) * np.log(np.maximum(1.0 - p, PROBABILITY_FLOOR))
        )

    def _gradient(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        # Multi-class: -y / p where p is not clamped
        if a.shape[1] > 1:
            kept = a >= PROBABILITY_FLOOR
            return np.where(kept, -y / np.where(kept, a, 1.0), 0.0)

        # Binary: -y / p + (1 - y) / (1 - p), each term where not clamped
        p, t = a, y
        q = 1.0 - p
        kept_p = p >= PROBABILITY_FLOOR
        kept_q = q >= PROBABILITY_FLOOR
        term_p = np.where(kept_p, -t / np.where(kept_p, p, 1.0), 0.0)
        term_q = np.where(kept_q, (1.0 - t) / np.where(kept_q, q, 1.0), 0.0)
        return term_p + term_q

    def equation(self, last: int, width: int) -> str:
        # One formula for the binary case, another for several classes
        a = f"a_{{{last}}}"
        if width == 1:
            return rf"L = -\left(y \log {a} + (1 - y) \log(1 - {a})\right)"
        return rf"L = -\textstyle\sum_i y_i \log ({a})_i"

    def jacobian_formula(self, last: int, width: int) -> str:
        # One formula for the binary case, another for several classes
        a = f"a_{{{last}}}"
        head = rf"\frac{{\partial L}}{{\partial {a}}} = "
        if width == 1:
            return head + rf"-\frac{{y}}{{{a}}} + \frac{{1 - y}}{{1 - {a}}}"
        return head + rf"-\left(y \oslash {a}\right)^\top"


def make_loss(name: str) -> Loss:
    """Return the loss called ``name`` (one of ``LOSSES``)."""
    # Look the name up
    table: dict[str, type[Loss]] = {
        "squared_error": SquaredError,
        "cross_entropy": CrossEntropy,
    }
    if name not in table:
        raise SpecError(f"unknown loss {name!r}; choose one of " + ", ".join(LOSSES))
    return table[name]()
