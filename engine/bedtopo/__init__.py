"""DeepTopoNet: bed topography of Greenland from surface data and radar.

What exists:

- ``features``: feature channels of a grid (surface fields, their
  gradients, a trend surface, optionally BedMachine's bed and error),
  z-scored with a ``FeatureScaler`` that is saved as JSON beside a model;
- ``models``: ``PaperModel``, the released residual network, and
  ``DeepTopoNet``, the default, which corrects BedMachine on a finer grid
  (150, 75 or 50 m), with ``block_mean`` to bring the fine grid back to
  150 m, and an MC-dropout switch;
- ``losses``: ``BalancedLoss``, the radar and BedMachine terms with the
  paper's dynamic balance, fixed weights or learned uncertainty weights;
- ``targets``: radar picks averaged on the fine cells of a window;
- ``splits``: flight-line and block hold-outs (and the released, leaky
  random patch split, with a warning);
- ``patches``: training targets, the patches a split allows, and a torch
  Dataset of them;
- ``training``: ``train``, ``TrainConfig`` and its presets, checkpoints
  in a run folder and ``load_model``.

Not written yet: tiled prediction over a region (with MC-dropout
sampling) and evaluation against radar and BedMachine.

Nothing here imports streamlit or prints; messages go to ``warnings`` and
``logging``.
"""

from engine.bedtopo.errors import (
    BedTopoError,
    ConfigError,
    FeatureError,
    FeatureWarning,
    FilledFeatureWarning,
    MissingFeatureWarning,
)
from engine.bedtopo.features import (
    BEDMACHINE_FIELDS,
    SURFACE_FIELDS,
    FeatureConfig,
    FeatureScaler,
    FeatureSet,
    make_features,
    raw_features,
    trend_names,
)
from engine.bedtopo.losses import (
    LOSS_MODES,
    RADAR_TARGETS,
    BalancedLoss,
    LossConfig,
    LossTerms,
)
from engine.bedtopo.models import (
    SUBGRID_FACTORS,
    DeepTopoNet,
    DeepTopoNetConfig,
    PaperModel,
    PaperModelConfig,
    ResidualBlock,
    block_mean,
    count_parameters,
)
from engine.bedtopo.targets import (
    FineRadar,
    fine_coordinates,
    pick_beds,
    radar_to_fine_grid,
)

__all__ = [
    "BEDMACHINE_FIELDS",
    "LOSS_MODES",
    "RADAR_TARGETS",
    "SUBGRID_FACTORS",
    "SURFACE_FIELDS",
    "BalancedLoss",
    "BedTopoError",
    "ConfigError",
    "DeepTopoNet",
    "DeepTopoNetConfig",
    "FeatureConfig",
    "FeatureError",
    "FeatureScaler",
    "FeatureSet",
    "FeatureWarning",
    "FilledFeatureWarning",
    "FineRadar",
    "LossConfig",
    "LossTerms",
    "MissingFeatureWarning",
    "PaperModel",
    "PaperModelConfig",
    "ResidualBlock",
    "block_mean",
    "count_parameters",
    "fine_coordinates",
    "make_features",
    "pick_beds",
    "radar_to_fine_grid",
    "raw_features",
    "trend_names",
]
