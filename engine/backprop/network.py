"""Networks as lists of layers, built from a plain specification.

A specification is a ``NetworkSpec``: the input width, a tuple of
``LayerSpec`` (or plain dicts, see ``NetworkSpec.from_dict``), the loss
name and a seed for the initial parameters. It is hashable and turns into
JSON and back, so that a page can build it from widgets and cache on it.

Example
-------
>>> spec = NetworkSpec.from_dict({
...     "input_dim": 2,
...     "layers": [
...         {"kind": "dense", "units": 4},
...         {"kind": "activation", "function": "tanh"},
...         {"kind": "dense", "units": 2},
...         {"kind": "softmax"},
...     ],
...     "loss": "cross_entropy",
... })
>>> net = build_network(spec)
>>> net.dims
(2, 4, 4, 2, 2)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.backprop.errors import SpecError
from engine.backprop.layers import (
    ACTIVATIONS,
    Activation,
    Conv1D,
    Dense,
    Layer,
    Softmax,
)
from engine.backprop.losses import LOSSES, Loss, make_loss

#: Layer kinds a specification may name.
LAYER_KINDS: tuple[str, ...] = ("dense", "activation", "softmax", "conv1d")

#: Output heads of ``classifier_spec``: last layer and loss.
HEADS: dict[str, tuple[str, str]] = {
    "softmax_cross_entropy": ("softmax", "cross_entropy"),
    "sigmoid_cross_entropy": ("sigmoid", "cross_entropy"),
    "identity_squared_error": ("identity", "squared_error"),
}

#: Fields each layer kind uses, beyond ``kind``.
_FIELDS: dict[str, tuple[str, ...]] = {
    "dense": ("units",),
    "activation": ("function",),
    "softmax": (),
    "conv1d": ("out_channels", "kernel_size", "in_channels"),
}


@dataclass(frozen=True)
class LayerSpec:
    """Specification of one layer.

    Attributes
    ----------
    kind : str
        One of ``LAYER_KINDS``.
    units : int
        Dense layers: the output width ``m``.
    function : str
        Activations: one of ``ACTIVATIONS``.
    out_channels : int
        Conv1d: number of output channels ``C_out``.
    kernel_size : int
        Conv1d: kernel length ``k``.
    in_channels : int
        Conv1d: number of input channels ``C_in``; the incoming vector is
        split into this many equal signals.
    """

    kind: str
    units: int = 0
    function: str = "identity"
    out_channels: int = 1
    kernel_size: int = 3
    in_channels: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Return the fields this kind uses, as a plain dict."""
        # Keep only what the kind reads
        full = asdict(self)
        return {"kind": self.kind} | {
            key: full[key] for key in _FIELDS.get(self.kind, ())
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], position: int = 0) -> LayerSpec:
        """Build from a dict such as ``{"kind": "dense", "units": 4}``.

        Parameters
        ----------
        data : Mapping
            ``kind`` plus the fields of that kind (``type`` is accepted for
            ``kind``).
        position : int
            1-based position in the network, for error messages.
        """
        # Read the kind
        values = dict(data)
        kind = values.pop("kind", values.pop("type", None))
        where = f"layer {position}" if position else "layer"
        if kind not in LAYER_KINDS:
            raise SpecError(
                f"{where}: unknown kind {kind!r}; choose one of "
                + ", ".join(LAYER_KINDS)
            )

        # Refuse fields the kind does not use
        unknown = sorted(set(values) - set(_FIELDS[kind]))
        if unknown:
            raise SpecError(
                f"{where} ({kind}): unknown field(s) {', '.join(unknown)}; "
                f"a {kind} layer takes {', '.join(_FIELDS[kind]) or 'no fields'}"
            )
        return cls(kind=kind, **values)


@dataclass(frozen=True)
class NetworkSpec:
    """Specification of a network: input width, layers, loss, seed.

    Attributes
    ----------
    input_dim : int
        Length ``n_0`` of the input vector.
    layers : tuple of LayerSpec
        The layers, input side first.
    loss : str
        One of ``LOSSES``.
    seed : int
        Seed of the initial parameters.
    """

    input_dim: int
    layers: tuple[LayerSpec, ...] = field(default_factory=tuple)
    loss: str = "squared_error"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the specification as plain dicts and lists."""
        return {
            "input_dim": self.input_dim,
            "layers": [layer.to_dict() for layer in self.layers],
            "loss": self.loss,
            "seed": self.seed,
        }

    def to_json(self) -> str:
        """Return the specification as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkSpec:
        """Build from a dict with input_dim, layers (dicts), loss and seed."""
        # Check the top-level keys
        unknown = sorted(set(data) - {"input_dim", "layers", "loss", "seed"})
        if unknown:
            raise SpecError(
                f"unknown network field(s) {', '.join(unknown)}; a network "
                "takes input_dim, layers, loss and seed"
            )
        if "input_dim" not in data:
            raise SpecError("the network needs input_dim, the length of an input")

        # Convert each layer
        layers = tuple(
            item if isinstance(item, LayerSpec) else LayerSpec.from_dict(item, i + 1)
            for i, item in enumerate(data.get("layers", ()))
        )
        return cls(
            input_dim=data["input_dim"],
            layers=layers,
            loss=data.get("loss", "squared_error"),
            seed=data.get("seed", 0),
        )

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        """Build from the JSON written by ``to_json``."""
        return cls.from_dict(json.loads(text))


class Network:
    """A chain of layers followed by a loss.

    Parameters
    ----------
    layers : sequence of Layer
        Layers, input side first; each one's input width must be the
        previous one's output width.
    loss : Loss
        Loss of the last layer's output.
    spec : NetworkSpec or None
        The specification it was built from, if any.
    """

    def __init__(
        self, layers: Sequence[Layer], loss: Loss, spec: NetworkSpec | None = None
    ) -> None:
        # Check that consecutive widths agree
        for before, after in zip(layers, layers[1:], strict=False):
            if before.output_dim != after.input_dim:
                raise SpecError(
                    f"{before.name} outputs {before.output_dim} values but "
                    f"{after.name} takes {after.input_dim}; make the widths agree"
                )
        self.layers = list(layers)
        self.loss = loss
        self.spec = spec

    @property
    def input_dim(self) -> int:
        """Length ``n_0`` of an input."""
        return self.layers[0].input_dim

    @property
    def output_dim(self) -> int:
        """Length ``n_L`` of the output."""
        return self.layers[-1].output_dim

    @property
    def dims(self) -> tuple[int, ...]:
        """Widths ``(n_0, n_1, ..., n_L)`` of all activations."""
        return (self.input_dim, *(layer.output_dim for layer in self.layers))

    @property
    def param_counts(self) -> tuple[int, ...]:
        """Number of parameters of each layer, ``(p_1, ..., p_L)``."""
        return tuple(layer.n_params for layer in self.layers)

    @property
    def n_params(self) -> int:
        """Total number of parameters."""
        return sum(self.param_counts)

    @property
    def names(self) -> tuple[str, ...]:
        """Layer names, input side first."""
        return tuple(layer.name for layer in self.layers)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """All activations ``[a_0, a_1, ..., a_L]``.

        Parameters
        ----------
        x : numpy.ndarray
            Input, shape ``(n_0,)`` or ``(B, n_0)``.

        Returns
        -------
        list of numpy.ndarray
            ``a_l`` of shape ``(n_l,)`` or ``(B, n_l)``; ``a_0`` is ``x``.
        """
        # Feed each layer the previous output
        activations = [np.asarray(x, dtype=np.float64)]
        for layer in self.layers:
            activations.append(layer.forward(activations[-1]))
        return activations

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Network output ``a_L``, shape ``(n_L,)`` or ``(B, n_L)``."""
        return self.forward(x)[-1]

    def loss_value(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean loss over the rows of ``x`` (or the loss of one example)."""
        # Forward, then average the per-example losses
        value = self.loss.value(self.predict(x), y)
        return float(np.mean(value))

    def get_params(self) -> list[np.ndarray]:
        """Copies of each layer's ``theta_l``, shapes ``(p_l,)``."""
        return [layer.get_params() for layer in self.layers]

    def set_params(self, params: Sequence[np.ndarray]) -> None:
        """Set each layer's ``theta_l`` from a list like ``get_params``'s."""
        # One vector per layer
        if len(params) != len(self.layers):
            raise SpecError(
                f"the network has {len(self.layers)} layers but {len(params)} "
                "parameter vectors were given; give one per layer (empty ones too)"
            )
        for layer, theta in zip(self.layers, params, strict=True):
            layer.set_params(theta)

    def copy(self) -> Network:
        """Return an independent copy."""
        return Network([layer.copy() for layer in self.layers], self.loss, self.spec)

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer: index, name, kind, widths, parameters, LaTeX."""
        return [
            {
                "index": i + 1,
                "name": layer.name,
                "kind": layer.kind,
                "input": layer.input_dim,
                "output": layer.output_dim,
                "parameters": layer.n_params,
                "equation": layer.equation(i + 1),
            }
            for i, layer in enumerate(self.layers)
        ]

    def __repr__(self) -> str:
        body = ", ".join(repr(layer) for layer in self.layers)
        return f"Network([{body}], loss={self.loss.name})"


def _positive(value: Any, what: str, fix: str) -> int:
    """Return ``value`` as a positive int or raise a ``SpecError``."""
    # Accept integers only, not floats or booleans
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpecError(f"{what} must be a positive integer, got {value!r}; {fix}")
    return int(value)


def build_network(spec: NetworkSpec) -> Network:
    """Build a network with seeded initial parameters.

    Dense weights are drawn from a normal with variance
    ``2 / (n + m)`` (Glorot), convolution kernels with variance
    ``1 / (C_in k)``, biases with standard deviation 0.1.

    Parameters
    ----------
    spec : NetworkSpec
        What to build.

    Returns
    -------
    Network
        Layers named ``"<kind>_<l>"``, e.g. ``"dense_1"``, ``"tanh_2"``.

    Raises
    ------
    SpecError
        For an empty network, a bad width, an unknown activation or loss, a
        convolution that does not fit its input, or a cross-entropy loss
        not preceded by a probability layer.
    """
    # Check the input width and the loss
    width = _positive(spec.input_dim, "input_dim", "give the length of one input")
    if not spec.layers:
        raise SpecError("the network has no layers; add at least one dense layer")
    if spec.loss not in LOSSES:
        raise SpecError(
            f"unknown loss {spec.loss!r}; choose one of " + ", ".join(LOSSES)
        )
    rng = np.random.default_rng(spec.seed)

    # Build the layers one after another
    layers: list[Layer] = []
    for position, item in enumerate(spec.layers, start=1):
        layer = _build_layer(item, width, position, rng)
        layers.append(layer)
        width = layer.output_dim

    # Cross-entropy needs probabilities: softmax, or one sigmoid output
    if spec.loss == "cross_entropy":
        _check_probability_head(layers[-1])
    return Network(layers, make_loss(spec.loss), spec)


def _build_layer(
    item: LayerSpec, width: int, position: int, rng: np.random.Generator
) -> Layer:
    """Build layer number ``position`` taking vectors of length ``width``."""
    # Dense: Glorot-normal weights, small biases
    where = f"layer {position} ({item.kind})"
    if item.kind == "dense":
        units = _positive(item.units, f"{where}: units", "choose a width of 1 or more")
        scale = np.sqrt(2.0 / (width + units))
        weight = rng.normal(0.0, scale, size=(units, width))
        bias = rng.normal(0.0, 0.1, size=units)
        return Dense(weight, bias, name=f"dense_{position}")

    # Activation and softmax keep the width
    if item.kind == "activation":
        if item.function not in ACTIVATIONS:
            raise SpecError(
                f"{where}: unknown activation {item.function!r}; choose one of "
                + ", ".join(ACTIVATIONS)
            )
        return Activation(item.function, width, name=f"{item.function}_{position}")
    if item.kind == "softmax":
        if width < 2:
            raise SpecError(
                f"{where}: softmax of a single value is always 1; give the layer "
                "before it 2 or more outputs, or use a sigmoid"
            )
        return Softmax(width, name=f"softmax_{position}")

    # Convolution: split the input into channels, check the kernel fits
    if item.kind == "conv1d":
        channels = _positive(item.in_channels, f"{where}: in_channels", "use 1 or more")
        out_channels = _positive(
            item.out_channels, f"{where}: out_channels", "use 1 or more"
        )
        kernel = _positive(item.kernel_size, f"{where}: kernel_size", "use 1 or more")
        if width % channels:
            raise SpecError(
                f"{where}: the incoming {width} values cannot be split into "
                f"{channels} equal channels; set in_channels to a divisor of {width}"
            )
        length = width // channels
        if kernel > length:
            raise SpecError(
                f"{where}: kernel_size {kernel} is longer than each channel's "
                f"{length} values; use a kernel of at most {length} or widen the "
                "layer before"
            )
        weight = rng.normal(
            0.0, 1.0 / np.sqrt(channels * kernel), size=(out_channels, channels, kernel)
        )
        bias = rng.normal(0.0, 0.1, size=out_channels)
        return Conv1D(weight, bias, length, name=f"conv1d_{position}")
    raise SpecError(
        f"layer {position}: unknown kind {item.kind!r}; choose one of "
        + ", ".join(LAYER_KINDS)
    )


def _check_probability_head(last: Layer) -> None:
    """Raise unless ``last`` outputs probabilities fit for cross-entropy."""
    # Softmax, or a sigmoid with one output
    if isinstance(last, Softmax):
        return
    if isinstance(last, Activation) and last.function == "sigmoid":
        if last.output_dim == 1:
            return
        raise SpecError(
            f"cross-entropy after a sigmoid needs one output, {last.name} has "
            f"{last.output_dim}; use a softmax for several classes"
        )
    raise SpecError(
        f"cross-entropy needs probabilities but the network ends with {last.name}; "
        "end it with a softmax (several classes) or a sigmoid of one output, or "
        "use the squared error"
    )


def classifier_spec(
    input_dim: int,
    n_classes: int,
    hidden: Sequence[int],
    activation: str | Sequence[str] = "tanh",
    head: str = "softmax_cross_entropy",
    conv: tuple[int, int] | None = None,
    seed: int = 0,
) -> NetworkSpec:
    """Specification of a small classifier, as a page's widgets describe it.

    Parameters
    ----------
    input_dim : int
        Number of input features.
    n_classes : int
        Number of classes, 2 or more.
    hidden : sequence of int
        Width of each hidden dense layer; each is followed by its
        activation.
    activation : str or sequence of str
        One of ``ACTIVATIONS`` for every hidden layer, or one per hidden
        layer.
    head : str
        One of ``HEADS``: ``"softmax_cross_entropy"`` (``n_classes``
        outputs), ``"sigmoid_cross_entropy"`` (one output, two classes
        only) or ``"identity_squared_error"`` (``n_classes`` outputs
        fitted to one-hot targets).
    conv : tuple of int or None
        ``(out_channels, kernel_size)`` of a 1-D convolution inserted after
        the first hidden layer (which it reads as one channel), followed by
        the first hidden layer's activation; ``None`` for none.
    seed : int
        Seed of the initial parameters.

    Returns
    -------
    NetworkSpec
    """
    # Check the head against the number of classes
    if head not in HEADS:
        raise SpecError(f"unknown head {head!r}; choose one of " + ", ".join(HEADS))
    last, loss = HEADS[head]
    if n_classes < 2:
        raise SpecError(
            f"the data has {n_classes} class(es); a classifier needs 2 or more"
        )
    if head == "sigmoid_cross_entropy" and n_classes != 2:
        raise SpecError(
            f"a sigmoid output separates 2 classes, the data has {n_classes}; "
            "choose the softmax head"
        )

    if isinstance(activation, str):
        functions = [activation] * len(hidden)
    else:
        functions = list(activation)
    if len(functions) != len(hidden):
        raise SpecError(
            f"{len(hidden)} hidden layer(s) but {len(functions)} activation(s); "
            "give one activation per hidden layer"
        )
    if conv is not None and not hidden:
        raise SpecError(
            "the convolution reads the first hidden layer, and there is none; "
            "add a hidden layer or leave the convolution out"
        )

    # Hidden layers, with the convolution after the first
    layers: list[LayerSpec] = []
    for i, (width, function) in enumerate(zip(hidden, functions, strict=True)):
        layers += [
            LayerSpec("dense", units=width),
            LayerSpec("activation", function=function),
        ]
        if i == 0 and conv is not None:
            out_channels, kernel = conv
            layers += [
                LayerSpec("conv1d", out_channels=out_channels, kernel_size=kernel),
                LayerSpec("activation", function=function),
            ]

    # Output layer and head
    outputs = 1 if head == "sigmoid_cross_entropy" else n_classes
    layers.append(LayerSpec("dense", units=outputs))
    if last == "softmax":
        layers.append(LayerSpec("softmax"))
    else:
        layers.append(LayerSpec("activation", function=last))
    return NetworkSpec(input_dim=input_dim, layers=tuple(layers), loss=loss, seed=seed)
