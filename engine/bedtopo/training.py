"""The training loop of the DeepTopoNet models, with honest validation.

:func:`train` takes a 150 m grid and its radar picks, and:

1. builds the feature channels, with the z-score statistics fitted on the
   training cells only (the split's ``patch_allowed`` cells);
2. builds the targets (:func:`engine.bedtopo.patches.grid_targets`): the
   BedMachine bed and the radar bed (grid surface minus radar thickness,
   on the fine cell of each training pick);
3. cuts the training patches the split allows;
4. trains the model with Adam (optionally a cyclic learning rate) on the
   balanced loss, and after each epoch scores the held-out radar picks:
   the RMSE (m) of the predicted bed at each pick's fine cell (or, for a
   model that does not take BedMachine as input, trained on a block split
   whose validation blocks are marked, the RMSE against BedMachine on
   those blocks, as the test blocks are scored);
5. stops early when the validation RMSE (or, without held-out picks, the
   training loss) has not improved for ``patience`` epochs after an
   optional warm-up (``min_epochs``), and keeps the best epoch's weights
   (or, with ``average_epochs``, their moving average, which is then
   what step 4 scores).

A run folder, when given, holds ``model.pt`` (the best state dict),
``config.json`` (the training and model settings), ``scaler.json`` (the
feature scaler) and ``history.json``; each is written to a temporary file
in the folder and moved into place with ``os.replace``, so that a reader
never sees half a file. :func:`load_model` reads them back with
``torch.load(..., weights_only=True)``.

Notes
-----
On a CPU, some weights drift into subnormal floats after a few hundred
Adam steps, which makes convolutions about ten times slower; training
therefore flushes subnormals to zero on a CPU
(``torch.set_flush_denormal(True)``) and turns it off again afterwards
(PyTorch cannot report the previous setting, so "off", its default, is
restored).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, RandomSampler

from engine.atomic import atomic_write
from engine.bedtopo.errors import ConfigError
from engine.bedtopo.features import (
    FeatureConfig,
    FeatureScaler,
    make_features,
    raw_features,
)
from engine.bedtopo.losses import BalancedLoss, LossConfig
from engine.bedtopo.models import (
    SUBGRID_FACTORS,
    SUBGRID_MODES,
    DeepTopoNet,
    DeepTopoNetConfig,
    PaperModel,
    PaperModelConfig,
    block_mean,
)
from engine.bedtopo.patches import PatchDataset, grid_targets, training_origins
from engine.bedtopo.splits import Split, SplitConfig, make_split
from engine.bedtopo.targets import pick_beds

__all__ = [
    "MODEL_KINDS",
    "PROGRESS_KEYS",
    "TrainConfig",
    "TrainResult",
    "train",
    "load_model",
    "resolve_device",
]

log = logging.getLogger(__name__)

#: Models :func:`train` can build.
MODEL_KINDS = ("deeptoponet", "paper")

#: Keys of the dict given to the progress callback after each epoch.
PROGRESS_KEYS = (
    "epoch",
    "epochs",
    "loss",
    "radar_loss",
    "bedmachine_loss",
    "gamma_radar",
    "gamma_bedmachine",
    "val_rmse",
    "bedmachine_rmse",
    "lr",
    "best_epoch",
    "seconds",
    "seconds_left",
    "batches",
)

#: Version of the run folder's config.json.
RUN_VERSION = 1

# Cells of margin around the held-out picks when predicting them: more
# than the receptive field of five residual blocks (10 cells).
_VALIDATION_MARGIN = 16


class CancelFlag(Protocol):
    """Anything with ``is_set()``, such as a ``threading.Event``."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of :func:`train`.

    Parameters
    ----------
    model : {"deeptoponet", "paper"}
        The default model (BedMachine plus a subgrid correction) or the
        released network.
    factor : int
        Subgrid factor of DeepTopoNet, 1, 2 or 3 (150, 75 or 50 m); the
        paper model needs 1.
    subgrid : {"smooth", "free"}
        How DeepTopoNet makes its fine grid
        (:class:`~engine.bedtopo.models.DeepTopoNetConfig`); ``"smooth"``
        by default, ``"free"`` as an ablation.
    widths : tuple of int or None
        Residual block widths; the released ``(32, 64, 128, 128, 256)``
        when None.
    dropout : float
        Dropout2d probability in each block.
    features : FeatureConfig or None
        Feature channels; None gives the model's own: surface fields,
        gradients and trend, plus BedMachine bed and error for DeepTopoNet.
    loss : LossConfig
        Loss settings; :meth:`LossConfig.regularised` (radar data term,
        BedMachine prior term, fixed weights) by default, which the
        presets but ``paper`` keep.
    patch_size, patch_stride : int
        Patch side and step, 150 m cells.
    batch_size : int
        Patches per batch.
    epochs : int
        Largest number of epochs.
    learning_rate, weight_decay : float
        Adam's settings.
    cyclic_lr : bool
        Cycle the learning rate between ``cyclic_lr_range`` (triangular,
        ``cyclic_half_cycle_epochs`` epochs up, as many down).
    cyclic_lr_range : tuple of float
        Lowest and highest learning rate of the cycle.
    cyclic_half_cycle_epochs : int
        Epochs of one rise of the cycle.
    patience : int
        Epochs without improvement before stopping; 0 never stops early.
    min_epochs : int
        Warm-up, >= 0: the best weights are chosen among epochs from this
        one on, and the patience counts from it. Without it, a noisy
        validation score (a few validation blocks, a cyclic learning rate)
        can pick a barely trained model from the first epochs. A warm-up
        longer than ``epochs`` keeps the last epoch.
    average_epochs : float
        When > 0, an exponential moving average of the weights (and of the
        batch-norm statistics) over about this many epochs is what is
        validated and kept: a step's weight in it decays by
        ``1 - 1 / (average_epochs * batches)`` a step. It smooths the
        epoch-to-epoch swings of a cyclic learning rate. 0: the weights
        as trained.
    min_batches : int
        Least number of batches in an epoch, >= 0. A small region has few
        patches (a 96 x 128 grid gives 35 of 32 cells at stride 16, three
        batches), so that one pass over them is hardly a step; the
        patches are then drawn in successive shuffles until the epoch has
        this many batches. 0: one pass, whatever the region's size.
    augment : bool
        Random flips (see :mod:`engine.bedtopo.patches`).
    seed : int
        Seed of the weights, the batch order and the flips.
    device : str
        "auto" (CUDA, then Apple MPS, then CPU) or a torch device string.
    mixed_precision : bool
        float16 autocast with a gradient scaler; used on CUDA only.
    threads : int or None
        Torch CPU threads while training (restored afterwards); torch's own
        choice when None.
    """

    model: Literal["deeptoponet", "paper"] = "deeptoponet"
    factor: int = 3
    subgrid: Literal["smooth", "free"] = "smooth"
    widths: tuple[int, ...] | None = None
    dropout: float = 0.2
    features: FeatureConfig | None = None
    loss: LossConfig = field(default_factory=LossConfig.regularised)
    patch_size: int = 32
    patch_stride: int = 16
    batch_size: int = 16
    epochs: int = 50
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    cyclic_lr: bool = False
    cyclic_lr_range: tuple[float, float] = (1e-5, 1e-3)
    cyclic_half_cycle_epochs: int = 4
    patience: int = 10
    min_epochs: int = 0
    average_epochs: float = 0.0
    min_batches: int = 0
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ConfigError(f"model must be one of {MODEL_KINDS}, got {self.model!r}")
        if self.factor not in SUBGRID_FACTORS:
            raise ConfigError(
                f"factor must be one of {SUBGRID_FACTORS}, got {self.factor!r}"
            )
        if self.subgrid not in SUBGRID_MODES:
            raise ConfigError(
                f"subgrid must be one of {SUBGRID_MODES}, got {self.subgrid!r}"
            )
        if self.model == "paper" and self.factor != 1:
            raise ConfigError(
                "the paper model predicts on the 150 m grid: set factor=1, or use "
                "model='deeptoponet' for a subgrid output"
            )
        for name in ("patch_size", "patch_stride", "batch_size", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.min_batches, int) or self.min_batches < 0:
            raise ConfigError(
                f"min_batches must be an integer >= 0, got {self.min_batches!r}"
            )
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(
                f"patience must be an integer >= 0, got {self.patience!r}"
            )
        if not isinstance(self.min_epochs, int) or self.min_epochs < 0:
            raise ConfigError(
                f"min_epochs must be an integer >= 0, got {self.min_epochs!r}"
            )
        if not (self.learning_rate > 0 and self.weight_decay >= 0):
            raise ConfigError("learning_rate must be > 0 and weight_decay >= 0")
        low, high = self.cyclic_lr_range
        if not 0 < low < high:
            raise ConfigError(
                f"cyclic_lr_range must be (low, high) with 0 < low < high, got "
                f"{self.cyclic_lr_range!r}"
            )
        if not self.average_epochs >= 0:
            raise ConfigError(
                f"average_epochs must be >= 0, got {self.average_epochs!r}"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or None, got {self.threads!r}")

    @classmethod
    def quick(cls, **changes: Any) -> TrainConfig:
        """A first look in about a minute on a laptop CPU.

        DeepTopoNet at 75 m with narrow blocks (16 to 64 wide, about 0.1 M
        parameters instead of 1.5 M), 32-cell patches, up to 15 epochs at a
        learning rate of 1e-3, patience 5: about 2 s an epoch on the
        300 x 200 Helheim grid on two idle CPU cores.
        """
        base = cls(
            factor=2,
            widths=(16, 32, 32, 64, 64),
            epochs=15,
            learning_rate=1e-3,
            patience=5,
        )
        return replace(base, **changes)

    @classmethod
    def standard(cls, **changes: Any) -> TrainConfig:
        """The default model at 50 m, sized to train on a CPU in minutes.

        DeepTopoNet at 50 m with blocks 32 to 128 wide (about a third of
        the released 1.5 M parameters: the released widths take about 30 s
        an epoch on two CPU cores), 32-cell patches with stride 16, Adam at
        1e-4 with a cyclic learning rate 1e-5..1e-3, up to 40 epochs,
        patience 10. Pass ``widths=None`` for the released widths on a GPU.
        """
        base = cls(
            factor=3,
            widths=(32, 48, 64, 96, 128),
            epochs=40,
            cyclic_lr=True,
            patience=10,
        )
        return replace(base, **changes)

    @classmethod
    def paper(cls, **changes: Any) -> TrainConfig:
        """The released setting, for comparison.

        The released network on surface features only, 150 m output,
        16-cell patches with stride 8, batch 16, Adam 1e-4 (weight decay
        1e-5) with a cyclic learning rate 1e-5..1e-3, the paper's loss
        (BedMachine target on radar cells, no gamma floor), up to 100
        epochs, patience 10.

        Two additions steady its early stopping on 10 km validation
        blocks, where the score of the weights as trained jumps between
        120 and 360 m from epoch to epoch: a warm-up of one learning-rate
        cycle (8 epochs) before the best epoch is chosen, and a moving
        average of the weights over 4 epochs (half a cycle), which is what
        is scored and kept. On Helheim's four block folds
        (``benchmarks/bed_accuracy.py --skip lines twin``) the mean RMSE
        against BedMachine was 389.8 m without either (one fold kept its
        second epoch: 1025 m), 202.4 m with the warm-up and 188.9 m with
        both; gradient boosting on the same features scored 179.9 m.
        """
        base = cls(
            model="paper",
            factor=1,
            loss=LossConfig.paper(),
            patch_size=16,
            patch_stride=8,
            epochs=100,
            cyclic_lr=True,
            patience=10,
            min_epochs=8,
            average_epochs=4.0,
        )
        return replace(base, **changes)

    def feature_config(self) -> FeatureConfig:
        """The feature channels used: the given ones or the model's own."""
        if self.features is not None:
            return self.features
        return FeatureConfig(include_bedmachine=self.model == "deeptoponet")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (see :meth:`from_dict`)."""
        data = asdict(self)
        data["features"] = None if self.features is None else asdict(self.features)
        data["loss"] = asdict(self.loss)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict`'s output."""
        data = dict(data)
        if data.get("features") is not None:
            features = dict(data["features"])
            features["fields"] = tuple(features["fields"])
            data["features"] = FeatureConfig(**features)
        data["loss"] = LossConfig(**data["loss"])
        # Runs saved before the smooth subgrid existed learned free sub-cells.
        data.setdefault("subgrid", "free")
        if data.get("widths") is not None:
            data["widths"] = tuple(data["widths"])
        data["cyclic_lr_range"] = tuple(data["cyclic_lr_range"])
        return cls(**data)


@dataclass
class TrainResult:
    """What :func:`train` returns, and :func:`load_model` reads back.

    Attributes
    ----------
    model : torch.nn.Module
        The model with the best epoch's weights, in eval mode, on
        ``device``.
    scaler : FeatureScaler
        The feature statistics to predict with.
    config : TrainConfig
        The settings.
    history : list of dict
        One dict per finished epoch, with the keys of
        :data:`PROGRESS_KEYS`; ``val_rmse`` and ``bedmachine_rmse`` are
        None without held-out picks.
    best_epoch : int
        The epoch whose weights the model holds (1-based); 0 when no epoch
        finished (the initial weights).
    cancelled : bool
        Training was stopped through ``cancel``.
    device : str
        The torch device trained on.
    run_dir : pathlib.Path or None
        The run folder, when one was given.
    """

    model: nn.Module
    scaler: FeatureScaler
    config: TrainConfig
    history: list[dict[str, Any]]
    best_epoch: int
    cancelled: bool
    device: str
    run_dir: Path | None = None


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for a setting: "auto" picks CUDA, then MPS, then CPU.

    Parameters
    ----------
    device : str
        "auto" or any torch device string ("cpu", "cuda:1", "mps").

    Returns
    -------
    torch.device
    """
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def train(
    grid: xr.Dataset,
    picks: pd.DataFrame,
    config: TrainConfig | None = None,
    *,
    split: Split | SplitConfig | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelFlag | None = None,
    run_dir: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a bed model on a grid and its radar picks.

    Parameters
    ----------
    grid : xarray.Dataset
        The 150 m grid (dims ``("y", "x")``, EPSG:3413, ``y`` decreasing)
        with the surface fields of the features, ``bed_bedmachine`` (m),
        and ``bed_bedmachine_error`` (m) for DeepTopoNet.
    picks : pandas.DataFrame
        Radar picks (``CONVENTIONS.md``) in file order; picks outside the
        grid are ignored.
    config : TrainConfig, optional
        Settings; ``TrainConfig()`` when omitted.
    split : Split or SplitConfig, optional
        What to hold out; a SplitConfig is turned into a Split with the
        config's patch size and stride. Without one every pick and cell
        trains, and early stopping follows the training loss.
    progress : callable, optional
        Called after each epoch with a dict of :data:`PROGRESS_KEYS`:
        ``loss``, ``radar_loss``, ``bedmachine_loss`` (means over the
        epoch's batches, m^2 for the default loss), ``gamma_radar``,
        ``gamma_bedmachine`` (means), ``val_rmse`` (m, the held-out picks;
        None without; for a model without BedMachine among its inputs and
        a split with ``validation_cells``, the 150 m bed against
        BedMachine on those cells instead), ``bedmachine_rmse`` (m,
        BedMachine at the held-out picks; None when validated on
        ``validation_cells``), ``lr``, ``best_epoch``, ``seconds`` elapsed,
        ``seconds_left`` (estimated for the remaining epochs) and
        ``batches`` (optimiser steps in the epoch).
    cancel : object with ``is_set()``, optional
        E.g. a ``threading.Event``, checked between batches; when set, the
        run stops and returns the best weights so far, marked cancelled.
    run_dir : path-like, optional
        Folder for the checkpoint files (created if needed).

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        No training patch fits (the grid, or the cells a split leaves, are
        smaller than a patch).
    """
    config = TrainConfig() if config is None else config
    device = resolve_device(config.device)
    run_path = None if run_dir is None else Path(run_dir)
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
    picks = picks.reset_index(drop=True)
    if isinstance(split, SplitConfig):
        split = make_split(
            grid,
            picks,
            split,
            patch_size=config.patch_size,
            patch_stride=config.patch_stride,
        )
    torch.manual_seed(config.seed)

    # Features, scaled with statistics of the training cells only.
    feature_config = config.feature_config()
    raw, channels, extent = raw_features(grid, config=feature_config)
    if split is not None:
        raw = np.where(split.patch_allowed[None], raw, np.nan)
    scaler = FeatureScaler.fit(raw, channels, trend_extent=extent)
    features = make_features(grid, config=feature_config, scaler=scaler)

    # Targets and the patches the split allows.
    targets = grid_targets(grid, picks, factor=config.factor, split=split)
    shape = targets.bedmachine.shape
    size = config.patch_size
    origins = training_origins(
        shape, size=size, stride=config.patch_stride, split=split
    )
    if len(origins) == 0:
        raise ConfigError(
            f"no {size} x {size} training patch fits in the {shape[0]} x {shape[1]} "
            "grid outside the held-out cells; choose a smaller patch_size, a larger "
            "region or smaller blocks"
        )
    dataset = PatchDataset(
        features.values,
        targets,
        origins,
        size=size,
        augment=config.augment,
        channels=features.channels,
        scaler=scaler,
        seed=config.seed,
    )
    generator = torch.Generator().manual_seed(config.seed)
    wanted = config.min_batches * config.batch_size
    if wanted > len(dataset):
        # Successive shuffles of the patches fill the epoch's batches.
        sampler = RandomSampler(dataset, num_samples=wanted, generator=generator)
        loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler)
    else:
        loader = DataLoader(
            dataset, batch_size=config.batch_size, shuffle=True, generator=generator
        )

    # Model and loss.
    model = _build_model(config, len(features.channels), targets).to(device)
    loss_fn = BalancedLoss(config.loss).to(device)
    parameters = list(model.parameters()) + list(loss_fn.parameters())
    optimiser = torch.optim.Adam(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = None
    if config.cyclic_lr:
        low, high = config.cyclic_lr_range
        scheduler = torch.optim.lr_scheduler.CyclicLR(
            optimiser,
            base_lr=low,
            max_lr=high,
            step_size_up=max(1, config.cyclic_half_cycle_epochs * len(loader)),
            cycle_momentum=False,
        )
    amp = config.mixed_precision and device.type == "cuda"
    grad_scaler = torch.amp.GradScaler("cuda", enabled=amp)

    # The moving average of the weights, when asked for: what is scored.
    averaged = None
    if config.average_epochs > 0:
        decay = 1.0 - 1.0 / max(config.average_epochs * len(loader), 1.0)
        averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
    scored = model if averaged is None else averaged.module

    # Held-out picks and BedMachine's own score there; or, for a model
    # that does not see BedMachine, BedMachine in validation blocks.
    validation = _validation_set(grid, picks, split, config.factor)
    bedmachine_rmse = None
    if validation is not None:
        bedmachine_rmse = _rmse(validation["bedmachine_at_picks"], validation["bed"])
    blocks = None
    if split is not None and not feature_config.include_bedmachine:
        blocks = _validation_blocks(split, grid)
    if blocks is not None:
        validation, bedmachine_rmse = None, None

    # The CPU settings of the run, restored in the finally below.
    old_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)

    history: list[dict[str, Any]] = []
    best_state = copy.deepcopy(scored.state_dict())
    best_score, best_epoch, cancelled = math.inf, 0, False
    warm_up = min(config.min_epochs, config.epochs)
    start = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            # One pass over the training patches.
            model.train()
            sums = dict.fromkeys(PROGRESS_KEYS[2:7], 0.0)
            n_batches = 0
            for batch in loader:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                terms = _step(
                    model, loss_fn, optimiser, grad_scaler, batch, config, device, amp
                )
                if scheduler is not None:
                    scheduler.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                for key in sums:
                    sums[key] += terms[key]
                n_batches += 1
            if cancelled:
                log.info("training cancelled during epoch %d", epoch)
                break

            # Score the held-out picks; keep the best weights.
            means = {k: v / max(n_batches, 1) for k, v in sums.items()}
            val_rmse = None
            if validation is not None:
                val_rmse = _validate(
                    scored, features.values, targets, validation, config.factor, device
                )
            elif blocks is not None:
                val_rmse = _validate_blocks(
                    scored, features.values, targets, blocks, config.factor, device
                )
            score = val_rmse if val_rmse is not None else means["loss"]
            if epoch >= warm_up and score < best_score:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(scored.state_dict())
                if run_path is not None:
                    _save_state(best_state, run_path / "model.pt")

            # Report the epoch.
            seconds = time.perf_counter() - start
            record = {
                "epoch": epoch,
                "epochs": config.epochs,
                **means,
                "batches": n_batches,
                "val_rmse": val_rmse,
                "bedmachine_rmse": bedmachine_rmse,
                "lr": float(optimiser.param_groups[0]["lr"]),
                "best_epoch": best_epoch,
                "seconds": seconds,
                "seconds_left": seconds / epoch * (config.epochs - epoch),
            }
            history.append(record)
            log.debug("epoch %d: %s", epoch, record)
            if progress is not None:
                progress(dict(record))
            since = epoch - max(best_epoch, warm_up)
            if config.patience and since >= config.patience:
                log.info("early stop after epoch %d (best %d)", epoch, best_epoch)
                break
    finally:
        if device.type == "cpu":
            torch.set_flush_denormal(False)
        torch.set_num_threads(old_threads)

    # The best weights, and the run folder.
    model.load_state_dict(best_state)
    model.eval()
    result = TrainResult(
        model=model,
        scaler=scaler,
        config=config,
        history=history,
        best_epoch=best_epoch,
        cancelled=cancelled,
        device=str(device),
        run_dir=run_path,
    )
    if run_path is not None:
        _save_run(result, run_path)
    return result


def _build_model(config: TrainConfig, in_channels: int, targets: Any) -> nn.Module:
    """The configured model for ``in_channels`` feature channels."""
    widths = {} if config.widths is None else {"widths": config.widths}
    if config.model == "paper":
        # Output in metres: the bed statistics of the training cells.
        beds = targets.bedmachine[targets.bedmachine_mask]
        return PaperModel(
            PaperModelConfig(
                in_channels=in_channels,
                dropout=config.dropout,
                target_mean=float(beds.mean()),
                target_std=float(max(beds.std(), 1.0)),
                **widths,
            )
        )
    return DeepTopoNet(
        DeepTopoNetConfig(
            in_channels=in_channels,
            dropout=config.dropout,
            factor=config.factor,
            subgrid=config.subgrid,
            **widths,
        )
    )


def _forward(
    model: nn.Module, features: torch.Tensor, bedmachine: torch.Tensor
) -> torch.Tensor:
    """Either model's prediction, ``(B, 1, f H, f W)`` in metres."""
    if isinstance(model, DeepTopoNet):
        return model(features, bedmachine)
    return model(features)


def _step(
    model: nn.Module,
    loss_fn: BalancedLoss,
    optimiser: torch.optim.Optimizer,
    grad_scaler: torch.amp.GradScaler,
    batch: tuple[torch.Tensor, ...],
    config: TrainConfig,
    device: torch.device,
    amp: bool,
) -> dict[str, float]:
    """One optimiser step on a batch; the loss parts as floats."""
    features, bedmachine, bed_mask, radar_bed, radar_mask = (
        t.to(device, non_blocking=True) for t in batch
    )

    # Forward (float16 on CUDA when asked), loss in float32.
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        prediction = _forward(model, features, bedmachine)
    terms = loss_fn(
        prediction.float(),
        bedmachine=bedmachine,
        valid=bed_mask,
        radar_bed=radar_bed,
        radar_mask=radar_mask,
        factor=config.factor,
    )

    # Backward and step.
    optimiser.zero_grad(set_to_none=True)
    grad_scaler.scale(terms.total).backward()
    grad_scaler.step(optimiser)
    grad_scaler.update()
    return {
        "loss": float(terms.total.detach()),
        "radar_loss": terms.radar_loss,
        "bedmachine_loss": terms.bedmachine_loss,
        "gamma_radar": terms.gamma_radar,
        "gamma_bedmachine": terms.gamma_bedmachine,
    }


def _validation_set(
    grid: xr.Dataset, picks: pd.DataFrame, split: Split | None, factor: int
) -> dict[str, Any] | None:
    """Held-out picks: their fine cells, radar bed and BedMachine there."""
    if split is None or len(split.heldout_picks) == 0:
        return None
    easting, northing, bed = pick_beds(picks.iloc[split.heldout_picks], grid)
    keep = np.isfinite(bed)
    if not keep.any():
        return None
    easting, northing, bed = easting[keep], northing[keep], bed[keep]

    # Fine row and column of each pick, from the grid's north-west corner.
    x = grid["x"].to_numpy()
    y = grid["y"].to_numpy()
    dx, dy = float(x[1] - x[0]), float(y[0] - y[1])
    col = np.floor((easting - (x[0] - dx / 2)) / (dx / factor)).astype("int64")
    row = np.floor(((y[0] + dy / 2) - northing) / (dy / factor)).astype("int64")
    row = np.clip(row, 0, factor * y.size - 1)
    col = np.clip(col, 0, factor * x.size - 1)
    bedmachine = grid["bed_bedmachine"].transpose("y", "x").to_numpy()
    return {
        "row": row,
        "col": col,
        "bed": bed,
        "bedmachine_at_picks": bedmachine[row // factor, col // factor],
    }


def _validate(
    model: nn.Module,
    features: np.ndarray,
    targets: Any,
    validation: dict[str, Any],
    factor: int,
    device: torch.device,
) -> float:
    """RMSE (m) of the predicted bed at the held-out picks' fine cells."""
    # The window around the held-out picks, with a margin.
    height, width = targets.bedmachine.shape
    rows, cols = validation["row"] // factor, validation["col"] // factor
    top = max(int(rows.min()) - _VALIDATION_MARGIN, 0)
    bottom = min(int(rows.max()) + _VALIDATION_MARGIN + 1, height)
    left = max(int(cols.min()) - _VALIDATION_MARGIN, 0)
    right = min(int(cols.max()) + _VALIDATION_MARGIN + 1, width)

    # Predict the window in one pass, in eval mode.
    model.eval()
    with torch.no_grad():
        window = torch.as_tensor(features[None, :, top:bottom, left:right]).to(device)
        base = torch.as_tensor(targets.bedmachine[None, None, top:bottom, left:right])
        prediction = _forward(model, window, base.to(device))[0, 0].float().cpu()
    predicted = prediction.numpy()[
        validation["row"] - factor * top, validation["col"] - factor * left
    ]
    return _rmse(predicted, validation["bed"])


def _validation_blocks(split: Split, grid: xr.Dataset) -> dict[str, Any] | None:
    """Cells of the split's validation blocks and their window, or None."""
    if split.validation_cells is None:
        return None
    bedmachine = grid["bed_bedmachine"].transpose("y", "x").to_numpy()
    cells = split.validation_cells & np.isfinite(bedmachine)
    if not cells.any():
        return None
    rows, cols = np.nonzero(cells)
    height, width = cells.shape
    top = max(int(rows.min()) - _VALIDATION_MARGIN, 0)
    bottom = min(int(rows.max()) + _VALIDATION_MARGIN + 1, height)
    left = max(int(cols.min()) - _VALIDATION_MARGIN, 0)
    right = min(int(cols.max()) + _VALIDATION_MARGIN + 1, width)
    return {"window": (top, bottom, left, right), "cells": cells}


def _validate_blocks(
    model: nn.Module,
    features: np.ndarray,
    targets: Any,
    blocks: dict[str, Any],
    factor: int,
    device: torch.device,
) -> float:
    """RMSE (m) of the 150 m bed against BedMachine in validation blocks."""
    # Predict the window around the blocks in one pass, in eval mode.
    top, bottom, left, right = blocks["window"]
    model.eval()
    with torch.no_grad():
        window = torch.as_tensor(features[None, :, top:bottom, left:right]).to(device)
        base = torch.as_tensor(targets.bedmachine[None, None, top:bottom, left:right])
        prediction = _forward(model, window, base.to(device)).float()
        coarse = block_mean(prediction, factor)[0, 0].cpu().numpy()

    # Compare on the blocks' cells.
    cells = blocks["cells"][top:bottom, left:right]
    reference = targets.bedmachine[top:bottom, left:right]
    return _rmse(coarse[cells], reference[cells])


def _rmse(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Root mean square of the differences, NaN pairs left out."""
    difference = np.asarray(predicted, "float64") - np.asarray(observed, "float64")
    difference = difference[np.isfinite(difference)]
    return float(np.sqrt(np.mean(difference**2))) if difference.size else math.nan


def _atomic_write(path: Path, write: Callable[[Any], None], *, binary: bool) -> None:
    """Write through an open stream, atomically (see :func:`atomic_write`)."""

    def fill(temporary: Path) -> None:
        with open(temporary, "wb" if binary else "w") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())

    atomic_write(path, fill)


def _save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """Save a state dict atomically."""
    _atomic_write(path, lambda stream: torch.save(state, stream), binary=True)


def _save_json(data: Any, path: Path) -> None:
    """Save JSON atomically."""
    _atomic_write(
        path, lambda stream: json.dump(data, stream, indent=2), binary=False
    )


def _save_run(result: TrainResult, run_path: Path) -> None:
    """Write the best weights, settings, scaler and history of a run."""
    model_config = asdict(result.model.config)
    _save_state(result.model.state_dict(), run_path / "model.pt")
    _save_json(
        {
            "version": RUN_VERSION,
            "train": result.config.to_dict(),
            "model_kind": result.config.model,
            "model": model_config,
            "best_epoch": result.best_epoch,
            "cancelled": result.cancelled,
        },
        run_path / "config.json",
    )
    _save_json(result.scaler.to_dict(), run_path / "scaler.json")
    _save_json(result.history, run_path / "history.json")


def load_model(
    run_dir: str | os.PathLike[str], *, device: str = "cpu"
) -> TrainResult:
    """Read a run folder written by :func:`train`.

    Parameters
    ----------
    run_dir : path-like
        The run folder.
    device : str, default "cpu"
        Where to put the model ("auto" as in :func:`resolve_device`).

    Returns
    -------
    TrainResult
        The model (eval mode) with the saved weights, read with
        ``torch.load(..., weights_only=True)``, the scaler, settings and
        history.

    Raises
    ------
    ConfigError
        A missing file or a config of another version.
    """
    run_path = Path(run_dir)
    missing = [
        name
        for name in ("model.pt", "config.json", "scaler.json")
        if not (run_path / name).is_file()
    ]
    if missing:
        raise ConfigError(
            f"{run_path} lacks {missing}; it is not a finished training run folder"
        )
    saved = json.loads((run_path / "config.json").read_text())
    if saved.get("version") != RUN_VERSION:
        raise ConfigError(
            f"run folder version {saved.get('version')!r} is not {RUN_VERSION}; "
            "train the model again with this version of the engine"
        )

    # Rebuild the model from its saved settings, then load the weights.
    model_config = dict(saved["model"])
    model_config["widths"] = tuple(model_config["widths"])
    if saved["model_kind"] != "paper":
        # Saved before the smooth subgrid existed: free sub-cells.
        model_config.setdefault("subgrid", "free")
    if saved["model_kind"] == "paper":
        model: nn.Module = PaperModel(PaperModelConfig(**model_config))
    else:
        model = DeepTopoNet(DeepTopoNetConfig(**model_config))
    target = resolve_device(device)
    state = torch.load(run_path / "model.pt", map_location=target, weights_only=True)
    model.load_state_dict(state)
    model.to(target).eval()
    history_path = run_path / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    scaler = json.loads((run_path / "scaler.json").read_text())
    return TrainResult(
        model=model,
        scaler=FeatureScaler.from_dict(scaler),
        config=TrainConfig.from_dict(saved["train"]),
        history=history,
        best_epoch=int(saved["best_epoch"]),
        cancelled=bool(saved["cancelled"]),
        device=str(target),
        run_dir=run_path,
    )
