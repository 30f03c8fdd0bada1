"""Plain gradient descent with the engine's own chain-rule gradients.

Every step computes the mean gradient over the training examples with
``batch_gradients`` (products of the layers' explicit Jacobians, reverse
order) and moves each parameter against it:
``theta_l <- theta_l - learning_rate * dL/dtheta_l``.
For two input features it also records the decision regions on a grid at
a few steps, so that a page can show the boundary moving.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from engine.backprop.chain import batch_gradients
from engine.backprop.datasets import encode_targets
from engine.backprop.errors import BackpropError
from engine.backprop.network import Network

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoundaryGrid:
    """The network's decision on a regular grid of a 2-D input plane.

    Attributes
    ----------
    step : int
        Training step the grid was drawn at (0 is before training).
    xs, ys : numpy.ndarray
        Grid coordinates, shapes ``(gx,)`` and ``(gy,)``.
    classes : numpy.ndarray
        Predicted class per grid point, shape ``(gy, gx)``, int64.
    score : numpy.ndarray
        Network output for class 1 per grid point, shape ``(gy, gx)``
        (the single output when there is one).
    """

    step: int
    xs: np.ndarray
    ys: np.ndarray
    classes: np.ndarray
    score: np.ndarray


@dataclass(frozen=True)
class TrainingResult:
    """What a few steps of gradient descent did.

    Attributes
    ----------
    losses : numpy.ndarray
        Mean loss before each step and after the last, shape ``(S + 1,)``
        for ``S`` steps taken.
    accuracies : numpy.ndarray
        Training accuracy at the same moments, shape ``(S + 1,)``.
    boundaries : tuple of BoundaryGrid
        Decision grids at a few steps; empty unless there are 2 features.
    network : Network
        The trained copy (the network passed in is left as it was).
    n_used : int
        Number of examples trained on.
    diverged : bool
        Whether training stopped early on a non-finite loss.
    """

    losses: np.ndarray
    accuracies: np.ndarray
    boundaries: tuple[BoundaryGrid, ...]
    network: Network
    n_used: int
    diverged: bool


def predict_classes(network: Network, features: np.ndarray) -> np.ndarray:
    """Predicted class per row: threshold 0.5 for one output, else argmax.

    Parameters
    ----------
    network : Network
        A classifier.
    features : numpy.ndarray
        Shape ``(N, n_0)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, int64.
    """
    # One output is a probability (or a 0/1 fit); several are scores
    rows = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    out = network.predict(rows)
    if out.shape[1] == 1:
        return (out[:, 0] > 0.5).astype(np.int64)
    return np.argmax(out, axis=1).astype(np.int64)


def boundary_grid(
    network: Network,
    features: np.ndarray,
    step: int = 0,
    size: int = 60,
    margin: float = 0.5,
) -> BoundaryGrid:
    """The decision of a 2-input network on a grid covering the data.

    Parameters
    ----------
    network : Network
        A classifier with 2 inputs.
    features : numpy.ndarray
        Shape ``(N, 2)``; the grid spans their range plus ``margin``.
    step : int
        Training step to record.
    size : int
        Grid points per axis.
    margin : float
        Extra room around the data, in input units.

    Returns
    -------
    BoundaryGrid
    """
    # Grid over the data's bounding box
    if network.input_dim != 2:
        raise BackpropError(
            f"a decision grid needs 2 input features, the network takes "
            f"{network.input_dim}; use a 2-D data set"
        )
    low = features.min(axis=0) - margin
    high = features.max(axis=0) + margin
    xs = np.linspace(low[0], high[0], size)
    ys = np.linspace(low[1], high[1], size)
    grid_x, grid_y = np.meshgrid(xs, ys)
    points = np.column_stack([grid_x.ravel(), grid_y.ravel()])

    # Classes and the class-1 output at every grid point
    out = network.predict(points)
    score = out[:, 0] if out.shape[1] == 1 else out[:, 1]
    classes = predict_classes(network, points)
    return BoundaryGrid(
        step=step,
        xs=xs,
        ys=ys,
        classes=classes.reshape(size, size),
        score=score.reshape(size, size),
    )


def train(
    network: Network,
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    steps: int = 50,
    learning_rate: float = 0.5,
    snapshots: int = 6,
    grid_size: int = 50,
    max_points: int = 1000,
    seed: int = 0,
) -> TrainingResult:
    """Train a copy of ``network`` by full-batch gradient descent.

    Parameters
    ----------
    network : Network
        Starting point; it is not changed.
    features : numpy.ndarray
        Shape ``(N, n_0)``.
    labels : numpy.ndarray
        Shape ``(N,)``, integers in ``0 .. n_classes - 1``.
    n_classes : int
        Number of classes.
    steps : int
        Gradient-descent steps, 0 or more.
    learning_rate : float
        Step size, positive.
    snapshots : int
        Decision grids to record, spread evenly over the steps (first and
        last included); only for 2 features.
    grid_size : int
        Grid points per axis of each decision grid.
    max_points : int
        Train on a seeded random sample of at most this many examples.
    seed : int
        Seed of that sample.

    Returns
    -------
    TrainingResult
    """
    # Check the arguments and encode the targets
    if steps < 0 or not learning_rate > 0:
        raise BackpropError(
            f"steps={steps}, learning_rate={learning_rate}; ask for 0 or more "
            "steps and a positive learning rate"
        )
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    targets = encode_targets(labels, network.output_dim, n_classes)

    # Sample when there are too many examples
    if len(features) > max_points:
        rng = np.random.default_rng(seed)
        keep = rng.choice(len(features), max_points, replace=False)
        logger.info("training on %d of %d examples", max_points, len(features))
        features, labels, targets = features[keep], labels[keep], targets[keep]

    # Steps at which to draw the decision grid
    planar = features.shape[1] == 2
    marks = set(np.linspace(0, steps, max(snapshots, 1)).round().astype(int).tolist())
    model = network.copy()
    losses: list[float] = []
    accuracies: list[float] = []
    boundaries: list[BoundaryGrid] = []
    diverged = False

    # Descend: gradient, record, update
    for step in range(steps + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            loss, gradients = batch_gradients(model, features, targets)
        if not np.isfinite(loss):
            warnings.warn(
                f"the loss became {loss} at step {step}; training stopped, try a "
                "smaller learning rate",
                RuntimeWarning,
                stacklevel=2,
            )
            diverged = True
            break
        losses.append(loss)
        accuracies.append(float(np.mean(predict_classes(model, features) == labels)))
        if planar and step in marks:
            boundaries.append(boundary_grid(model, features, step, grid_size))
        if step == steps:
            break
        pairs = zip(model.get_params(), gradients, strict=True)
        model.set_params([theta - learning_rate * grad for theta, grad in pairs])

    return TrainingResult(
        losses=np.asarray(losses),
        accuracies=np.asarray(accuracies),
        boundaries=tuple(boundaries),
        network=model,
        n_used=len(features),
        diverged=diverged,
    )
