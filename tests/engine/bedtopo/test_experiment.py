"""run_experiment on a tiny twin: files, round trip, table, cancel, inputs."""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from engine.bedtopo.errors import ConfigError, FeatureError
from engine.bedtopo.experiment import (
    ExperimentConfig,
    ExperimentError,
    check_inputs,
    inner_split,
    load_experiment,
    load_members,
    run_experiment,
)
from engine.bedtopo.predict import predict_region
from engine.bedtopo.splits import SplitConfig, make_split
from engine.bedtopo.training import TrainConfig
from engine.data.errors import DataWarning
from engine.data.radar import picks_in_grid
from engine.data.twin import make_twin

#: A narrow trunk and two epochs: the whole experiment takes seconds.
TINY_TRAIN = TrainConfig.quick(
    widths=(8, 8, 16, 16, 16),
    patch_size=16,
    patch_stride=8,
    batch_size=8,
    epochs=2,
    patience=0,
    device="cpu",
    threads=2,
)

#: Three folds of lines with small buffers, so that a 6 km twin keeps
#: fitting picks; three cheap baselines; four MC passes.
TINY = ExperimentConfig(
    train=TINY_TRAIN,
    split=SplitConfig(n_folds=3, buffer_m=300.0),
    baselines=("bedmachine", "linear", "gbr_residual"),
    mc_samples=4,
    validation_folds=3,
    validation_buffer_m=0.0,
)

RUN_FILES = (
    "config.json",
    "model.pt",
    "scaler.json",
    "history.json",
    "prediction.nc",
    "scores.csv",
    "metrics.json",
    "heldout.csv",
)


@pytest.fixture(scope="module")
def twin():
    """A 40 x 40 twin (6 km square) with six flight lines."""
    return make_twin(seed=5, ny=40, nx=40, n_troughs=1, n_ridges=1)


@pytest.fixture(scope="module")
def finished(twin, tmp_path_factory):
    """One experiment run into a folder, with its progress records."""
    run_dir = tmp_path_factory.mktemp("run")
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = run_experiment(
            twin.grid, twin.radar, TINY, run_dir=run_dir, progress=records.append
        )
    return result, run_dir, records


def test_run_folder_holds_every_file_and_no_temporary(finished):
    _, run_dir, _ = finished
    names = {p.name for p in run_dir.iterdir()}
    assert set(RUN_FILES) <= names
    # Atomic writes leave no ".name.xxx.tmp" or ".part" file behind.
    assert not [n for n in names if n.startswith(".")]


def test_load_experiment_reads_back_the_same(finished):
    result, run_dir, _ = finished
    loaded = load_experiment(run_dir)
    pd.testing.assert_frame_equal(loaded.table, result.table)
    pd.testing.assert_frame_equal(loaded.heldout, result.heldout)
    assert loaded.config == result.config
    assert loaded.history == result.history
    assert loaded.cancelled is False
    assert loaded.metrics["sigma_calibration"] == result.metrics["sigma_calibration"]
    for name in ("bed", "bed_std", "bed_lower_90", "bed_upper_90"):
        # Both float32: NetCDF stores the values exactly.
        np.testing.assert_array_equal(
            loaded.prediction[name].values, result.prediction[name].values
        )
    assert loaded.prediction.rio.crs.to_epsg() == 3413
    assert loaded.model is not None and loaded.model.best_epoch >= 1


def test_table_scores_model_and_baselines_on_the_same_picks(finished, twin):
    result, _, _ = finished
    table = result.table
    assert list(table.index) == ["deeptoponet", "bedmachine", "linear", "gbr_residual"]
    assert table["points.n"].nunique() == 1
    assert table.loc["deeptoponet", "points.n"] == len(result.heldout)
    assert np.isfinite(table.loc["deeptoponet", "points.coverage_90"])
    assert {"twin.rmse_true", "twin.rmse_true_away", "fast.n"} <= set(table.columns)

    # The held-out picks table gives each method's bed at the same picks.
    heldout = result.heldout
    for column in ("x", "y", "line_id", "radar_bed", "model_bed", "model_lower_90",
                   "model_upper_90", "bedmachine_bed", "linear_bed",
                   "gbr_residual_bed"):
        assert column in heldout
    rmse = np.sqrt(np.mean((heldout["model_bed"] - heldout["radar_bed"]) ** 2))
    # Same picks and the same nearest-cell sampling as the table.
    assert rmse == pytest.approx(table.loc["deeptoponet", "points.rmse"], rel=1e-9)


def test_progress_stages_in_order_to_one(finished):
    _, _, records = finished
    stages = [r["stage"] for r in records]
    order = ["train", "predict", "baselines", "evaluate"]
    assert [s for s in order if s in stages] == order
    assert stages == sorted(stages, key=order.index)
    fractions = [r["fraction"] for r in records]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    first = records[0]
    assert {"epoch", "loss", "val_rmse", "seconds"} <= set(first)


def test_test_picks_stay_out_of_fitting_and_validation(twin):
    outer = make_split(twin.grid, twin.radar, TINY.split)
    inner = inner_split(twin.grid, twin.radar, outer, folds=3, buffer_m=0.0)
    test = set(outer.heldout_picks.tolist())
    assert not test & set(inner.train_picks.tolist())
    assert not test & set(inner.heldout_picks.tolist())
    assert not set(inner.train_picks.tolist()) & set(inner.heldout_picks.tolist())
    assert len(inner.heldout_picks) > 0
    # Validation cells are no BedMachine target, nor are the test cells.
    assert not (inner.bedmachine_train_mask & inner.heldout_radar_mask).any()
    assert not (inner.bedmachine_train_mask & outer.heldout_radar_mask).any()


def test_cancel_after_first_epoch(twin, tmp_path):
    cancel = threading.Event()

    def progress(record):
        if record["stage"] == "train":
            cancel.set()

    config = ExperimentConfig(
        train=replace(TINY_TRAIN, epochs=5),
        split=TINY.split,
        baselines=("bedmachine",),
        mc_samples=4,
        validation_folds=3,
        validation_buffer_m=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = run_experiment(
            twin.grid,
            twin.radar,
            config,
            run_dir=tmp_path,
            progress=progress,
            cancel=cancel,
        )
    assert result.cancelled
    assert result.prediction is None and result.table.empty
    assert len(result.history) == 1
    assert (tmp_path / "model.pt").is_file()
    assert not (tmp_path / "prediction.nc").exists()
    loaded = load_experiment(tmp_path)
    assert loaded.cancelled and loaded.prediction is None


def test_config_round_trip_and_presets():
    for name in ("quick", "standard", "paper"):
        config = ExperimentConfig.preset(name)
        again = ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config
    quick = ExperimentConfig.quick()
    assert quick.baselines == ("bedmachine", "linear", "gbr_residual")
    assert ExperimentConfig.paper().train.loss.mode == "dynamic"
    assert ExperimentConfig.standard().train.loss.mode == "fixed"
    with pytest.raises(ConfigError, match="unknown baselines"):
        ExperimentConfig(baselines=("splines",))
    with pytest.raises(ConfigError, match="calibrate"):
        ExperimentConfig(mc_samples=0)
    with pytest.raises(ConfigError, match="preset"):
        ExperimentConfig.preset("fast")


def test_grid_and_radar_that_do_not_overlap(twin):
    far = twin.radar.assign(x=twin.radar["x"] + 500_000.0)
    with pytest.raises(ExperimentError, match="none of the .* radar picks falls"):
        run_experiment(twin.grid, far, TINY)


def test_region_without_radar_thickness(twin):
    blank = twin.radar.assign(ice_thickness=np.nan)
    with pytest.raises(ExperimentError, match="gives a bed"):
        check_inputs(twin.grid, blank)


def test_nan_only_fields(twin):
    grid = twin.grid.copy()
    grid["bed_bedmachine"] = grid["bed_bedmachine"] * np.nan
    with pytest.raises(FeatureError, match="bed_bedmachine is NaN in every cell"):
        run_experiment(grid, twin.radar, TINY)
    with pytest.raises(FeatureError, match="has no surface_elevation"):
        check_inputs(twin.grid.drop_vars("surface_elevation"), twin.radar)


def test_inner_split_folds_partition_the_training_lines(twin):
    """Each validation fold holds other lines; together they cover them all."""
    outer = make_split(twin.grid, twin.radar, TINY.split)
    folds = [
        inner_split(twin.grid, twin.radar, outer, folds=3, buffer_m=0.0, fold=f)
        for f in range(3)
    ]
    held = [set(f.heldout_picks.tolist()) for f in folds]
    assert all(held) and not held[0] & held[1] and not held[1] & held[2]
    assert set().union(*held) == set(outer.train_picks.tolist())
    with pytest.raises(ConfigError, match="fold"):
        inner_split(twin.grid, twin.radar, outer, folds=3, fold=3)


#: 1.5 km blocks (10 cells) of the 40 x 40 twin, one cell of buffer.
BLOCKS = SplitConfig(kind="blocks", n_folds=4, block_size_m=1500.0, buffer_m=150.0)


def _distance_to(mask):
    """Distance (m) of every cell to the nearest cell of the mask."""
    return ndimage.distance_transform_edt(~mask) * 150.0


def test_inner_block_split_mirrors_the_test_blocks(twin):
    """Validation blocks lie in the training part, with their own buffer."""
    outer = make_split(twin.grid, twin.radar, BLOCKS)
    inner = inner_split(twin.grid, twin.radar, outer, folds=3, buffer_m=300.0)
    cells = inner.validation_cells
    rows, cols = _picks_rows_cols(twin)

    # Validation blocks: training cells of the test split, not BedMachine
    # targets any more, and no patch within the buffer of them.
    assert cells is not None and cells.any()
    assert not (cells & ~outer.patch_allowed).any()
    assert not (inner.bedmachine_train_mask & cells).any()
    assert _distance_to(cells)[inner.patch_allowed].min() > 300.0
    assert not (inner.patch_allowed & ~outer.patch_allowed).any()

    # Validation picks inside the blocks, fitting picks beyond the band.
    held, fit = inner.heldout_picks, inner.train_picks
    assert len(held) and cells[rows[held], cols[held]].all()
    assert (_distance_to(cells)[rows[fit], cols[fit]] > 300.0).all()
    test = set(outer.heldout_picks.tolist())
    assert not test & (set(held.tolist()) | set(fit.tolist()))


def test_inner_block_folds_partition_the_training_cells(twin):
    """The validation blocks of the folds tile the training part."""
    outer = make_split(twin.grid, twin.radar, BLOCKS)
    masks = [
        inner_split(twin.grid, twin.radar, outer, folds=3, buffer_m=0.0, fold=f)
        .validation_cells
        for f in range(3)
    ]
    assert all(mask.any() for mask in masks)
    assert (sum(mask.astype(int) for mask in masks) == outer.patch_allowed).all()


def _picks_rows_cols(twin):
    """Row and column of every pick of the twin (-1 outside the grid)."""
    inside = picks_in_grid(twin.radar.reset_index(drop=True), twin.grid)
    rows = np.full(len(twin.radar), -1)
    cols = np.full(len(twin.radar), -1)
    rows[inside.index] = inside["row"]
    cols[inside.index] = inside["col"]
    return rows, cols


@pytest.fixture(scope="module")
def ensemble_run(twin, tmp_path_factory):
    """A two-member cross-fitted ensemble run into a folder."""
    run_dir = tmp_path_factory.mktemp("ensemble")
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = run_experiment(
            twin.grid,
            twin.radar,
            replace(TINY, ensemble=2),
            run_dir=run_dir,
            progress=records.append,
        )
    return result, run_dir, records


def test_ensemble_members_in_the_run_folder(ensemble_run):
    """Member 1 lies in members/1 and is read back beside the first."""
    result, run_dir, records = ensemble_run
    assert (run_dir / "members" / "1" / "model.pt").is_file()
    members = load_members(run_dir)
    assert len(members) == 2
    assert members[1].config.seed == members[0].config.seed + 1
    first = members[0].model.state_dict()["head.weight"]
    second = members[1].model.state_dict()["head.weight"]
    assert not np.array_equal(first.numpy(), second.numpy())
    # Progress reports both members and still ends at one.
    assert {r.get("member") for r in records if r["stage"] == "train"} == {0, 1}
    assert records[-1]["fraction"] == 1.0
    assert result.metrics["ensemble"] == 2
    assert result.prediction.attrs["uncertainty"] == "ensemble+mc_dropout"
    assert np.isfinite(result.metrics["sigma_calibration"])


def test_ensemble_map_is_the_mean_of_its_members(ensemble_run, twin):
    """Without MC passes the map is the mean of the members' own maps."""
    _, run_dir, _ = ensemble_run
    members = load_members(run_dir)
    models = [m.model for m in members]
    scaler = members[0].scaler
    mean = predict_region(models, twin.grid, scaler=scaler)["bed"].values
    own = [predict_region(m, twin.grid, scaler=scaler)["bed"].values for m in models]
    # float32 maps of beds of a few hundred metres: round-off only.
    np.testing.assert_allclose(mean, np.mean(own, axis=0), atol=1e-3)
    spread = predict_region(models, twin.grid, scaler=scaler)["bed_std"].values
    assert np.nanmax(spread) > 0


def test_single_model_folder_loads_one_member(finished):
    """A run without an ensemble gives one member."""
    _, run_dir, _ = finished
    assert len(load_members(run_dir)) == 1
