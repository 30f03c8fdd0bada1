"""The training loop on a tiny twin: learning, progress, cancel, checkpoints."""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.bedtopo.errors import ConfigError
from engine.bedtopo.features import make_features
from engine.bedtopo.losses import LossConfig
from engine.bedtopo.models import block_mean
from engine.bedtopo.experiment import inner_split
from engine.bedtopo.splits import SplitConfig, make_split
from engine.bedtopo.training import (
    PROGRESS_KEYS,
    TrainConfig,
    load_model,
    _forward,
    resolve_device,
    train,
)
from engine.data.twin import make_twin

#: A narrow trunk and short run, so that each training takes seconds.
TINY = dict(
    widths=(8, 8, 16, 16, 16),
    dropout=0.0,
    patch_size=16,
    patch_stride=8,
    batch_size=8,
    device="cpu",
    threads=2,
)


@pytest.fixture(scope="module")
def twin():
    """A 32 x 32 twin (4.8 km square) with six flight lines."""
    return make_twin(seed=5, ny=32, nx=32, n_troughs=1, n_ridges=1)


def _predict(result, grid):
    """The model's bed on the 150 m grid, m."""
    features = make_features(
        grid, config=result.config.feature_config(), scaler=result.scaler
    )
    bed = torch.as_tensor(grid["bed_bedmachine"].values)[None, None]
    with torch.no_grad():
        fine = _forward(result.model, torch.as_tensor(features.values)[None], bed)
    return block_mean(fine, result.config.factor)[0, 0].numpy()


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, float) - b) ** 2)))


def test_training_lowers_error_against_true_bed(twin):
    """A few epochs from radar move the twin's biased prior towards truth."""
    config = TrainConfig.quick(
        **TINY, epochs=8, learning_rate=3e-3, loss=LossConfig(mode="fixed")
    )
    result = train(twin.grid, twin.radar, config)
    truth = twin.grid["bed_true"].values
    before = _rmse(twin.grid["bed_bedmachine"].values, truth)
    after = _rmse(_predict(result, twin.grid), truth)
    # Measured: 91.1 m for the prior, 85.2 m after 8 epochs (the prior is
    # biased by about 20 m, which the radar term removes first); a 1 m
    # margin leaves room for other BLAS builds.
    assert after < before - 1.0
    assert not result.cancelled and result.best_epoch >= 1


def test_progress_called_per_epoch_with_keys(twin):
    """One call per epoch, with every documented key and held-out RMSE."""
    calls = []
    config = TrainConfig.quick(**TINY, epochs=2, patience=0)
    result = train(
        twin.grid,
        twin.radar,
        config,
        split=SplitConfig(kind="lines", n_folds=3),
        progress=calls.append,
    )
    assert [c["epoch"] for c in calls] == [1, 2]
    for call in calls:
        assert set(PROGRESS_KEYS) <= set(call)
        assert call["val_rmse"] > 0 and call["bedmachine_rmse"] > 0
    assert result.history == calls


def test_min_batches_fills_small_epochs(twin):
    """A region of few patches is drawn again until the epoch has enough."""
    records = {}
    for min_batches in (0, 7):
        config = TrainConfig.quick(
            **TINY, epochs=1, patience=0, min_batches=min_batches
        )
        result = train(twin.grid, twin.radar, config)
        records[min_batches] = result.history[0]["batches"]

    # 32 x 32 cells, 16-cell patches at stride 8: 9 patches, 2 batches of 8.
    assert records[0] == 2
    assert records[7] == 7


def test_min_batches_must_not_be_negative():
    with pytest.raises(ConfigError, match="min_batches"):
        TrainConfig.quick(min_batches=-1)


def test_min_epochs_delays_selection_and_stopping(twin):
    """No epoch before the warm-up is kept, and patience counts from it."""
    config = TrainConfig.quick(**TINY, epochs=4, patience=1, min_epochs=3)
    result = train(twin.grid, twin.radar, config)

    # Epochs 1 and 2 choose nothing; epoch 3 is the first that may.
    assert [record["best_epoch"] for record in result.history[:3]] == [0, 0, 3]
    assert result.best_epoch >= 3


def test_min_epochs_longer_than_the_run_keeps_the_last_epoch(twin):
    config = TrainConfig.quick(**TINY, epochs=2, patience=0, min_epochs=5)
    result = train(twin.grid, twin.radar, config)
    assert [record["best_epoch"] for record in result.history] == [0, 2]
    with pytest.raises(ConfigError, match="min_epochs"):
        TrainConfig.quick(min_epochs=-1)


def test_average_epochs_keeps_the_moving_average(twin):
    """The kept weights are the average's: the trained ones at no memory."""
    plain = TrainConfig.quick(**TINY, epochs=2, patience=0)
    states = {}
    for average_epochs in (0.0, 1e-9, 1e6):
        result = train(
            twin.grid, twin.radar, replace(plain, average_epochs=average_epochs)
        )
        states[average_epochs] = result.model.state_dict()

    # A memory of 1e-9 epochs is a decay of 0: the weights as trained
    # (the same seed, on a CPU: equal to float rounding, 1e-6).
    for name, value in states[0.0].items():
        torch.testing.assert_close(
            states[1e-9][name].float(), value.float(), rtol=1e-6, atol=1e-6
        )

    # A memory of a million epochs holds the weights of the first step,
    # which two epochs of training move away from.
    moved = [
        float((states[1e6][name] - value).abs().max())
        for name, value in states[0.0].items()
        if value.is_floating_point()
    ]
    assert max(moved) > 1e-3


def test_average_epochs_must_not_be_negative():
    with pytest.raises(ConfigError, match="average_epochs"):
        TrainConfig.quick(average_epochs=-1.0)


def test_cancel_after_first_epoch(twin):
    """Setting the event in the first epoch's callback stops the run."""
    cancel = threading.Event()
    config = TrainConfig.quick(**TINY, epochs=5, patience=0)
    result = train(
        twin.grid,
        twin.radar,
        config,
        progress=lambda record: cancel.set(),
        cancel=cancel,
    )
    assert result.cancelled
    assert len(result.history) == 1 and result.best_epoch == 1


def test_checkpoint_round_trip(twin, tmp_path):
    """Saved weights load with weights_only=True and predict identically."""
    config = TrainConfig.quick(**TINY, epochs=1, factor=3)
    result = train(twin.grid, twin.radar, config, run_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["config.json", "history.json", "model.pt", "scaler.json"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))

    loaded = load_model(tmp_path)
    assert loaded.config == result.config
    assert loaded.scaler == result.scaler
    assert loaded.history == result.history
    np.testing.assert_array_equal(
        _predict(loaded, twin.grid), _predict(result, twin.grid)
    )


def test_run_saved_before_smooth_subgrid_loads_as_free(twin, tmp_path):
    """A run folder without the subgrid setting is read as free sub-cells."""
    config = TrainConfig.quick(**TINY, epochs=1, factor=2, subgrid="free")
    result = train(twin.grid, twin.radar, config, run_dir=tmp_path)

    # Remove the setting, as in a folder written before it existed.
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    del saved["train"]["subgrid"], saved["model"]["subgrid"]
    path.write_text(json.dumps(saved))

    loaded = load_model(tmp_path)
    assert loaded.config.subgrid == "free"
    assert loaded.model.config.subgrid == "free"
    np.testing.assert_array_equal(
        _predict(loaded, twin.grid), _predict(result, twin.grid)
    )
    assert TrainConfig.from_dict(TrainConfig.quick().to_dict()).subgrid == "smooth"


def test_paper_model_trains(twin):
    """The released setting runs on surface features at 150 m."""
    config = TrainConfig.paper(**TINY, epochs=1, cyclic_lr=True)
    result = train(twin.grid, twin.radar, config, split=SplitConfig(n_folds=3))
    assert result.history[0]["val_rmse"] > 0
    assert "bed_bedmachine" not in result.scaler.channels


def test_paper_model_on_validation_blocks_is_scored_against_bedmachine():
    """A model without BedMachine input validates where BedMachine is withheld."""
    twin = make_twin(seed=5, ny=48, nx=48, n_troughs=1, n_ridges=1)
    outer = make_split(
        twin.grid,
        twin.radar,
        SplitConfig(kind="blocks", n_folds=4, block_size_m=1800.0, buffer_m=150.0),
    )
    inner = inner_split(twin.grid, twin.radar, outer, folds=3, buffer_m=150.0)
    small = {**TINY, "patch_size": 8, "patch_stride": 4}
    config = TrainConfig.paper(**small, epochs=2, patience=0)

    result = train(twin.grid, twin.radar, config, split=inner)

    # The best epoch's score is the RMSE against BedMachine on the blocks.
    record = result.history[result.best_epoch - 1]
    assert record["bedmachine_rmse"] is None
    bed = _predict(result, twin.grid)
    cells = inner.validation_cells
    expected = _rmse(bed[cells], twin.grid["bed_bedmachine"].values[cells])
    # Windowed and whole-grid passes agree to float32 rounding on beds
    # of about 1000 m: well under a millimetre.
    assert record["val_rmse"] == pytest.approx(expected, abs=1e-3)

    # The default model sees BedMachine: it validates on the radar picks.
    default = train(
        twin.grid, twin.radar, TrainConfig.quick(**small, epochs=1), split=inner
    )
    assert default.history[0]["bedmachine_rmse"] is not None


def test_presets_and_device():
    """Presets are valid; "auto" falls back to a device torch has."""
    assert TrainConfig.paper().patch_size == 16
    assert TrainConfig.standard().factor == 3
    assert TrainConfig.quick().epochs < TrainConfig.standard().epochs
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("cpu").type == "cpu"


def test_flush_denormal_restored(twin):
    """After training, subnormal floats are no longer flushed."""
    train(twin.grid, twin.radar, TrainConfig.quick(**TINY, epochs=1))
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert float(tiny[0]) != 0.0
