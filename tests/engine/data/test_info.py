"""Tests of ``engine.data.info``: what a file holds, told from its content."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from engine.data.errors import FileFormatError
from engine.data.info import describe_file
from engine.data.radar import read_radar


def test_describe_hdf5_grid(helheim_grid_path: Path) -> None:
    summary = describe_file(helheim_grid_path)

    # Kind, CRS, shape and spacing of the Helheim grid.
    assert summary["kind"] == "bed-topography grid (HDF5)"
    assert summary["crs"] == "EPSG:3413"
    assert summary["shape"] == {"y": 300, "x": 200}
    assert summary["spacing_m"] == 150.0

    # Extent of the cell centres (README), and roughly 66.3-66.7 N,
    # 38.3-39.05 W; 0.01 degree (about 1 km) absorbs the corner/edge choice.
    assert summary["extent_m"] == (269575.0, -2586875.0, 299425.0, -2542025.0)
    lon_min, lat_min, lon_max, lat_max = summary["extent_lonlat"]
    assert lat_min == pytest.approx(66.29, abs=0.01)
    assert lat_max == pytest.approx(66.72, abs=0.01)
    assert lon_min == pytest.approx(-39.05, abs=0.01)
    assert lon_max == pytest.approx(-38.28, abs=0.01)

    # Per variable: units, range and the share of NaN (4092 of 60000 in dhdt).
    variables = summary["variables"]
    assert variables["surface_elevation"]["units"] == "m"
    assert variables["mask"]["range"] == (1.0, 2.0)
    assert variables["surface_elevation_change"]["nan_share"] == pytest.approx(
        4092 / 60000
    )
    assert variables["surface_elevation"]["nan_share"] == 0.0


def test_describe_bedmachine_netcdf(helheim_bedmachine_path: Path) -> None:
    summary = describe_file(helheim_bedmachine_path)
    assert summary["kind"] == "BedMachine Greenland"
    assert summary["crs"] == "EPSG:3413"
    assert summary["shape"] == {"y": 134, "x": 134}
    assert summary["extent_m"] == (300025.0, -2579975.0, 319975.0, -2560025.0)
    assert {"bed_bedmachine", "ice_thickness", "geoid"} <= set(summary["variables"])
    assert summary["variables"]["mask"]["range"] == (0.0, 4.0)


@pytest.mark.parametrize("which", ["mat", "csv"])
def test_describe_helheim_radar_in_both_formats(
    which: str, helheim_radar_mat_path: Path, helheim_radar_csv_path: Path
) -> None:
    path = helheim_radar_mat_path if which == "mat" else helheim_radar_csv_path
    summary = describe_file(path)

    # 3192 picks on the lines read_radar finds, thickness only.
    assert summary["kind"] == "radar picks"
    assert summary["crs"] == "EPSG:3413"
    assert summary["picks"] == 3192
    assert summary["flight_lines"] == read_radar(path)["line_id"].nunique()
    assert summary["bed_elevation_m"] is None

    # README: thickness 1.5..2379 m; 1 m around each end covers the rounding
    # of the README's numbers.
    low, high = summary["ice_thickness_m"]
    assert low == pytest.approx(1.5, abs=1.0)
    assert high == pytest.approx(2379.0, abs=1.0)


def test_describe_79n_bed_points(bed_points_79n_path: Path) -> None:
    summary = describe_file(bed_points_79n_path)
    assert summary["kind"] == "radar picks"
    assert summary["picks"] == 104292
    assert summary["ice_thickness_m"] is None

    # README: bed -839..1036 m, about 79.0-79.8 N, 20.1-23.9 W (0.1 degree
    # absorbs the README's rounding).
    low, high = summary["bed_elevation_m"]
    assert low == pytest.approx(-839.0, abs=0.5)
    assert high == pytest.approx(1036.0, abs=0.5)
    lon_min, lat_min, lon_max, lat_max = summary["extent_lonlat"]
    assert (lat_min, lat_max) == pytest.approx((79.0, 79.8), abs=0.1)
    assert (lon_min, lon_max) == pytest.approx((-23.9, -20.1), abs=0.1)


def test_describe_an_hdf5_grid_saved_as_mat(
    helheim_grid_path: Path, tmp_path: Path
) -> None:
    # A MATLAB v7.3 file is HDF5: one holding surf_x is a grid, not radar.
    path = tmp_path / "grid.mat"
    path.write_bytes(helheim_grid_path.read_bytes())
    summary = describe_file(path)
    assert summary["shape"] == {"y": 300, "x": 200}
    assert "grid" in summary["kind"]


def test_describe_refuses_missing_unknown_and_broken_files(tmp_path: Path) -> None:
    # Missing.
    with pytest.raises(FileFormatError, match="no such file"):
        describe_file(tmp_path / "absent.h5")

    # An extension no reader knows.
    shapefile = tmp_path / "outline.shp"
    shapefile.write_bytes(b"\x00\x00\x27\x0a")
    with pytest.raises(FileFormatError, match="unknown kind of file '.shp'"):
        describe_file(shapefile)

    # Text named .nc and .h5.
    text_nc = tmp_path / "bed.nc"
    text_nc.write_text("not a netcdf file\n")
    with pytest.raises(FileFormatError, match="bed.nc is not a readable NetCDF"):
        describe_file(text_nc)
    text_h5 = tmp_path / "grid.h5"
    text_h5.write_text("not an hdf5 file\n")
    with pytest.raises(FileFormatError, match="grid.h5 is not a readable HDF5"):
        describe_file(text_h5)


def test_describe_a_tiny_synthetic_grid(tmp_path: Path) -> None:
    # A 20 x 30 [x, y] grid in the DeepTopoNet schema, y decreasing.
    x = 280_075.0 + 150.0 * np.arange(20)
    y = -2_550_075.0 - 150.0 * np.arange(30)
    x2d, y2d = np.meshgrid(x, y, indexing="ij")
    elevation = np.full((20, 30), 500.0, dtype="float32")
    elevation[0, :5] = np.nan
    path = tmp_path / "tiny.h5"
    with h5py.File(path, "w") as handle:
        handle["surf_x"] = x2d
        handle["surf_y"] = y2d
        handle["surf_elv"] = elevation

    # Shape (y, x), the one variable, 5 NaN of 600 cells.
    summary = describe_file(path)
    assert summary["shape"] == {"y": 30, "x": 20}
    assert list(summary["variables"]) == ["surface_elevation"]
    assert summary["variables"]["surface_elevation"]["nan_share"] == 5 / 600
    assert summary["variables"]["surface_elevation"]["range"] == (500.0, 500.0)
