"""Helpers of the backpropagation page: keys, cached engine calls, figures.

The page stays a thin script: it reads widgets, calls the cached functions
here, and draws the figures built here. Nothing in this module holds
science; that lives in ``engine.backprop``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from engine import backprop as bp
from engine.data.grids import read_topo_hdf5
from engine.data.registry import locate

# Session-state keys, all under "backprop." so that no page collides.
LARGE_FONTS = "backprop.large_fonts"
SOURCE = "backprop.source"
TOY_NAME = "backprop.toy_name"
N_POINTS = "backprop.n_points"
NOISE = "backprop.noise"
DATA_SEED = "backprop.data_seed"
N_CELLS = "backprop.n_cells"
CELL_SEED = "backprop.cell_seed"
CSV_FILE = "backprop.csv_file"
PRESET = "backprop.preset"
HIDDEN_LAYERS = "backprop.hidden_layers"
HEAD = "backprop.head"
CONV = "backprop.conv"
CONV_CHANNELS = "backprop.conv_channels"
CONV_KERNEL = "backprop.conv_kernel"
INIT_SEED = "backprop.init_seed"
EXAMPLE = "backprop.example"
STEP = "backprop.step"
PREVIOUS = "backprop.previous"
NEXT = "backprop.next"
RESET = "backprop.reset"
TRAIN_STEPS = "backprop.train_steps"
LEARNING_RATE = "backprop.learning_rate"
TRAIN = "backprop.train"
TRAINING_RESULT = "backprop.training_result"
DOWNLOAD_LATEX = "backprop.download_latex"
DOWNLOAD_JSON = "backprop.download_json"


def width_key(index: int) -> str:
    """Key of the width widget of hidden layer ``index`` (0-based)."""
    return f"backprop.width_{index}"


def activation_key(index: int) -> str:
    """Key of the activation widget of hidden layer ``index`` (0-based)."""
    return f"backprop.activation_{index}"


#: Data sources offered by the page.
SOURCES = ("Toy data set", "CSV upload", "Bed-topography cells (Helheim)")

#: Output heads, as the page names them.
HEAD_LABELS: dict[str, str] = {
    "softmax_cross_entropy": "softmax + cross-entropy",
    "sigmoid_cross_entropy": "sigmoid + cross-entropy (2 classes)",
    "identity_squared_error": "identity + squared error",
}

CUSTOM = "Custom (build it below)"

@dataclass(frozen=True)
class Design:
    """A small classifier as the page describes it.

    Attributes
    ----------
    hidden : tuple of int
        Width of each hidden layer.
    activations : tuple of str
        Activation of each hidden layer.
    head : str
        A key of ``HEAD_LABELS``.
    conv : tuple of int or None
        ``(out_channels, kernel_size)`` of a convolution after the first
        hidden layer, or None.
    """

    hidden: tuple[int, ...]
    activations: tuple[str, ...]
    head: str = "softmax_cross_entropy"
    conv: tuple[int, int] | None = None


#: Ready-made networks.
PRESETS: dict[str, Design] = {
    "Tiny: one hidden layer of 3 (tanh), softmax": Design((3,), ("tanh",)),
    "Two hidden layers of 6 (ReLU, tanh), softmax": Design((6, 6), ("relu", "tanh")),
    "One sigmoid output, binary cross-entropy": Design(
        (4,), ("tanh",), "sigmoid_cross_entropy"
    ),
    "With a 1-D convolution (2 channels, kernel 3)": Design(
        (6,), ("tanh",), conv=(2, 3)
    ),
    "Squared error on one-hot targets (softplus)": Design(
        (5,), ("softplus",), "identity_squared_error"
    ),
}

#: Learning rates offered for training.
LEARNING_RATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)

#: Limits of the custom builder, small enough for readable heatmaps.
MAX_HIDDEN_LAYERS = 4
MAX_WIDTH = 16

#: One colour per class, told apart on a projector.
CLASS_COLOURS = (
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

#: Plot font sizes, normal and on a projector.
FONT_SIZE = 13
LARGE_FONT_SIZE = 20

_LARGE_CSS = """
<style>
html, body { font-size: 20px; }
.stMarkdown p, .stMarkdown li, .stCaption p, label p, .stButton button p,
[data-testid="stMetricValue"], [data-testid="stMetricLabel"] p,
.stDataFrame, .stAlert p { font-size: 1.3rem !important; }
h1 { font-size: 2.7rem !important; }
h2 { font-size: 2.1rem !important; }
h3 { font-size: 1.7rem !important; }
.katex { font-size: 1.45em !important; }
</style>
"""

_BASE_CSS = """
<style>
.katex-display { max-width: 100%; overflow-x: auto; overflow-y: hidden; }
</style>
"""


def inject_css(large: bool) -> None:
    """Keep formulas inside the page width; enlarge text for a projector."""
    # Always: formulas never widen the page
    st.html(_BASE_CSS + (_LARGE_CSS if large else ""))


def font_size(large: bool) -> int:
    """Plot font size for the chosen mode."""
    return LARGE_FONT_SIZE if large else FONT_SIZE


# Cached engine calls --------------------------------------------------------


@st.cache_data(show_spinner=False)
def toy_data(name: str, n_points: int, noise: float, seed: int) -> bp.Dataset:
    """A toy data set, drawn once per argument set."""
    return bp.make_toy(name, n_points, noise, seed)


@st.cache_data(show_spinner="Reading the Helheim grid...")
def bed_data(n_points: int, seed: int) -> bp.Dataset:
    """Cells of the Helheim demo grid (data directory or cache).

    Raises the data layer's ``DataError`` (not cached) when the grid is not
    at hand.
    """
    grid = read_topo_hdf5(locate("helheim", "subdomain_data.h5"))
    return bp.bed_cells(grid, n_points, seed)


@st.cache_data(show_spinner=False, max_entries=8)
def csv_data(content: bytes, name: str) -> bp.Dataset:
    """An uploaded CSV as a data set, features standardised per column.

    Raises the loader's ``CSVError`` (not cached) on a bad file.
    """
    # Read, then scale each feature to mean 0, deviation 1
    data = bp.load_csv(content, name=name)
    scaled, _, _ = bp.standardize(data.features)
    return replace(data, features=scaled)


@st.cache_data(show_spinner=False, max_entries=64)
def trace_and_reference(
    spec_json: str, x: tuple[float, ...], y: tuple[float, ...]
) -> tuple[bp.Trace, bp.AutogradResult, bp.GradientComparison]:
    """The trace of one example, autograd's gradients, and their comparison."""
    # Build, trace, and ask autograd
    net = bp.build_network(bp.NetworkSpec.from_json(spec_json))
    trace = bp.build_trace(net, np.asarray(x), np.asarray(y))
    reference = bp.autograd_gradients(net, np.asarray(x), np.asarray(y))
    comparison = bp.compare_gradients(net.names, trace.gradients, reference.gradients)
    return trace, reference, comparison


@st.cache_data(show_spinner=False, max_entries=64)
def exports(
    spec_json: str, x: tuple[float, ...], y: tuple[float, ...]
) -> tuple[str, str]:
    """The trace as standalone LaTeX and as indented JSON."""
    trace, _, _ = trace_and_reference(spec_json, x, y)
    return bp.trace_to_latex(trace, standalone=True), bp.trace_to_json(trace, indent=1)


@st.cache_data(show_spinner="Training...", max_entries=16)
def training(
    spec_json: str,
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    steps: int,
    learning_rate: float,
) -> bp.TrainingResult:
    """A few steps of gradient descent from the network's initial state."""
    net = bp.build_network(bp.NetworkSpec.from_json(spec_json))
    return bp.train(net, features, labels, n_classes, steps, learning_rate, snapshots=6)


def network_spec(
    preset: str, input_dim: int, n_classes: int, custom: Design | None, seed: int
) -> bp.NetworkSpec:
    """The network a preset, or the custom builder's design, describes.

    Parameters
    ----------
    preset : str
        A key of ``PRESETS``, or ``CUSTOM`` to use ``custom``.
    input_dim, n_classes : int
        From the data.
    custom : Design or None
        The builder's design, read when ``preset`` is ``CUSTOM``.
    seed : int
        Seed of the initial parameters.
    """
    # A preset (a binary head falls back to softmax for more classes)
    if preset in PRESETS:
        design = PRESETS[preset]
        if design.head == "sigmoid_cross_entropy" and n_classes != 2:
            design = replace(design, head="softmax_cross_entropy")
    elif custom is None:
        raise bp.SpecError("no custom network was given; build one or pick a preset")
    else:
        design = custom

    # The engine's specification
    return bp.classifier_spec(
        input_dim,
        n_classes,
        design.hidden,
        design.activations,
        design.head,
        design.conv,
        seed,
    )


# Text helpers ---------------------------------------------------------------


def wrap_chain(chain: str, per_line: int = 4) -> str:
    r"""A product of ``\,``-separated factors, broken every ``per_line``."""
    # Split into factors and regroup them in lines
    factors = [part for part in chain.split(r"\,") if part]
    if len(factors) <= per_line:
        return chain
    lines = [
        r"\,".join(factors[i : i + per_line]) for i in range(0, len(factors), per_line)
    ]
    return r"\begin{aligned}&" + r"\\ &\quad\cdot ".join(lines) + r"\end{aligned}"


def shape_text(shape: Sequence[int] | None) -> str:
    """``"3 × 4"`` for a shape."""
    return "" if shape is None else " × ".join(str(n) for n in shape)


def cost_rows(costs: Mapping[str, bp.ChainCost]) -> list[dict[str, object]]:
    """One table row per order of multiplication."""
    what = {
        "reverse": "reverse: row times Jacobian, from the loss",
        "forward": "forward: Jacobian times Jacobian, from the input",
    }
    return [
        {
            "order": what[order],
            "products": len(costs[order].products),
            "largest product": costs[order].largest_intermediate,
            "multiplications": costs[order].multiplications,
        }
        for order in ("reverse", "forward")
    ]


def product_rows(cost: bp.ChainCost) -> list[dict[str, object]]:
    """One table row per product of a chain."""
    return [
        {
            "left": p.left,
            "right": p.right,
            "shapes": f"({shape_text(p.left_shape)}) · ({shape_text(p.right_shape)})",
            "result": shape_text(p.result_shape),
            "multiplications": p.multiplications,
        }
        for p in cost.products
    ]


def comparison_rows(
    trace: bp.Trace, reference: bp.AutogradResult, comparison: bp.GradientComparison
) -> list[dict[str, object]]:
    """One row per layer with parameters: sizes and differences."""
    return [
        {
            "layer": name,
            "parameters": trace.param_counts[i],
            "max |chain|": f"{np.max(np.abs(trace.gradients[i])):.4g}",
            "max |autograd|": f"{np.max(np.abs(reference.gradients[i])):.4g}",
            "max abs diff.": f"{comparison.max_abs[i]:.2e}",
            "relative diff.": f"{comparison.max_rel[i]:.2e}",
        }
        for i, name in enumerate(trace.names)
        if trace.param_counts[i]
    ]


# Figures --------------------------------------------------------------------


def _layout(fig: go.Figure, title: str, size: int, height: int) -> go.Figure:
    """Common layout: title, font, margins, height."""
    fig.update_layout(
        title={"text": title, "font": {"size": size + 2}},
        font={"size": size},
        height=height,
        margin={"l": 10, "r": 10, "t": 40 + size, "b": 10},
    )
    return fig


def matrix_figure(
    matrix: np.ndarray,
    title: str,
    row_title: str,
    column_title: str,
    column_labels: Sequence[str] = (),
    size: int = FONT_SIZE,
) -> go.Figure:
    """A heatmap of a Jacobian or running product, rows top to bottom.

    Parameters
    ----------
    matrix : numpy.ndarray
        Shape ``(r, c)``.
    title : str
        Shown above, with the shape added.
    row_title, column_title : str
        What rows and columns index.
    column_labels : sequence of str
        Names of the columns, or empty for 1-based indices.
    size : int
        Font size.
    """
    # Axis ticks: 1-based indices, or the given names
    rows, cols = matrix.shape
    x = list(column_labels) if len(column_labels) == cols else list(range(1, cols + 1))
    y = list(range(1, rows + 1))
    limit = float(np.max(np.abs(matrix))) if matrix.size else 1.0

    # Diverging colours centred on zero; values written in when few
    heat = go.Heatmap(
        z=matrix,
        x=x,
        y=y,
        colorscale="RdBu",
        zmid=0.0,
        zmin=-limit or -1.0,
        zmax=limit or 1.0,
        texttemplate="%{z:.2g}" if rows * cols <= 64 and cols <= 8 else None,
        hovertemplate="row %{y}, column %{x}: %{z:.6g}<extra></extra>",
        colorbar={"thickness": 12},
    )
    fig = go.Figure(heat)
    fig.update_yaxes(title_text=row_title, autorange="reversed", type="category")
    fig.update_xaxes(title_text=column_title, type="category")
    height = int(min(560, max(200, 34 * rows + 150 + 2 * size)))
    return _layout(fig, f"{title}  ({rows} × {cols})", size, height)


def vector_figure(
    values: np.ndarray, title: str, labels: Sequence[str] = (), size: int = FONT_SIZE
) -> go.Figure:
    """A vector as a one-row heatmap, with its values written in."""
    row = np.asarray(values, dtype=np.float64).reshape(1, -1)
    return matrix_figure(row, title, "", "entry", labels, size)


def _colour(k: int) -> str:
    """Colour of class ``k``."""
    return CLASS_COLOURS[k % len(CLASS_COLOURS)]


def data_figure(
    data: bp.Dataset, highlight: int, size: int = FONT_SIZE
) -> go.Figure:
    """Scatter of a 2-D data set, one colour per class, one point ringed."""
    # One trace per class
    fig = go.Figure()
    for k, name in enumerate(data.class_names):
        points = data.features[data.labels == k]
        fig.add_trace(
            go.Scatter(
                x=points[:, 0],
                y=points[:, 1],
                mode="markers",
                name=f"class {name}",
                marker={"size": 7, "opacity": 0.85, "color": _colour(k)},
            )
        )

    # The traced example
    point = data.features[highlight]
    fig.add_trace(
        go.Scatter(
            x=[point[0]], y=[point[1]], mode="markers", name=f"example {highlight}",
            marker={
                "size": 16,
                "symbol": "circle-open",
                "line": {"width": 3},
                "color": "black",
            },
        )
    )
    fig.update_xaxes(title_text=data.feature_names[0])
    fig.update_yaxes(title_text=data.feature_names[1], scaleanchor="x")
    return _layout(fig, f"{data.name}: {len(data.labels)} points", size, 360)


def gradient_figure(
    trace: bp.Trace, reference: bp.AutogradResult, size: int = FONT_SIZE
) -> go.Figure:
    """The chain's gradient beside autograd's, entry by entry."""
    # Parameter names of every layer, in vec order
    labels = [
        f"{name}: {label}"
        for name, layer_labels in zip(trace.names, trace.param_labels, strict=True)
        for label in layer_labels
    ]
    index = list(range(1, len(labels) + 1))
    auto = np.concatenate([np.empty(0), *reference.gradients])

    # Two bar series side by side
    fig = go.Figure(
        [
            go.Bar(x=index, y=trace.gradient_vector, name="product of Jacobians",
                   hovertext=labels),
            go.Bar(x=index, y=auto, name="torch.autograd", hovertext=labels),
        ]
    )
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(title_text="parameter (all layers, vec order)")
    fig.update_yaxes(title_text="dL/dθ")
    return _layout(fig, "Gradient: chain rule vs autograd", size, 380)


def loss_figure(result: bp.TrainingResult, size: int = FONT_SIZE) -> go.Figure:
    """Loss and accuracy over the training steps."""
    steps = list(range(len(result.losses)))
    fig = go.Figure(
        [
            go.Scatter(x=steps, y=result.losses, name="mean loss", mode="lines"),
            go.Scatter(
                x=steps, y=result.accuracies, name="accuracy", mode="lines",
                yaxis="y2", line={"dash": "dot"},
            ),
        ]
    )
    fig.update_layout(
        xaxis={"title": {"text": "gradient-descent step"}},
        yaxis={"title": {"text": "mean loss"}},
        yaxis2={
            "title": {"text": "accuracy"},
            "overlaying": "y",
            "side": "right",
            "range": [0, 1.02],
            "tickvals": [0, 0.25, 0.5, 0.75, 1.0],
            "tickformat": ".0%",
            "showgrid": False,
        },
        legend={"orientation": "h", "y": -0.3},
    )
    return _layout(fig, "Training loss", size, 360)


def boundary_figure(
    result: bp.TrainingResult, data: bp.Dataset, size: int = FONT_SIZE
) -> go.Figure:
    """Decision regions at the recorded steps, with a slider through them."""
    # Regions coloured like the classes' points
    count = max(data.n_classes, 2)
    scale = []
    for k in range(count):
        scale += [[k / count, _colour(k)], [(k + 1) / count, _colour(k)]]

    def heat(grid: bp.BoundaryGrid) -> go.Heatmap:
        return go.Heatmap(
            x=grid.xs,
            y=grid.ys,
            z=grid.classes,
            colorscale=scale,
            zmin=-0.5,
            zmax=count - 0.5,
            opacity=0.3,
            showscale=False,
            hovertemplate="predicted class %{z}<extra></extra>",
        )

    # Points on top, one trace per class
    points = [
        go.Scatter(
            x=data.features[data.labels == k, 0],
            y=data.features[data.labels == k, 1],
            mode="markers",
            name=f"class {name}",
            marker={"size": 6, "color": _colour(k)},
        )
        for k, name in enumerate(data.class_names)
    ]
    grids = result.boundaries
    fig = go.Figure(data=[heat(grids[-1]), *points])
    fig.frames = [
        go.Frame(data=[heat(grid)], traces=[0], name=str(grid.step)) for grid in grids
    ]

    # A slider over the frames, under the plot, starting at the end
    steps = [
        {
            "label": str(grid.step),
            "method": "animate",
            "args": [[str(grid.step)], {"mode": "immediate", "frame": {"duration": 0}}],
        }
        for grid in grids
    ]
    fig.update_layout(
        sliders=[
            {
                "active": len(grids) - 1,
                "currentvalue": {"visible": False},
                "steps": steps,
                "x": 0.0,
                "len": 1.0,
                "y": -0.2,
                "yanchor": "top",
            }
        ],
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0.0},
    )
    fig.update_xaxes(title_text=data.feature_names[0])
    fig.update_yaxes(title_text=data.feature_names[1], scaleanchor="x")
    fig = _layout(fig, "Decision regions", size, 560)
    fig.update_layout(margin={"b": 170, "t": 80 + size})
    return fig
