"""``python -m engine bed ...`` on tiny files: evaluate, train, predict, errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr

from engine.cli import main
from engine.data.twin import make_twin

#: Grid variables and their names in the DeepTopoNet HDF5 schema.
HDF5_NAMES = {
    "surface_elevation": "surf_elv",
    "surface_velocity_x": "surf_vx",
    "surface_velocity_y": "surf_vy",
    "surface_mass_balance": "surf_SMB",
    "surface_elevation_change": "surf_dhdt",
    "mask": "surf_mask",
    "bed_bedmachine": "bed_BedMachine",
    "bed_bedmachine_error": "bed_BedMachineerror",
}

#: One epoch of the quick preset and four MC passes: a few seconds.
FAST = ["--preset", "quick", "--folds", "3", "--epochs", "1", "--mc-samples", "4",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 40 x 40 twin as an .h5 grid ([x, y] arrays) and a CSV of picks."""
    folder = tmp_path_factory.mktemp("bed_cli")
    twin = make_twin(seed=5, ny=40, nx=40, n_troughs=1, n_ridges=1)
    grid = twin.grid
    xx, yy = np.meshgrid(grid["x"].values, grid["y"].values, indexing="ij")
    h5_path = folder / "grid.h5"
    with h5py.File(h5_path, "w") as handle:
        handle["surf_x"] = xx
        handle["surf_y"] = yy
        for name, stored in HDF5_NAMES.items():
            # The schema stores [x, y]: the transpose of the (y, x) grid.
            handle[stored] = grid[name].transpose("y", "x").values.T
    csv_path = folder / "picks.csv"
    twin.radar[["x", "y", "ice_thickness"]].rename(
        columns={"ice_thickness": "thickness"}
    ).to_csv(csv_path, index=False)
    far_path = folder / "far.csv"
    far = twin.radar[["x", "y", "ice_thickness"]].rename(
        columns={"ice_thickness": "thickness"}
    )
    far.assign(x=far["x"] + 500_000.0).to_csv(far_path, index=False)
    return {"grid": h5_path, "radar": csv_path, "far": far_path, "folder": folder}


def test_evaluate_then_predict(files, capsys):
    run = files["folder"] / "run"
    code = main(["bed", "evaluate", "--grid", str(files["grid"]), "--radar",
                 str(files["radar"]), "--out", str(run), *FAST])
    out = capsys.readouterr().out
    assert code == 0
    assert "epoch 1/1" in out
    assert "deeptoponet" in out and "gbr_residual" in out
    assert (run / "prediction.nc").is_file() and (run / "scores.csv").is_file()
    assert json.loads((run / "config.json").read_text())["experiment"]

    # Predict the grid again with the saved model, NetCDF and GeoTIFF.
    nc, tif = files["folder"] / "pred.nc", files["folder"] / "pred.tif"
    code = main(["bed", "predict", "--run", str(run), "--grid", str(files["grid"]),
                 "--out", str(nc), "--tif", str(tif), "--mc-samples", "4"])
    assert code == 0
    with xr.open_dataset(nc) as prediction:
        # quick is DeepTopoNet at 75 m: twice the 40 x 40 cells.
        assert prediction["bed"].shape == (80, 80)
    assert tif.is_file()


def test_evaluate_ensemble_then_predict_with_every_member(files, capsys):
    """--ensemble 2 trains two members; predict averages both."""
    run = files["folder"] / "ensemble"
    code = main(["bed", "evaluate", "--grid", str(files["grid"]), "--radar",
                 str(files["radar"]), "--out", str(run), "--ensemble", "2", *FAST])
    out = capsys.readouterr().out
    assert code == 0
    assert "member 1 of 2" in out and "member 2 of 2" in out
    assert (run / "members" / "1" / "model.pt").is_file()

    nc = files["folder"] / "ensemble.nc"
    code = main(["bed", "predict", "--run", str(run), "--grid", str(files["grid"]),
                 "--out", str(nc), "--mc-samples", "0"])
    assert code == 0
    with xr.open_dataset(nc) as prediction:
        # Two deterministic members: their spread is the uncertainty.
        assert prediction.attrs["uncertainty"] == "ensemble"
        assert float(prediction["bed_std"].max()) > 0


def test_train_only(files, capsys):
    run = files["folder"] / "trained"
    code = main(["bed", "train", "--grid", str(files["grid"]), "--radar",
                 str(files["radar"]), "--out", str(run), *FAST])
    assert code == 0
    assert (run / "model.pt").is_file()
    assert "best epoch" in capsys.readouterr().out


def test_radar_outside_grid_is_one_line_error(files, capsys):
    code = main(["bed", "evaluate", "--grid", str(files["grid"]), "--radar",
                 str(files["far"]), "--out", str(files["folder"] / "no"), *FAST])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: none of the") and err.count("\n") == 1


def test_missing_grid_file(files, capsys):
    code = main(["bed", "predict", "--run", str(files["folder"]), "--grid",
                 str(files["folder"] / "absent.h5"), "--out", "x.nc"])
    assert code == 1
    assert "error:" in capsys.readouterr().err


def test_paper_preset_rejects_subgrid_factor(files, capsys):
    code = main(["bed", "evaluate", "--grid", str(files["grid"]), "--radar",
                 str(files["radar"]), "--out", str(files["folder"] / "p"),
                 "--preset", "paper", "--factor", "3"])
    assert code == 1
    assert "--factor 1" in capsys.readouterr().err
