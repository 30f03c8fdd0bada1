"""Tests of the command line, ``python -m engine data ...``, as a user runs it.

The main paths run in a fresh interpreter (as a shell would), so that exit
codes, stdout and stderr are the real ones; the other cases call
``engine.cli.main`` in this process, to keep the suite quick.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from engine.cli import main
from engine.data.grids import read_topo_hdf5
from engine.data.info import describe_file
from engine.data.radar import read_radar
from engine.data.regions import region_from_lonlat_box, window_on_grid

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The Helheim trunk box of the CLI's own example (lon/lat, degrees).
BOX = ("-38.9", "66.4", "-38.5", "66.6")

#: Variables every twin grid holds (engine.data.twin).
TWIN_VARIABLES = {
    "surface_elevation",
    "surface_velocity_x",
    "surface_velocity_y",
    "surface_mass_balance",
    "surface_elevation_change",
    "mask",
    "bed_bedmachine",
    "bed_bedmachine_error",
    "ice_thickness",
    "bed_true",
}


def run_here(
    capsys: pytest.CaptureFixture[str], *args: str | Path
) -> tuple[int, str, str]:
    """Run ``engine.cli.main`` in this process: (exit code, stdout, stderr).

    The same code as ``python -m engine`` without a new interpreter (each
    costs seconds); the subprocess tests cover the ``-m`` entry itself.
    """
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_engine(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m engine`` with arguments; never raises on failure."""
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


# --- data info -------------------------------------------------------------------


def test_info_on_the_hdf5_grid_prints_kind_shape_and_crs(
    helheim_grid_path: Path,
) -> None:
    # As typed in a shell: exit 0.
    result = run_engine("data", "info", helheim_grid_path)
    assert result.returncode == 0, result.stderr

    # The file, then the indented summary lines.
    lines = result.stdout.splitlines()
    assert lines[0] == str(helheim_grid_path)
    assert "  kind: bed-topography grid (HDF5)" in lines
    assert "  crs: EPSG:3413" in lines
    shape = lines.index("  shape:")
    assert lines[shape + 1 : shape + 3] == ["    y: 300", "    x: 200"]
    assert "  spacing_m: 150" in lines


def test_info_on_bedmachine_and_radar_files(
    capsys: pytest.CaptureFixture[str],
    helheim_bedmachine_path: Path,
    helheim_radar_mat_path: Path,
) -> None:
    # BedMachine: kind and 134 x 134 cells.
    code, out, err = run_here(capsys, "data", "info", helheim_bedmachine_path)
    assert code == 0, err
    assert "  kind: BedMachine Greenland" in out
    assert "    y: 134\n    x: 134" in out

    # Radar: kind, CRS and the 3192 picks.
    code, out, err = run_here(capsys, "data", "info", helheim_radar_mat_path)
    assert code == 0, err
    lines = out.splitlines()
    assert "  kind: radar picks" in lines
    assert "  crs: EPSG:3413" in lines
    assert "  picks: 3192" in lines


def test_info_json_is_machine_readable(
    capsys: pytest.CaptureFixture[str], helheim_grid_path: Path
) -> None:
    # --json prints one JSON object with the same summary.
    code, out, err = run_here(capsys, "data", "info", "--json", helheim_grid_path)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["shape"] == {"y": 300, "x": 200}
    assert summary["crs"] == "EPSG:3413"


def test_info_on_a_bad_file_prints_an_error_and_exits_1(tmp_path: Path) -> None:
    # A text file named .h5.
    fake = tmp_path / "subdomain_data.h5"
    fake.write_text("<html>404</html>\n")
    result = run_engine("data", "info", fake)

    # One "error: ..." line on stderr naming the file; no traceback, no output.
    assert result.returncode == 1
    assert result.stderr.startswith("error: subdomain_data.h5 is not a readable HDF5")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_info_on_a_missing_file_prints_an_error_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_here(capsys, "data", "info", tmp_path / "absent.nc")
    assert code == 1
    assert err.startswith("error: ")
    assert "no such file" in err
    assert out == ""


# --- data region -----------------------------------------------------------------


def test_region_on_helheim_prints_the_window_cells_and_radar(
    helheim_grid_path: Path, helheim_radar_mat_path: Path
) -> None:
    result = run_engine(
        "data", "region", helheim_grid_path, "--box", *BOX,
        "--radar", helheim_radar_mat_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    # The same numbers as the library computes in this process.
    window = window_on_grid(
        region_from_lonlat_box(*map(float, BOX)), read_topo_hdf5(helheim_grid_path)
    )
    picks, lines = window.count_picks(read_radar(helheim_radar_mat_path))
    assert result.stdout.splitlines() == [
        f"window: rows {window.rows.start}..{window.rows.stop - 1}, "
        f"cols {window.cols.start}..{window.cols.stop - 1}",
        f"cells in the region: {window.n_cells:,} of 150 m "
        f"({window.area_km2:,.1f} km^2)",
        f"radar: {picks} picks on {lines} flight lines",
    ]

    # And the numbers themselves: 18,073 cells, 196 picks on 16 lines.
    assert "cells in the region: 18,073 of 150 m (406.6 km^2)" in result.stdout
    assert "radar: 196 picks on 16 flight lines" in result.stdout


def test_region_outside_the_data_prints_an_error_and_exits_1(
    capsys: pytest.CaptureFixture[str], helheim_grid_path: Path
) -> None:
    # Upernavik Isstrom on the Helheim grid.
    code, _, err = run_here(
        capsys,
        "data", "region", helheim_grid_path, "--box", "-56.5", "72.5", "-53.0", "73.3",
    )  # fmt: skip
    assert code == 1
    assert err.startswith("error: box lies outside the data's coverage")


# --- data twin -------------------------------------------------------------------


@pytest.fixture(scope="module")
def twin_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``python -m engine data twin --seed 1``, run once for the module."""
    out = tmp_path_factory.mktemp("twin") / "twin.nc"
    return out, run_engine("data", "twin", "--seed", "1", "--out", out)


def test_twin_writes_a_netcdf_grid_and_a_radar_csv(
    twin_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, result = twin_run
    assert result.returncode == 0, result.stderr

    # The grid opens with xarray and holds the twin's variables on (y, x).
    with xr.open_dataset(out) as grid:
        assert TWIN_VARIABLES <= set(grid.data_vars)
        assert grid["bed_true"].dims == ("y", "x")
        ny, nx = grid.sizes["y"], grid.sizes["x"]
        assert bool((grid["y"].diff("y") < 0).all())
        assert bool(np.isfinite(grid["bed_true"]).all())
    assert f"grid: {out} ({ny} x {nx} cells)" in result.stdout

    # The radar picks sit next to it, and no partial file is left behind.
    radar = out.with_suffix(".radar.csv")
    assert radar.is_file()
    assert f"radar: {radar} (" in result.stdout
    assert not out.with_name("twin.nc.part").exists()


def test_twin_radar_csv_reads_back_as_radar_picks(
    twin_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    # The radar CSV the twin command writes is a picks table of the
    # conventions; the project's own radar reader must take it back (it is
    # what 'data info' and 'data region --radar' are given next).
    out, result = twin_run
    assert result.returncode == 0, result.stderr
    radar = out.with_suffix(".radar.csv")
    written = np.loadtxt(radar, delimiter=",", skiprows=1, usecols=(0, 1, 2))

    picks = read_radar(radar)
    assert len(picks) == len(written)
    np.testing.assert_allclose(picks["ice_thickness"], written[:, 2])


def test_info_on_a_twin_grid_describes_it(
    twin_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    # The grid the twin command writes, described as a grid (what 'data info'
    # prints), not mistaken for a climate cube.
    out, result = twin_run
    assert result.returncode == 0, result.stderr
    summary = describe_file(out)
    assert summary["crs"] == "EPSG:3413"
    assert summary["shape"] == {"y": 96, "x": 128}


@pytest.mark.parametrize("argv", [[], ["data"], ["data", "info"]])
def test_incomplete_commands_print_usage_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # argparse's own exit code for a usage error, with the usage on stderr.
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_bedmachine_fetch_without_a_login_says_how_to_get_one(
    tmp_path, monkeypatch, capsys
):
    from engine.cli import main

    # No credentials anywhere: the first use explains the free login.
    for name in ("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "EARTHDATA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GREENBED_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["data", "bedmachine", "--preset", "Upernavik Isstrom"])
    assert code == 1
    err = capsys.readouterr().err
    assert "urs.earthdata.nasa.gov" in err
    assert "EARTHDATA_USERNAME" in err
