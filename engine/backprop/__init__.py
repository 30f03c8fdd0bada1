"""Backpropagation as a product of Jacobians.

A network is a composition of vector functions ``a_l = f_l(theta_l,
a_{l-1})``. The gradient of the loss with respect to layer ``l``'s
parameters is the matrix product

``dL/da_L . da_L/da_{L-1} ... da_{l+1}/da_l . da_l/dtheta_l``.

For ``f(W, x) = s(W x)`` the last factor is ``diag(s'(W x)) (x^T kron I)``;
here the affine map and the activation are separate layers, so the chain
shows ``diag(s'(W x))`` and ``[x^T kron I | I]`` as two factors.

Modules:

- ``layers``: dense, activations, softmax, 1-D convolution, each with its
  input and parameter Jacobians written from formulas;
- ``losses``: squared error and cross-entropy;
- ``network``: specifications (``NetworkSpec``) and ``build_network``;
- ``chain``: gradients in reverse or forward order, and their cost;
- ``trace``: a step-by-step record of one forward and backward pass;
- ``export``: the trace as LaTeX and as JSON;
- ``reference``: the same networks in torch, to compare with autograd;
- ``datasets``: toy 2-D sets and a small-CSV loader;
- ``training``: gradient descent with the chain's gradients.

Nothing here imports streamlit or prints; messages go to ``warnings`` and
``logging``.
"""

from engine.backprop.chain import (
    ORDERS,
    ChainCost,
    ChainResult,
    Product,
    batch_gradients,
    chain_costs,
    chain_gradients,
    cost_summary,
)
from engine.backprop.datasets import (
    LABEL_COLUMN,
    MAX_CSV_BYTES,
    MAX_CSV_CLASSES,
    MAX_CSV_FEATURES,
    MAX_CSV_ROWS,
    TOY_DATASETS,
    Dataset,
    bed_cells,
    encode_targets,
    load_csv,
    make_toy,
    standardize,
)
from engine.backprop.errors import (
    BackpropError,
    CSVColumnError,
    CSVError,
    CSVSizeError,
    CSVValueError,
    SpecError,
    TargetError,
)
from engine.backprop.export import (
    chain_latex,
    trace_from_json,
    trace_to_json,
    trace_to_latex,
)
from engine.backprop.layers import (
    ACTIVATIONS,
    Activation,
    Conv1D,
    Dense,
    Layer,
    Softmax,
)
from engine.backprop.losses import LOSSES, CrossEntropy, Loss, SquaredError, make_loss
from engine.backprop.network import (
    HEADS,
    LAYER_KINDS,
    LayerSpec,
    Network,
    NetworkSpec,
    build_network,
    classifier_spec,
)
from engine.backprop.reference import (
    AutogradResult,
    GradientComparison,
    autograd_gradients,
    compare_gradients,
)
from engine.backprop.trace import Step, Trace, build_trace
from engine.backprop.training import (
    BoundaryGrid,
    TrainingResult,
    boundary_grid,
    predict_classes,
    train,
)

__all__ = [
    "ACTIVATIONS",
    "HEADS",
    "LABEL_COLUMN",
    "LAYER_KINDS",
    "LOSSES",
    "MAX_CSV_BYTES",
    "MAX_CSV_CLASSES",
    "MAX_CSV_FEATURES",
    "MAX_CSV_ROWS",
    "ORDERS",
    "TOY_DATASETS",
    "Activation",
    "AutogradResult",
    "BackpropError",
    "BoundaryGrid",
    "CSVColumnError",
    "CSVError",
    "CSVSizeError",
    "CSVValueError",
    "ChainCost",
    "ChainResult",
    "Conv1D",
    "CrossEntropy",
    "Dataset",
    "Dense",
    "GradientComparison",
    "Layer",
    "LayerSpec",
    "Loss",
    "Network",
    "NetworkSpec",
    "Product",
    "Softmax",
    "SpecError",
    "SquaredError",
    "Step",
    "TargetError",
    "Trace",
    "TrainingResult",
    "autograd_gradients",
    "batch_gradients",
    "boundary_grid",
    "build_network",
    "bed_cells",
    "build_trace",
    "chain_costs",
    "chain_gradients",
    "chain_latex",
    "classifier_spec",
    "compare_gradients",
    "cost_summary",
    "encode_targets",
    "load_csv",
    "make_loss",
    "make_toy",
    "predict_classes",
    "standardize",
    "trace_from_json",
    "trace_to_json",
    "trace_to_latex",
    "train",
]
