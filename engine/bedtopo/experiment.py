"""One bed-topography experiment: split, train, predict, baselines, scores.

:func:`run_experiment` is the single call that the dashboard page, the job
queue and the command line make. On one 150 m grid (EPSG:3413) and its
radar picks it:

1. checks that the grid and the picks fit together (:func:`check_inputs`);
2. splits the picks into a test fold and training picks
   (:func:`engine.bedtopo.splits.make_split`), and the training lines again
   into fitting lines and *validation* lines (:func:`inner_split`); the
   test picks are never seen before scoring: the validation lines, not the
   test lines, drive early stopping and the calibration of the
   uncertainty;
3. trains the model (:func:`engine.bedtopo.training.train`) on the fitting
   picks, or, with ``ensemble > 1``, one member per validation fold, each
   from its own seed, stopped early on its own validation lines (a
   cross-fitted deep ensemble);
4. predicts the whole grid on the model's fine grid with MC dropout (and
   the members' spread) (:func:`engine.bedtopo.predict.predict_region`)
   and scales its standard deviation so that the 90 % interval holds 90 %
   of the validation picks (:func:`engine.bedtopo.predict.calibrate_sigma`,
   ``"coverage"``), each member scored on its own validation lines;
5. runs the baselines (:func:`engine.bedtopo.baselines.fit_predict`) on
   *all* training picks, validation lines included, which favours the
   baselines slightly;
6. scores every method on the same test picks
   (:func:`engine.bedtopo.evaluate.evaluate_bed`), adds the scores at the
   test picks on fast ice (surface speed above ``fast_speed``, the trunk
   where most of the error sits) and, for the block split, against
   BedMachine on the cells where BedMachine was withheld, and lays them
   out with :func:`engine.bedtopo.evaluate.comparison_table`.

A run folder receives, each file written to a temporary file and moved
into place: ``model.pt``, ``scaler.json`` and ``history.json`` (from
training; the first member's, the others' in ``members/1``, ...),
``prediction.nc``, ``scores.csv``, ``metrics.json``, ``heldout.csv`` and,
last, ``config.json``, which holds the training settings read by
:func:`engine.bedtopo.training.load_model` and the experiment settings;
a folder whose ``config.json`` lacks them is not a finished experiment.
:func:`load_experiment` reads a folder back.

Nothing here prints; progress goes to the callback, notices to
``warnings`` (:class:`ExperimentWarning`) and ``logging``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

from engine.bedtopo.baselines import BASELINES, fit_predict
from engine.bedtopo.errors import BedTopoError, ConfigError, FeatureError
from engine.bedtopo.evaluate import (
    block_average,
    comparison_table,
    evaluate_bed,
    sample_at,
    score_grid,
    score_points,
)
from engine.bedtopo.features import FeatureConfig, make_features
from engine.bedtopo.predict import (
    calibrate_sigma,
    predict_region,
    scale_uncertainty,
    write_netcdf,
)
from engine.bedtopo.splits import (
    Split,
    SplitConfig,
    block_ids,
    deal_to_folds,
    holdout_lines,
    make_split,
)
from engine.bedtopo.targets import pick_beds
from engine.bedtopo.training import (
    CancelFlag,
    TrainConfig,
    TrainResult,
    _atomic_write,
    _save_json,
    load_model,
    train,
)
from engine.data.errors import DataWarning
from engine.data.radar import picks_in_grid

__all__ = [
    "EXPERIMENT_VERSION",
    "QUICK_BASELINES",
    "ExperimentError",
    "ExperimentWarning",
    "ExperimentConfig",
    "ExperimentResult",
    "check_inputs",
    "inner_split",
    "run_experiment",
    "load_experiment",
    "load_members",
]

log = logging.getLogger(__name__)

#: Version of the experiment part of a run folder's config.json.
EXPERIMENT_VERSION = 1

#: Baselines of the quick preset: the prior, radar alone, the best rival.
QUICK_BASELINES = ("bedmachine", "linear", "gbr_residual")

#: Sub-folder of a run folder holding ensemble members 1, 2, ... (the first
#: member is the run folder itself).
MEMBERS_FOLDER = "members"

#: Share of the experiment's progress bar taken by each stage, in order.
_STAGES = {"train": 0.75, "predict": 0.1, "baselines": 0.1, "evaluate": 0.05}


class ExperimentError(BedTopoError):
    """The grid and the radar picks of an experiment do not fit together."""


class ExperimentWarning(DataWarning):
    """A part of an experiment was skipped (a baseline, the calibration)."""


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Settings of :func:`run_experiment`.

    Parameters
    ----------
    train : TrainConfig
        The model and its training; its ``factor`` sets the output grid.
    split : SplitConfig
        The test hold-out; a 4-fold flight-line split, fold 0, by default.
    baselines : tuple of str
        Names from :data:`engine.bedtopo.baselines.BASELINES`, scored on
        the same test picks; all of them by default.
    mc_samples : int
        MC-dropout passes of the prediction, 0 (no uncertainty) or >= 2.
    calibrate : bool
        Scale the predicted std so that the 90 % interval holds 90 % of the
        validation picks (never the test picks).
    validation_folds : int
        The training lines are dealt to this many folds by pick count and
        one fold is the validation set (early stopping, calibration); 0
        trains on every training line, stops on the training loss and
        cannot calibrate.
    validation_buffer_m : float
        Fitting picks closer than this to a validation pick are dropped, m.
        Smaller than the test split's buffer: the validation lines only
        choose the epoch and scale the std, and a 2 km buffer around them
        would cost many fitting picks where lines cross.
    fast_speed : float
        Surface speed above which a test pick counts as fast ice in the
        ``fast.*`` scores, m a-1.
    ensemble : int
        Members of a cross-fitted deep ensemble, >= 1. Member ``m`` is
        trained from seed ``train.seed + m`` with validation fold ``m``
        (modulo ``validation_folds``) of the training lines, so that every
        training line fits most members and each member stops early on
        lines it has not seen. The map is the members' mean, its std pools
        the members' spread and their MC-dropout spread, and the
        calibration scores each member only on its own validation lines.
        1 trains one model (MC dropout alone).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    baselines: tuple[str, ...] = BASELINES
    mc_samples: int = 20
    calibrate: bool = True
    validation_folds: int = 5
    validation_buffer_m: float = 500.0
    fast_speed: float = 1000.0
    ensemble: int = 1

    def __post_init__(self) -> None:
        unknown = [name for name in self.baselines if name not in BASELINES]
        if unknown:
            raise ConfigError(
                f"unknown baselines {unknown}; choose among {BASELINES}"
            )
        samples = self.mc_samples
        if not isinstance(samples, int) or samples == 1 or samples < 0:
            raise ConfigError(
                f"mc_samples must be 0 or at least 2, got {self.mc_samples!r}"
            )
        folds = self.validation_folds
        if not isinstance(folds, int) or folds == 1 or folds < 0:
            raise ConfigError(
                f"validation_folds must be 0 or at least 2, got {folds!r}"
            )
        single = self.mc_samples == 0 and self.ensemble == 1
        if self.calibrate and (folds == 0 or single):
            raise ConfigError(
                "calibrate=True needs validation lines and an uncertainty: set "
                "validation_folds >= 2 and mc_samples >= 2 (or ensemble >= 2), "
                "or calibrate=False"
            )
        if not self.validation_buffer_m >= 0:
            raise ConfigError(
                f"validation_buffer_m must be >= 0 m, got {self.validation_buffer_m!r}"
            )
        if not self.fast_speed > 0:
            raise ConfigError(f"fast_speed must be > 0 m/a, got {self.fast_speed!r}")
        if not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise ConfigError(
                f"ensemble must be an integer >= 1 (members), got {self.ensemble!r}"
            )

    @classmethod
    def quick(cls, **changes: Any) -> ExperimentConfig:
        """A first look: the quick model and three baselines.

        :meth:`TrainConfig.quick`, the baselines of
        :data:`QUICK_BASELINES` and 10 MC-dropout passes.
        """
        base = cls(train=TrainConfig.quick(), baselines=QUICK_BASELINES, mc_samples=10)
        return replace(base, **changes)

    @classmethod
    def standard(cls, **changes: Any) -> ExperimentConfig:
        """The default model of :meth:`TrainConfig.standard`, every baseline."""
        return replace(cls(train=TrainConfig.standard()), **changes)

    @classmethod
    def paper(cls, **changes: Any) -> ExperimentConfig:
        """The released network and loss (:meth:`TrainConfig.paper`)."""
        return replace(cls(train=TrainConfig.paper()), **changes)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> ExperimentConfig:
        """The preset of that name: ``"quick"``, ``"standard"`` or ``"paper"``."""
        presets = {"quick": cls.quick, "standard": cls.standard, "paper": cls.paper}
        if name not in presets:
            raise ConfigError(
                f"unknown preset {name!r}; choose one of {sorted(presets)}"
            )
        return presets[name](**changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (see :meth:`from_dict`)."""
        return {
            "version": EXPERIMENT_VERSION,
            "train": self.train.to_dict(),
            "split": asdict(self.split),
            "baselines": list(self.baselines),
            "mc_samples": self.mc_samples,
            "calibrate": self.calibrate,
            "validation_folds": self.validation_folds,
            "validation_buffer_m": self.validation_buffer_m,
            "fast_speed": self.fast_speed,
            "ensemble": self.ensemble,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Rebuild a config from :meth:`to_dict`'s output."""
        if data.get("version") != EXPERIMENT_VERSION:
            raise ConfigError(
                f"experiment settings of version {data.get('version')!r} are not "
                f"version {EXPERIMENT_VERSION}; run the experiment again"
            )
        return cls(
            train=TrainConfig.from_dict(data["train"]),
            split=SplitConfig(**data["split"]),
            baselines=tuple(data["baselines"]),
            mc_samples=int(data["mc_samples"]),
            calibrate=bool(data["calibrate"]),
            validation_folds=int(data["validation_folds"]),
            validation_buffer_m=float(data["validation_buffer_m"]),
            fast_speed=float(data["fast_speed"]),
            # Folders written before ensembles existed hold one model.
            ensemble=int(data.get("ensemble", 1)),
        )


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` returns and :func:`load_experiment` reads.

    Attributes
    ----------
    prediction : xarray.Dataset or None
        :func:`~engine.bedtopo.predict.predict_region`'s output on the fine
        grid (dims ``("y", "x")``, EPSG:3413): ``bed``, ``bed_std``,
        ``bed_lower_90``, ``bed_upper_90`` (m, float32), the std and the
        interval calibrated; None when the run was cancelled.
    table : pandas.DataFrame
        :func:`~engine.bedtopo.evaluate.comparison_table`: one row per
        method, the model first, then the baselines, all scored on the
        same test picks: ``points.*`` (all test picks), ``fast.*`` (test
        picks on fast ice), ``grid.*`` (against BedMachine, 150 m),
        ``withheld.*`` (block split: against BedMachine where it was
        withheld), ``twin.*`` (twins: against the true bed). Empty when
        cancelled.
    heldout : pandas.DataFrame
        One row per scored test pick: ``x``, ``y`` (m, EPSG:3413),
        ``line_id`` (the hold-out line), ``speed`` (m a-1), ``radar_bed``,
        ``model_bed``, ``model_std``, ``model_lower_90``,
        ``model_upper_90``, ``bedmachine_bed`` and ``<baseline>_bed`` for
        each other baseline (m). Empty when cancelled.
    history : list of dict
        Training's per-epoch records (:data:`~engine.bedtopo.training.
        PROGRESS_KEYS`); ``val_rmse`` is on the validation lines.
    config : ExperimentConfig
        The settings.
    run_dir : pathlib.Path or None
        The run folder, if any.
    cancelled : bool
        Stopped through ``cancel``; what existed was saved.
    metrics : dict
        Counts of picks, the calibration factor, the validation coverage,
        seconds per stage.
    model : TrainResult or None
        The trained model and its feature scaler.
    """

    prediction: xr.Dataset | None
    table: pd.DataFrame
    heldout: pd.DataFrame
    history: list[dict[str, Any]]
    config: ExperimentConfig
    run_dir: Path | None = None
    cancelled: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    model: TrainResult | None = None


def check_inputs(grid: xr.Dataset, picks: pd.DataFrame) -> pd.DataFrame:
    """Check that a grid and its radar picks can make an experiment.

    Parameters
    ----------
    grid : xarray.Dataset
        The 150 m grid, dims ``("y", "x")``, EPSG:3413.
    picks : pandas.DataFrame
        Radar picks (``CONVENTIONS.md``).

    Returns
    -------
    pandas.DataFrame
        The picks inside the grid (:func:`engine.data.radar.picks_in_grid`).

    Raises
    ------
    FeatureError
        The grid lacks ``bed_bedmachine`` or ``surface_elevation``, or one of
        them is NaN everywhere.
    ExperimentError
        No pick inside the grid, or none with a usable bed.
    """
    # The two fields every method needs.
    for name, use in (
        ("bed_bedmachine", "the prior, the training target and a baseline"),
        ("surface_elevation", "the radar bed (surface minus thickness)"),
    ):
        if name not in grid:
            raise FeatureError(
                f"the grid has no {name}, needed as {use}; read a grid that has "
                "it (read_topo_hdf5 or read_bedmachine)"
            )
        if not np.isfinite(grid[name].to_numpy()).any():
            raise FeatureError(
                f"{name} is NaN in every cell of the grid; choose a region on the "
                "ice sheet, or a grid file that holds the field"
            )

    # Picks inside the grid, with a bed.
    inside = picks_in_grid(picks.reset_index(drop=True), grid)
    if len(inside) == 0:
        x, y = grid["x"].to_numpy(), grid["y"].to_numpy()
        raise ExperimentError(
            f"none of the {len(picks)} radar picks falls inside the grid (x "
            f"{x.min():.0f}..{x.max():.0f} m, y {y.min():.0f}..{y.max():.0f} m, "
            "EPSG:3413); use radar of the same region as the grid, or choose a "
            "region that flight lines cross"
        )
    _, _, bed = pick_beds(inside, grid)
    if not np.isfinite(bed).any():
        raise ExperimentError(
            f"none of the {len(inside)} radar picks inside the grid gives a bed "
            "(no thickness, or NaN surface elevation under them); use picks with "
            "ice thickness and a grid with surface_elevation there"
        )
    return inside


def inner_split(
    grid: xr.Dataset,
    picks: pd.DataFrame,
    outer: Split,
    *,
    folds: int,
    buffer_m: float | None = None,
    seed: int = 0,
    fold: int = 0,
) -> Split:
    """Split the training part of a split into fitting and validation parts.

    The validation part mirrors the test: lines for a line split, blocks
    for a block split.

    Lines: the training picks of ``outer`` are grouped into flight lines
    (:func:`engine.bedtopo.splits.holdout_lines`, with ``outer``'s line
    settings), the lines dealt to ``folds`` folds by pick count, and fold
    ``fold`` becomes the validation set. Fitting picks within ``buffer_m`` of a
    validation pick, or on a validation cell, are dropped, as the line
    split does for test picks. The validation cells are no
    BedMachine target either.

    Parameters
    ----------
    grid : xarray.Dataset
        The 150 m grid of the split.
    picks : pandas.DataFrame
        The picks table of the split (same rows, same order).
    outer : Split
        The test split.
    folds : int
        Number of folds of the training lines (blocks), >= 2.
    buffer_m : float or None
        Fitting picks closer than this to a validation pick (cells closer
        than this to a validation block) are dropped, m; ``outer``'s
        ``buffer_m`` when None.
    seed : int
        Seed of the tie-breaking when dealing lines.
    fold : int
        The validation fold, ``0 <= fold < folds``.

    Returns
    -------
    Split
        ``outer`` with ``heldout_picks`` the validation picks and
        ``train_picks`` the fitting picks; the test picks are in neither,
        and their cells stay out of every target. With fewer than two
        training lines (blocks), ``outer`` with no held-out pick (nothing
        to validate on).
    """
    picks = picks.reset_index(drop=True)
    cfg = outer.config
    buffer_m = cfg.buffer_m if buffer_m is None else buffer_m
    if not 0 <= fold < folds:
        raise ConfigError(f"fold must be in 0..{folds - 1}, got {fold!r}")
    if cfg.kind == "blocks":
        return _inner_blocks(grid, picks, outer, folds, buffer_m, seed, fold)
    train_positions = outer.train_picks

    # Lines of the training picks.
    lines = holdout_lines(
        picks,
        max_step_m=cfg.max_step_m,
        join_gap_m=cfg.join_gap_m,
        join_angle_deg=cfg.join_angle_deg,
    )[train_positions]
    ids, inverse, counts = np.unique(lines, return_inverse=True, return_counts=True)
    if ids.size < 2:
        empty = np.zeros(0, dtype="int64")
        return replace(outer, heldout_picks=empty)

    # Validation lines: one fold of the training lines.
    fold_of_line = deal_to_folds(counts, folds, seed=seed)
    held = fold_of_line[inverse] == fold
    inside = picks_in_grid(picks, grid)
    row = inside.loc[train_positions, "row"].to_numpy()
    col = inside.loc[train_positions, "col"].to_numpy()

    # Fitting picks: away from the validation picks and their cells.
    fit = ~held
    if buffer_m > 0 and held.any() and fit.any():
        xy = inside.loc[train_positions, ["x", "y"]].to_numpy()
        distance, _ = cKDTree(xy[held]).query(xy[fit], k=1)
        fit[np.flatnonzero(fit)[distance <= buffer_m]] = False
    shape = outer.train_radar_mask.shape
    held_cells = np.zeros(shape, dtype=bool)
    held_cells[row[held], col[held]] = True
    fit &= ~held_cells[row, col]
    fit_cells = np.zeros(shape, dtype=bool)
    fit_cells[row[fit], col[fit]] = True

    return replace(
        outer,
        train_radar_mask=outer.train_radar_mask & fit_cells,
        heldout_radar_mask=held_cells,
        bedmachine_train_mask=outer.bedmachine_train_mask & ~held_cells,
        train_picks=train_positions[fit],
        heldout_picks=train_positions[held],
    )


def _inner_blocks(
    grid: xr.Dataset,
    picks: pd.DataFrame,
    outer: Split,
    folds: int,
    buffer_m: float,
    seed: int,
    fold: int,
) -> Split:
    """Validation blocks inside the training part of a block split."""
    cfg = outer.config
    shape = outer.patch_allowed.shape
    spacing = float(abs(grid["x"].values[1] - grid["x"].values[0]))
    train_positions = outer.train_picks
    inside = picks_in_grid(picks, grid)
    row = inside.loc[train_positions, "row"].to_numpy()
    col = inside.loc[train_positions, "col"].to_numpy()

    # Blocks with training cells, dealt to folds by training-pick count.
    block_id = block_ids(shape, cfg.block_size_m / spacing)
    candidates = np.unique(block_id[outer.patch_allowed])
    if candidates.size < 2:
        return replace(outer, heldout_picks=np.zeros(0, dtype="int64"))
    counts = np.bincount(block_id[row, col], minlength=int(block_id.max()) + 1)
    fold_of_block = np.full(counts.size, -1, dtype="int64")
    fold_of_block[candidates] = deal_to_folds(counts[candidates], folds, seed=seed)

    # The validation blocks (their training cells) and the band around them.
    validation_block = (fold_of_block[block_id] == fold) & outer.patch_allowed
    excluded = validation_block
    if buffer_m > 0 and validation_block.any():
        distance = ndimage.distance_transform_edt(~validation_block) * spacing
        excluded = distance <= buffer_m

    # Fitting picks outside the band; validation picks inside the blocks.
    held = validation_block[row, col]
    fit = ~excluded[row, col]
    return replace(
        outer,
        train_radar_mask=outer.train_radar_mask & ~excluded,
        heldout_radar_mask=_cell_mask(shape, row[held], col[held]),
        bedmachine_train_mask=outer.bedmachine_train_mask & ~excluded,
        patch_allowed=outer.patch_allowed & ~excluded,
        train_picks=train_positions[fit],
        heldout_picks=train_positions[held],
        validation_cells=validation_block & outer.bedmachine_train_mask,
    )


def _cell_mask(shape: tuple[int, int], row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Bool mask of the given cells."""
    mask = np.zeros(shape, dtype=bool)
    mask[row, col] = True
    return mask


def run_experiment(
    grid: xr.Dataset,
    picks: pd.DataFrame,
    config: ExperimentConfig | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelFlag | None = None,
) -> ExperimentResult:
    """Train, predict, calibrate and score a model against the baselines.

    See the module docstring for the steps.

    Parameters
    ----------
    grid : xarray.Dataset
        The 150 m grid, dims ``("y", "x")``, ``y`` decreasing, EPSG:3413,
        with the surface fields, ``bed_bedmachine`` and
        ``bed_bedmachine_error`` (m); a twin's ``bed_true`` adds the
        ``twin.*`` scores.
    picks : pandas.DataFrame
        Radar picks (``CONVENTIONS.md``) in file order.
    config : ExperimentConfig, optional
        Settings; ``ExperimentConfig()`` when omitted.
    run_dir : path-like, optional
        Folder for the run's files (created if needed).
    progress : callable, optional
        Called with dicts: during training, training's per-epoch dict
        (:data:`~engine.bedtopo.training.PROGRESS_KEYS`) plus ``"stage":
        "train"`` and ``"fraction"`` (0..1 of the whole experiment); then
        ``{"stage": "predict" | "baselines" | "evaluate", "fraction": ...}``
        (and ``"method"`` for each baseline).
    cancel : object with ``is_set()``, optional
        E.g. a ``threading.Event``. When set, training stops between
        batches, or the run stops before its next stage; the model trained
        so far is saved and the result has ``cancelled=True``, no
        prediction and empty tables.

    Returns
    -------
    ExperimentResult

    Raises
    ------
    FeatureError, ExperimentError
        Inputs that do not fit (see :func:`check_inputs`).
    ConfigError
        A fold without test picks, or no training patch fits.
    """
    config = ExperimentConfig() if config is None else config
    run_path = None if run_dir is None else Path(run_dir)
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
    picks = picks.reset_index(drop=True)
    seconds: dict[str, float] = {}

    def report(stage: str, done: float, **extra: Any) -> None:
        if progress is None:
            return
        before = 0.0
        for name, share in _STAGES.items():
            if name == stage:
                break
            before += share
        fraction = min(1.0, before + _STAGES[stage] * min(max(done, 0.0), 1.0))
        progress({**extra, "stage": stage, "fraction": fraction})

    def stopped() -> bool:
        return cancel is not None and cancel.is_set()

    # Inputs and the test split.
    check_inputs(grid, picks)
    train_cfg = config.train
    outer = make_split(
        grid,
        picks,
        config.split,
        patch_size=train_cfg.patch_size,
        patch_stride=train_cfg.patch_stride,
    )

    # Validation lines of each member: fold m of the training lines.
    splits = [
        _member_split(grid, picks, outer, config, member)
        for member in range(config.ensemble)
    ]
    split = splits[0]
    if len(split.heldout_picks) == 0 and config.validation_folds and config.calibrate:
        warnings.warn(
            "fewer than two training flight lines: nothing to validate on, "
            "so the uncertainty is not calibrated and early stopping follows "
            "the training loss",
            ExperimentWarning,
            stacklevel=2,
        )
    metrics: dict[str, Any] = {
        "n_picks_in_grid": int(len(picks_in_grid(picks, grid))),
        "n_fit_picks": int(len(split.train_picks)),
        "n_validation_picks": int(len(split.heldout_picks)),
        "n_test_picks": int(len(outer.heldout_picks)),
        "n_test_lines": int(np.unique(outer.pick_line[outer.heldout_picks]).size),
        "ensemble": config.ensemble,
    }

    # Training, one member after another; the first in the run folder.
    start = time.perf_counter()
    members: list[TrainResult] = []
    for member, member_split in enumerate(splits):

        def on_epoch(record: dict[str, Any], member: int = member) -> None:
            done = (member + record["epoch"] / max(record["epochs"], 1)) / len(splits)
            report("train", done, member=member, **record)

        member_dir = run_path
        if run_path is not None and member > 0:
            member_dir = run_path / MEMBERS_FOLDER / str(member)
        trained = train(
            grid,
            picks,
            replace(train_cfg, seed=train_cfg.seed + member),
            split=member_split,
            progress=on_epoch,
            cancel=cancel,
            run_dir=member_dir,
        )
        members.append(trained)
        if trained.cancelled or stopped():
            seconds["train"] = time.perf_counter() - start
            return _cancelled(config, members[0], metrics, seconds, run_path)
    trained = members[0]
    seconds["train"] = time.perf_counter() - start

    # Prediction of the whole grid, with its uncertainty, calibrated.
    start = time.perf_counter()
    models = [member.model for member in members]
    prediction = predict_region(
        models[0] if len(models) == 1 else models,
        grid,
        scaler=trained.scaler,
        mc_samples=config.mc_samples,
        device=trained.device,
        seed=train_cfg.seed,
        progress=lambda done, total: report("predict", done / total),
    )
    own_beds = [prediction]
    if len(models) > 1 and config.validation_folds:
        # Each member's own map, scored on the lines it did not fit.
        own_beds = [
            predict_region(
                model, grid, scaler=trained.scaler, device=trained.device
            )
            for model in models
        ]
    metrics.update(_calibration(prediction, own_beds, grid, picks, splits, config))
    bedmachine_val = next(
        (r["bedmachine_rmse"] for r in trained.history if r["bedmachine_rmse"]), None
    )
    metrics["validation_bedmachine_rmse"] = bedmachine_val
    member_val = metrics.get("validation_rmse_member0", metrics["validation_rmse"])
    if bedmachine_val is not None and member_val >= bedmachine_val:
        warnings.warn(
            f"the model's RMSE on the validation lines "
            f"({member_val:.1f} m) is not below BedMachine's "
            f"({bedmachine_val:.1f} m): the radar did not improve on the prior "
            "here; compare with the bedmachine row before using the map",
            ExperimentWarning,
            stacklevel=2,
        )
    if metrics["sigma_calibration"] != 1.0:
        prediction = scale_uncertainty(prediction, metrics["sigma_calibration"])
    seconds["predict"] = time.perf_counter() - start
    if stopped():
        return _cancelled(config, trained, metrics, seconds, run_path)

    # Baselines from all training picks.
    start = time.perf_counter()
    train_x, train_y, train_bed = _finite_beds(picks, grid, outer.train_picks)
    surface_features = None
    if any(name.startswith("gbr") for name in config.baselines):
        with warnings.catch_warnings():
            # The model's own features already warned about the same gaps.
            warnings.simplefilter("ignore", DataWarning)
            surface_features = make_features(grid, config=FeatureConfig())
    baseline_beds: dict[str, np.ndarray] = {}
    for index, name in enumerate(config.baselines):
        if stopped():
            return _cancelled(config, trained, metrics, seconds, run_path)
        report("baselines", index / len(config.baselines), method=name)
        try:
            baseline_beds[name] = fit_predict(
                name,
                grid,
                surface_features,
                train_x,
                train_y,
                train_bed,
                seed=train_cfg.seed,
            )
        except FeatureError as exc:
            warnings.warn(
                f"the {name} baseline was skipped: {exc}",
                ExperimentWarning,
                stacklevel=2,
            )
    seconds["baselines"] = time.perf_counter() - start

    # Scores of every method on the same test picks.
    start = time.perf_counter()
    report("evaluate", 0.0)
    table, heldout = _score(
        grid, picks, outer, config, prediction, baseline_beds, trained.config.model
    )
    seconds["evaluate"] = time.perf_counter() - start
    metrics["seconds"] = seconds
    report("evaluate", 1.0)

    # The run folder, config.json last.
    result = ExperimentResult(
        prediction=prediction,
        table=table,
        heldout=heldout,
        history=trained.history,
        config=config,
        run_dir=run_path,
        cancelled=False,
        metrics=metrics,
        model=trained,
    )
    if run_path is not None:
        _save_experiment(result, run_path)
    return result


def _finite_beds(
    picks: pd.DataFrame, grid: xr.Dataset, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Easting, northing and radar bed of the picks with a finite bed, m."""
    easting, northing, bed = pick_beds(picks.iloc[positions], grid)
    keep = np.isfinite(bed)
    return easting[keep], northing[keep], bed[keep]


def _member_split(
    grid: xr.Dataset,
    picks: pd.DataFrame,
    outer: Split,
    config: ExperimentConfig,
    member: int,
) -> Split:
    """The fitting and validation picks of one ensemble member."""
    if not config.validation_folds:
        return replace(outer, heldout_picks=np.zeros(0, dtype="int64"))
    return inner_split(
        grid,
        picks,
        outer,
        folds=config.validation_folds,
        buffer_m=config.validation_buffer_m,
        seed=config.split.seed,
        fold=member % config.validation_folds,
    )


def _calibration(
    prediction: xr.Dataset,
    own_beds: list[xr.Dataset],
    grid: xr.Dataset,
    picks: pd.DataFrame,
    splits: list[Split],
    config: ExperimentConfig,
) -> dict[str, Any]:
    """Calibration factor of the std from the validation picks.

    With one model, its map is scored on its validation picks. With an
    ensemble, each member's own map (``own_beds[m]``) is scored on the
    validation picks of that member, which the others may have fitted,
    and the ensemble's std is taken at the same picks: the residuals are
    a single member's, larger than the mean's, so the factor errs on the
    wide side.
    """
    out: dict[str, Any] = {
        "sigma_calibration": 1.0,
        "validation_rmse": float("nan"),
        "validation_coverage_raw": float("nan"),
    }
    if config.mc_samples == 0 and len(own_beds) == 1:
        return out

    # Residuals and stds at each member's validation picks.
    residuals, stds = [], []
    for index, (bed_map, split) in enumerate(zip(own_beds, splits, strict=False)):
        if len(split.heldout_picks) == 0:
            continue
        x, y, bed = _finite_beds(picks, grid, split.heldout_picks)
        residual = sample_at(bed_map, x, y, method="nearest") - bed
        std = sample_at(prediction, x, y, variable="bed_std", method="nearest")
        usable = np.isfinite(residual) & np.isfinite(std)
        if index == 0 and len(own_beds) > 1:
            rms = float(np.sqrt(np.mean(residual[usable] ** 2)))
            out["validation_rmse_member0"] = rms
        residuals.append(residual[usable])
        stds.append(std[usable])
    if not residuals:
        return out
    residual, std = np.concatenate(residuals), np.concatenate(stds)
    out["validation_rmse"] = float(np.sqrt(np.mean(residual**2)))
    inside = np.abs(residual) <= 1.6448536269514722 * std
    out["validation_coverage_raw"] = float(inside.mean())

    # The factor that puts 90 % of the validation picks in the interval.
    if config.calibrate:
        try:
            out["sigma_calibration"] = calibrate_sigma(
                std, residual, method="coverage"
            )
        except ConfigError as exc:
            warnings.warn(
                f"the uncertainty was not calibrated: {exc}",
                ExperimentWarning,
                stacklevel=3,
            )
    return out


def _bed_field(bed: xr.Dataset | np.ndarray, grid: xr.Dataset) -> xr.DataArray:
    """A method's bed as a DataArray on its own grid."""
    if isinstance(bed, xr.Dataset):
        return bed["bed"]
    return xr.DataArray(
        bed, dims=("y", "x"), coords={"x": grid["x"].values, "y": grid["y"].values}
    )


def _score(
    grid: xr.Dataset,
    picks: pd.DataFrame,
    outer: Split,
    config: ExperimentConfig,
    prediction: xr.Dataset,
    baseline_beds: dict[str, np.ndarray],
    model_name: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison table and the held-out picks table."""
    # Test picks, their line, and the surface speed there.
    easting, northing, bed = pick_beds(picks.iloc[outer.heldout_picks], grid)
    keep = np.isfinite(bed)
    easting, northing, bed = easting[keep], northing[keep], bed[keep]
    lines = outer.pick_line[outer.heldout_picks][keep]
    speed = np.full(bed.shape, np.nan)
    if {"surface_velocity_x", "surface_velocity_y"} <= set(grid.data_vars):
        speed = np.hypot(
            *(
                sample_at(grid, easting, northing, variable=name, method="nearest")
                for name in ("surface_velocity_x", "surface_velocity_y")
            )
        )
    fast = speed > config.fast_speed

    # Every pick in the grid defines "away from radar" on a twin.
    all_x, all_y, _ = pick_beds(picks, grid)
    withheld = ~outer.bedmachine_train_mask
    reference = grid["bed_bedmachine"].transpose("y", "x").to_numpy()

    methods: dict[str, xr.Dataset | np.ndarray] = {model_name: prediction}
    methods.update(baseline_beds)
    results: dict[str, dict[str, Any]] = {}
    heldout = pd.DataFrame(
        {
            "x": easting,
            "y": northing,
            "line_id": lines,
            "speed": speed,
            "radar_bed": bed,
        }
    )
    for name, method_bed in methods.items():
        scores: dict[str, Any] = evaluate_bed(
            method_bed,
            grid,
            test_x=easting,
            test_y=northing,
            test_bed=bed,
            pick_x=all_x,
            pick_y=all_y,
        )
        field_ = _bed_field(method_bed, grid)
        at_points = sample_at(field_, easting, northing, method="nearest")
        scores["fast"] = score_points(at_points[fast], bed[fast])
        if outer.config.kind == "blocks":
            factor = field_.sizes["x"] // grid.sizes["x"]
            coarse = block_average(field_.transpose("y", "x"), factor)
            grid_scores = score_grid(coarse, reference, mask=withheld)
            scores["withheld"] = {
                k: grid_scores[k] for k in ("n", "rmse", "mae", "bias", "r2")
            }
        results[name] = scores

        # Each method's bed at the test picks.
        if name == model_name:
            heldout["model_bed"] = at_points
            for variable, column in (
                ("bed_std", "model_std"),
                ("bed_lower_90", "model_lower_90"),
                ("bed_upper_90", "model_upper_90"),
            ):
                heldout[column] = sample_at(
                    prediction, easting, northing, variable=variable, method="nearest"
                )
            heldout["bedmachine_bed"] = sample_at(
                grid, easting, northing, variable="bed_bedmachine", method="nearest"
            )
        elif name != "bedmachine":
            heldout[f"{name}_bed"] = at_points
    heldout = heldout.astype({c: "float64" for c in heldout.columns if c != "line_id"})
    return comparison_table(results), heldout


def _cancelled(
    config: ExperimentConfig,
    trained: TrainResult,
    metrics: dict[str, Any],
    seconds: dict[str, float],
    run_path: Path | None,
) -> ExperimentResult:
    """The result of a cancelled run, saved as far as it got."""
    metrics["seconds"] = seconds
    result = ExperimentResult(
        prediction=None,
        table=_empty_table(),
        heldout=pd.DataFrame(),
        history=trained.history,
        config=config,
        run_dir=run_path,
        cancelled=True,
        metrics=metrics,
        model=trained,
    )
    if run_path is not None:
        _save_experiment(result, run_path)
    return result


def _empty_table() -> pd.DataFrame:
    """A comparison table without rows."""
    table = pd.DataFrame()
    table.index.name = "method"
    return table


def _save_experiment(result: ExperimentResult, run_path: Path) -> None:
    """Write the run's outputs, then config.json, each atomically."""
    # Prediction and tables.
    if result.prediction is not None:
        write_netcdf(result.prediction, run_path / "prediction.nc")
    if not result.cancelled:
        _atomic_write(
            run_path / "scores.csv",
            lambda stream: result.table.to_csv(stream),
            binary=False,
        )
        _atomic_write(
            run_path / "heldout.csv",
            lambda stream: result.heldout.to_csv(stream, index=False),
            binary=False,
        )
    table = result.table.to_dict(orient="split")
    _save_json(
        {"table": table, "cancelled": result.cancelled, **result.metrics},
        run_path / "metrics.json",
    )

    # config.json: training's settings (for load_model) and the experiment's.
    config_path = run_path / "config.json"
    saved = json.loads(config_path.read_text()) if config_path.is_file() else {}
    saved["experiment"] = result.config.to_dict()
    saved["experiment_cancelled"] = result.cancelled
    _save_json(saved, config_path)


def load_members(run_dir: str | os.PathLike[str]) -> list[TrainResult]:
    """Every trained model of a run folder: the first, then its ensemble.

    Parameters
    ----------
    run_dir : path-like
        A folder written by :func:`engine.bedtopo.training.train` or by
        :func:`run_experiment`; the members of an ensemble beyond the first
        lie in its ``members/1``, ``members/2``, ... sub-folders.

    Returns
    -------
    list of TrainResult
        One per member, each read by
        :func:`engine.bedtopo.training.load_model` (weights only); one item
        for a single model.

    Raises
    ------
    ConfigError
        The folder, or a member's folder, is not a finished training run.
    """
    run_path = Path(run_dir)
    members = [load_model(run_path)]

    # As many members as the experiment trained (a folder reused by a
    # smaller ensemble may hold older ones, which are not read).
    saved = json.loads((run_path / "config.json").read_text())
    count = int(saved.get("experiment", {}).get("ensemble", 1))
    for member in range(1, count):
        members.append(load_model(run_path / MEMBERS_FOLDER / str(member)))
    return members


def load_experiment(run_dir: str | os.PathLike[str]) -> ExperimentResult:
    """Read a run folder written by :func:`run_experiment`.

    Parameters
    ----------
    run_dir : path-like
        The run folder.

    Returns
    -------
    ExperimentResult
        With the model read by :func:`engine.bedtopo.training.load_model`
        (``torch.load(..., weights_only=True)``) and the prediction loaded
        into memory.

    Raises
    ------
    ConfigError
        The folder is not a finished experiment.
    """
    run_path = Path(run_dir)
    config_path = run_path / "config.json"
    saved = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if "experiment" not in saved or not (run_path / "metrics.json").is_file():
        raise ConfigError(
            f"{run_path} is not a finished experiment folder (no experiment "
            "settings in config.json); run the experiment again"
        )
    config = ExperimentConfig.from_dict(saved["experiment"])
    cancelled = bool(saved.get("experiment_cancelled", False))
    trained = load_model(run_path)

    # Tables: the comparison table from JSON (exact floats), picks from CSV.
    metrics = json.loads((run_path / "metrics.json").read_text())
    split_table = metrics.pop("table")
    metrics.pop("cancelled", None)
    if split_table["index"]:
        table = pd.DataFrame(
            split_table["data"],
            index=pd.Index(split_table["index"], name="method"),
            columns=split_table["columns"],
        )
    else:
        table = _empty_table()
    heldout_path = run_path / "heldout.csv"
    heldout = pd.read_csv(heldout_path) if heldout_path.is_file() else pd.DataFrame()

    # The prediction, in memory, with its CRS.
    prediction = None
    prediction_path = run_path / "prediction.nc"
    if prediction_path.is_file():
        prediction = xr.load_dataset(prediction_path, decode_coords="all")
    return ExperimentResult(
        prediction=prediction,
        table=table,
        heldout=heldout,
        history=trained.history,
        config=config,
        run_dir=run_path,
        cancelled=cancelled,
        metrics=metrics,
        model=trained,
    )

