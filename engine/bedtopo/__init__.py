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
- ``losses``' default for the default model is
  ``LossConfig.regularised()``: the radar term with the BedMachine term as
  a fixed-weight prior, because the dynamic balance leaves the radar
  unused by a model that starts from BedMachine; the ``paper`` preset
  keeps the dynamic balance;
- ``training``: ``train``, ``TrainConfig`` and its presets, checkpoints
  in a run folder and ``load_model``;
- ``predict``: tiled, seamless prediction of a region on the fine grid
  with MC-dropout (or ensemble) uncertainty, ``calibrate_sigma`` and
  ``scale_uncertainty``, NetCDF and GeoTIFF writers;
- ``evaluate``: scores at held-out radar, against a reference grid and on
  twins, and ``comparison_table``;
- ``baselines``: BedMachine, linear interpolation, kriging (of the bed or
  of the radar-minus-BedMachine residual) and gradient boosting;
- ``experiment``: ``run_experiment``, the one call of the page, the job and
  the CLI (split, training, calibrated prediction, baselines, scores, a run
  folder) with ``ExperimentConfig`` presets and ``load_experiment``.

The command line is ``python -m engine bed evaluate|train|predict``.

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
from engine.bedtopo.experiment import (
    ExperimentConfig,
    ExperimentError,
    ExperimentResult,
    ExperimentWarning,
    load_experiment,
    run_experiment,
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
    "ExperimentConfig",
    "ExperimentError",
    "ExperimentResult",
    "ExperimentWarning",
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
    "load_experiment",
    "make_features",
    "pick_beds",
    "radar_to_fine_grid",
    "raw_features",
    "run_experiment",
    "trend_names",
]
