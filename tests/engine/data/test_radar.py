"""Tests of the radar readers, flight lines and radar on a grid.

Real files: Helheim picks as MATLAB v7.3 and as CSV, Narsap Sermia picks as
MATLAB v5, 79N bed points. Synthetic inputs, written to ``tmp_path``: flight
lines of known geometry, a CReSIS L2 CSV near Helheim, broken files, and a
tiny grid with hand-placed picks whose cell means are known by hand.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import xarray as xr
from pyproj import Transformer

from engine.data.errors import DataWarning, FileFormatError, SchemaError
from engine.data.grids import finish_grid, read_topo_hdf5
from engine.data.radar import (
    RADAR_COLUMNS,
    assign_flight_lines,
    picks_in_grid,
    radar_to_grid,
    read_radar,
)

#: dtypes of the radar-picks table (CONVENTIONS.md).
DTYPES = {
    "x": "float64",
    "y": "float64",
    "ice_thickness": "float64",
    "bed_elevation": "float64",
    "source": "int64",
    "line_id": "int64",
}

#: A point on Helheim's trunk (EPSG:3413, m): synthetic lines start here.
HELHEIM_XY = (285_000.0, -2_565_000.0)


# --- helpers ------------------------------------------------------------------


def _check_table(picks: pd.DataFrame, origin: str) -> None:
    """Assert the radar-picks table of the conventions."""
    assert list(picks.columns) == RADAR_COLUMNS
    assert {name: str(dtype) for name, dtype in picks.dtypes.items()} == DTYPES
    assert picks.attrs["crs"] == "EPSG:3413"
    assert picks.attrs["origin"] == origin


def _line(start: tuple[float, float], heading_deg: float, n: int) -> np.ndarray:
    """n picks 100 m apart from ``start`` along a heading (m, EPSG:3413)."""
    angle = np.deg2rad(heading_deg)
    steps = 100.0 * np.arange(n)
    return np.column_stack(
        [start[0] + steps * np.cos(angle), start[1] + steps * np.sin(angle)]
    )


def _three_lines() -> pd.DataFrame:
    """Three straight 5 km lines of 51 picks, 20 km apart, one after another."""
    x0, y0 = HELHEIM_XY
    parts = [
        _line((x0, y0), 0.0, 51),
        _line((x0 + 25_000.0, y0), 90.0, 51),
        _line((x0 + 25_000.0, y0 + 25_000.0), 200.0, 51),
    ]
    xy = np.vstack(parts)
    return pd.DataFrame(
        {"x": xy[:, 0], "y": xy[:, 1], "thickness": np.full(len(xy), 800.0)}
    )


def _write_csv(path: Path, text: str) -> Path:
    """Write a CSV file from text (leading blanks of each line removed)."""
    path.write_text("\n".join(line.strip() for line in text.strip().splitlines()))
    return path


# --- real files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def helheim_mat(helheim_radar_mat_path: Path) -> pd.DataFrame:
    """Helheim picks from the MATLAB v7.3 file, read once."""
    return read_radar(helheim_radar_mat_path)


def test_helheim_csv_and_matlab_give_the_same_3192_picks(
    helheim_mat: pd.DataFrame, helheim_radar_csv_path: Path
) -> None:
    # Both files hold the same 3192 picks, as the table of the conventions.
    from_csv = read_radar(helheim_radar_csv_path)
    assert len(helheim_mat) == len(from_csv) == 3192
    _check_table(helheim_mat, "flightTracks.mat")
    _check_table(from_csv, "flightTracks_helheim.csv")

    # Positions and thickness agree within 1 mm: the CSV was written to
    # 1 mm, so it is at most 0.5 mm from the MATLAB doubles.
    for column in ("x", "y", "ice_thickness"):
        np.testing.assert_allclose(
            from_csv[column], helheim_mat[column], rtol=0, atol=1e-3, err_msg=column
        )

    # The same 22 source ids and the same flight lines.
    np.testing.assert_array_equal(from_csv["source"], helheim_mat["source"])
    assert helheim_mat["source"].nunique() == 22
    np.testing.assert_array_equal(from_csv["line_id"], helheim_mat["line_id"])

    # Thickness only: no bed elevation in these files; README range 1.5..2379.
    assert helheim_mat["bed_elevation"].isna().all()
    assert 1.0 < helheim_mat["ice_thickness"].min() < 2.0
    assert 2378.0 < helheim_mat["ice_thickness"].max() < 2380.0


def test_helheim_line_ids_count_up_from_zero_in_file_order(
    helheim_mat: pd.DataFrame,
) -> None:
    # Ids are 0, 1, 2, ... in order of first appearance, never going back.
    ids = helheim_mat["line_id"].to_numpy()
    assert ids[0] == 0
    assert set(np.diff(ids).tolist()) <= {0, 1}
    assert ids.max() + 1 == helheim_mat["line_id"].nunique()

    # Every change of source starts a new line; lines outnumber sources.
    source = helheim_mat["source"].to_numpy()
    assert (np.diff(ids)[source[1:] != source[:-1]] == 1).all()
    assert helheim_mat["line_id"].nunique() > 22

    # The typical step is the README's ~1.15 km pick spacing.
    assert 1000.0 < helheim_mat.attrs["typical_step_m"] < 1300.0


def test_narsap_matlab_v5_has_30863_picks(narsap_radar_mat_path: Path) -> None:
    # MATLAB v5 (read by scipy): 30863 thickness picks, README range 2.9..1457.
    picks = read_radar(narsap_radar_mat_path)
    _check_table(picks, "ProcessedTracks.mat")
    assert len(picks) == 30863
    assert 2.0 < picks["ice_thickness"].min() < 3.0
    assert 1456.0 < picks["ice_thickness"].max() < 1458.0
    assert (picks["source"] >= 0).all()
    assert picks["line_id"].nunique() > 1


def test_79n_bed_points_give_bed_elevation_and_no_thickness(
    bed_points_79n_path: Path,
) -> None:
    # X, Y, Bed: 104292 bed elevations and no thickness, no source.
    picks = read_radar(bed_points_79n_path)
    _check_table(picks, "Nioghalvfjerds_bed_data.csv")
    assert len(picks) == 104292
    assert picks["ice_thickness"].isna().all()
    assert (picks["source"] == -1).all()

    # README: bed -839..1036 m (rounded to the metre, hence the 0.5 m slack).
    assert abs(picks["bed_elevation"].min() - (-839.0)) < 0.5
    assert abs(picks["bed_elevation"].max() - 1036.0) < 0.5

    # README: a 60 km box, X 420..480 km, Y -1090..-1030 km.
    assert picks["x"].between(420_000, 480_000).all()
    assert picks["y"].between(-1_090_000, -1_030_000).all()


# --- flight lines -------------------------------------------------------------


def test_three_lines_with_20km_gaps_get_exactly_three_ids(tmp_path: Path) -> None:
    # Three 100 m-sampled lines written one after the other to a plain CSV.
    lines = _three_lines()
    path = tmp_path / "three_lines.csv"
    lines.to_csv(path, index=False)

    # Read back: ids 0, 1, 2, one per line of 51 picks.
    picks = read_radar(path)
    assert len(picks) == 153
    np.testing.assert_array_equal(picks["line_id"], np.repeat([0, 1, 2], 51))
    assert picks.attrs["typical_step_m"] == pytest.approx(100.0)


def test_a_source_change_starts_a_line_without_a_gap() -> None:
    # One straight line of 60 picks whose source changes half way.
    xy = _line(HELHEIM_XY, 45.0, 60)
    picks = pd.DataFrame(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "ice_thickness": 700.0,
            "bed_elevation": np.nan,
            "source": np.repeat([7, 9], 30),
            "line_id": -1,
        }
    )

    # Two lines, cut exactly where the source changes.
    out = assign_flight_lines(picks)
    np.testing.assert_array_equal(out["line_id"], np.repeat([0, 1], 30))

    # The input is left as it was (a copy is returned).
    assert (picks["line_id"] == -1).all()


def test_gap_factor_cuts_above_ten_median_steps_only() -> None:
    # 100 m-sampled runs of 20 picks, with jumps of 900 m and of 2100 m.
    xy = np.vstack(
        [
            _line(HELHEIM_XY, 0.0, 20),
            _line((HELHEIM_XY[0] + 2800.0, HELHEIM_XY[1]), 0.0, 20),
            _line((HELHEIM_XY[0] + 6800.0, HELHEIM_XY[1]), 0.0, 20),
        ]
    )
    picks = pd.DataFrame(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "ice_thickness": 500.0,
            "bed_elevation": np.nan,
            "source": -1,
            "line_id": -1,
        }
    )

    # 900 m is nine median steps (kept), 2100 m is 21 (cut): two lines.
    out = assign_flight_lines(picks)
    np.testing.assert_array_equal(out["line_id"], np.repeat([0, 0, 1], 20))

    # With a gap factor of 5, the 900 m jump is a gap as well.
    out = assign_flight_lines(picks, gap_factor=5.0)
    np.testing.assert_array_equal(out["line_id"], np.repeat([0, 1, 2], 20))


# --- CReSIS L2 CSV --------------------------------------------------------------

CRESIS = """
LAT,LON,UTCTIMESOD,THICK,ELEVATION,FRAME,SURFACE,BOTTOM,QUALITY
66.400000,-38.500000,50000.10,1010.50,2100.00,2017050501001,1200.00,190.00,1
66.401000,-38.501000,50000.60,1011.25,2100.10,2017050501001,1200.50,189.25,1
66.402000,-38.502000,50001.10,-9999.00,2100.20,2017050501001,1201.00,-9999.00,1
66.403000,-38.503000,50001.60,1013.75,2100.30,2017050501001,1201.50,187.75,1
66.600000,-38.900000,50002.10,1014.00,2100.40,2017050501001,1202.00,188.00,2
66.410000,-38.450000,51000.10,900.00,2200.00,2017050501002,1100.00,200.00,1
66.411000,-38.451000,51000.60,901.00,2200.10,2017050501002,1101.00,200.00,1
66.412000,-38.452000,51001.10,902.00,2200.20,2017050501002,1102.00,200.00,3
"""


def test_cresis_csv_is_reprojected_cleaned_and_cut_by_frame(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "Data_20170505_01.csv", CRESIS)
    raw = pd.read_csv(path)

    # The -9999 thickness row is dropped, with a DataWarning that counts it.
    with pytest.warns(DataWarning, match="1 of 8 rows"):
        picks = read_radar(path)
    _check_table(picks, "Data_20170505_01.csv")
    kept = raw[raw["THICK"] != -9999].reset_index(drop=True)
    assert len(picks) == len(kept) == 7

    # The same reprojection as pyproj's EPSG:4326 -> 3413 in (lon, lat)
    # order. 1 micrometre: the same transform on the same doubles, so any
    # difference is floating-point noise, far below a wrong axis order or
    # CRS (hundreds of km).
    to_polar = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)
    x, y = to_polar.transform(kept["LON"].to_numpy(), kept["LAT"].to_numpy())
    np.testing.assert_allclose(picks["x"], x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(picks["y"], y, rtol=0, atol=1e-6)
    np.testing.assert_allclose(picks["ice_thickness"], kept["THICK"], rtol=0)

    # Near Helheim in EPSG:3413 (a swap of lat and lon lands elsewhere).
    assert picks["x"].between(250_000, 330_000).all()
    assert picks["y"].between(-2_600_000, -2_520_000).all()

    # Two frames, two lines: the frame is the line even across the 28 km
    # jump inside the first frame (frames are not cut at gaps).
    np.testing.assert_array_equal(picks["line_id"], [0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(picks["source"], [0, 0, 0, 0, 1, 1, 1])

    # BOTTOM is ellipsoidal and is not used as a bed (read_radar's docstring).
    assert picks["bed_elevation"].isna().all()


def test_cresis_swapped_lat_lon_are_refused(tmp_path: Path) -> None:
    # Longitude beyond 90 degrees in LAT: the message says they may be swapped.
    path = _write_csv(
        tmp_path / "swapped.csv",
        """
        LAT,LON,THICK,FRAME
        -138.5,66.4,1000,1
        """,
    )
    with pytest.raises(SchemaError, match="swapped"):
        read_radar(path)

    # Greenland's own lat/lon swapped land far outside Greenland: refused too.
    path = _write_csv(
        tmp_path / "swapped_greenland.csv",
        """
        LAT,LON,THICK,FRAME
        -38.5,66.4,1000,1
        -38.6,66.5,1000,1
        """,
    )
    with pytest.raises(SchemaError, match="swapped_greenland.csv"):
        read_radar(path)


# --- bad input --------------------------------------------------------------------


def test_csv_with_unknown_columns_lists_the_expected_formats(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "picks.csv", "easting,northing,depth\n1,2,3")
    with pytest.raises(SchemaError) as info:
        read_radar(path)

    # The message names the file's columns and all three formats.
    message = str(info.value)
    assert "picks.csv" in message and "easting" in message
    assert "x, y, thickness" in message
    assert "LAT, LON, THICK" in message
    assert "X, Y, Bed" in message


def test_text_in_a_numeric_column_names_the_column_and_the_file_row(
    tmp_path: Path,
) -> None:
    # A typo (letter O for a zero) on the fourth line of the file.
    path = _write_csv(
        tmp_path / "picks.csv",
        """
        x,y,thickness
        285000,-2565000,800
        285100,-2565000,810
        285200,-2565000,12O.5
        """,
    )
    with pytest.raises(SchemaError) as info:
        read_radar(path)

    # The column, the value and the row of the file (header is row 1).
    message = str(info.value)
    assert "'thickness'" in message
    assert "row 4" in message
    assert "12O.5" in message


def test_text_after_a_blank_line_names_the_right_file_row(tmp_path: Path) -> None:
    # A blank line (line 3) before the typo (line 4): the row given must
    # still be the file's line 4, where an editor would take the user.
    path = tmp_path / "picks.csv"
    path.write_text("x,y,thickness\n285000,-2565000,800\n\n285200,-2565000,12O.5\n")
    with pytest.raises(SchemaError, match="row 4 of the file"):
        read_radar(path)


def test_degrees_in_a_plain_csv_are_refused_as_longitude_latitude(
    tmp_path: Path,
) -> None:
    # x and y given as longitude and latitude of Helheim.
    path = _write_csv(
        tmp_path / "picks.csv", "x,y,thickness\n-38.5,66.4,800\n-38.4,66.5,820"
    )
    with pytest.raises(SchemaError, match="longitude and latitude"):
        read_radar(path)


def test_metres_far_from_greenland_are_refused_as_a_wrong_crs(tmp_path: Path) -> None:
    # UTM zone 24N metres of the same place: metres, but not EPSG:3413.
    path = _write_csv(
        tmp_path / "utm.csv",
        "x,y,thickness\n522000,7365000,800\n522100,7365000,820",
    )
    with pytest.raises(SchemaError, match="CRS") as info:
        read_radar(path)
    assert "EPSG:3413" in str(info.value)


def test_negative_thickness_warns_and_is_dropped(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "picks.csv",
        """
        x,y,thickness
        285000,-2565000,800
        285100,-2565000,-5
        285200,-2565000,820
        """,
    )

    # One warning names the negative thickness, the row then goes.
    with pytest.warns(DataWarning) as record:
        picks = read_radar(path)
    messages = " ".join(str(w.message) for w in record)
    assert "1 picks with negative ice thickness" in messages
    np.testing.assert_array_equal(picks["ice_thickness"], [800.0, 820.0])
    np.testing.assert_array_equal(picks["x"], [285000.0, 285200.0])


def test_empty_file_raises_file_format_error(tmp_path: Path) -> None:
    # Zero bytes: no header to tell the format from.
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty.csv"):
        read_radar(path)


def test_header_only_file_has_no_usable_pick(tmp_path: Path) -> None:
    # A header and no rows: readable, but nothing to use.
    path = _write_csv(tmp_path / "header.csv", "x,y,thickness")
    with pytest.raises(SchemaError, match="no usable radar pick"):
        read_radar(path)


def test_unknown_extension_and_missing_file_are_file_format_errors(
    tmp_path: Path,
) -> None:
    # An Excel file is no radar format this project reads.
    path = tmp_path / "picks.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(FileFormatError, match="unknown radar format '.xlsx'"):
        read_radar(path)

    # A missing file says so and gives the path.
    with pytest.raises(FileFormatError, match="no such file"):
        read_radar(tmp_path / "absent.mat")


def test_matlab_files_without_thickness_raise_schema_error(tmp_path: Path) -> None:
    # A MATLAB v5 file with x and y only.
    v5 = tmp_path / "tracks_v5.mat"
    scipy.io.savemat(v5, {"x": np.array([[285000.0]]), "y": np.array([[-2565000.0]])})
    with pytest.raises(SchemaError, match=r"lacks the variables \['thickness'\]"):
        read_radar(v5)

    # A v7.3 (HDF5) file with x and y only.
    v73 = tmp_path / "tracks_v73.mat"
    with h5py.File(v73, "w") as handle:
        handle["x"] = np.array([[285000.0]])
        handle["y"] = np.array([[-2565000.0]])
    with pytest.raises(SchemaError, match="tracks_v73.mat lacks"):
        read_radar(v73)


def test_matlab_arrays_of_different_lengths_raise_schema_error(
    tmp_path: Path,
) -> None:
    # x has three values, y and thickness two.
    path = tmp_path / "tracks.mat"
    scipy.io.savemat(
        path,
        {
            "x": np.array([[285000.0, 285100.0, 285200.0]]),
            "y": np.array([[-2565000.0, -2565000.0]]),
            "thickness": np.array([[800.0, 810.0]]),
        },
    )
    with pytest.raises(SchemaError, match="differ in length"):
        read_radar(path)


def test_truncated_matlab_file_raises_file_format_error(
    narsap_radar_mat_path: Path, tmp_path: Path
) -> None:
    # The first half of the real v5 file, as an interrupted download.
    content = narsap_radar_mat_path.read_bytes()
    path = tmp_path / "ProcessedTracks.mat"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(FileFormatError, match="ProcessedTracks.mat"):
        read_radar(path)


# --- radar on a grid -------------------------------------------------------------


@pytest.fixture
def tiny_grid() -> xr.Dataset:
    """4 x 5 cells of 150 m near Helheim with a hand-made surface.

    Cell edges: x 300000..300750 m, y -2560000..-2560600 m; the surface is
    ``1000 + 10 * row + col`` metres.
    """
    x = 300_075.0 + 150.0 * np.arange(5)
    y = -2_560_075.0 - 150.0 * np.arange(4)
    rows, cols = np.mgrid[0:4, 0:5]
    surface = (1000.0 + 10.0 * rows + cols).astype("float32")
    grid = xr.Dataset(
        {"surface_elevation": (("y", "x"), surface)}, coords={"x": x, "y": y}
    )
    return finish_grid(grid, origin="tiny")


def _picks(rows: list[tuple[float, float, float, float, int]]) -> pd.DataFrame:
    """A picks table from (x, y, thickness, bed, line_id) tuples."""
    x, y, thickness, bed, line = (np.array(v) for v in zip(*rows))
    return pd.DataFrame(
        {
            "x": x.astype("float64"),
            "y": y.astype("float64"),
            "ice_thickness": thickness.astype("float64"),
            "bed_elevation": bed.astype("float64"),
            "source": -1,
            "line_id": line.astype("int64"),
        }
    )


def test_radar_to_grid_averages_picks_per_cell_by_hand(tiny_grid: xr.Dataset) -> None:
    nan = np.nan
    picks = _picks(
        [
            # Cell (row 0, col 0): two picks of line 0, one 1 m inside the
            # north-west corner; thickness 100 and 300.
            (300_001.0, -2_560_001.0, 100.0, nan, 0),
            (300_100.0, -2_560_100.0, 300.0, nan, 0),
            # Cell (2, 3): two picks of line 1 and one of line 2.
            (300_500.0, -2_560_350.0, 50.0, nan, 1),
            (300_560.0, -2_560_400.0, 70.0, nan, 1),
            (300_520.0, -2_560_420.0, 90.0, nan, 2),
            # Cell (3, 4): a bed point of line 3, bed -120, no thickness.
            (300_700.0, -2_560_550.0, nan, -120.0, 3),
            # Outside: 1 m west, 1 m north, 1 m east, 1 m south of the grid.
            (299_999.0, -2_560_300.0, 500.0, nan, 4),
            (300_300.0, -2_559_999.0, 500.0, nan, 4),
            (300_751.0, -2_560_300.0, 500.0, nan, 4),
            (300_300.0, -2_560_601.0, 500.0, nan, 4),
        ]
    )
    out = radar_to_grid(picks, tiny_grid)

    # Counts: 2, 3 and 1 picks in three cells, zero elsewhere; the four
    # picks outside are ignored.
    count = np.zeros((4, 5), dtype=int)
    count[0, 0], count[2, 3], count[3, 4] = 2, 3, 1
    np.testing.assert_array_equal(out["radar_count"], count)

    # Mean thickness and bed = surface - mean thickness, or the bed point's
    # bed. Exact up to float32 storage (1e-4 m at ~1000 m).
    thickness = np.full((4, 5), np.nan)
    thickness[0, 0], thickness[2, 3] = 200.0, 70.0
    bed = np.full((4, 5), np.nan)
    bed[0, 0] = 1000.0 - 200.0
    bed[2, 3] = (1000.0 + 20.0 + 3.0) - 70.0
    bed[3, 4] = -120.0
    np.testing.assert_allclose(out["radar_thickness"], thickness, atol=1e-4)
    np.testing.assert_allclose(out["radar_bed"], bed, atol=1e-4)

    # The line with most picks per cell; -1 where there is none.
    line = np.full((4, 5), -1)
    line[0, 0], line[2, 3], line[3, 4] = 0, 1, 3
    np.testing.assert_array_equal(out["radar_line"], line)


def test_radar_to_grid_keeps_the_grid_and_the_conventions(
    tiny_grid: xr.Dataset,
) -> None:
    picks = _picks([(300_100.0, -2_560_100.0, 300.0, np.nan, 0)])
    out = radar_to_grid(picks, tiny_grid)

    # Same cells, same CRS, the four variables with units.
    np.testing.assert_array_equal(out["x"], tiny_grid["x"])
    np.testing.assert_array_equal(out["y"], tiny_grid["y"])
    assert out.rio.crs.to_epsg() == 3413
    units = {name: out[name].attrs["units"] for name in out.data_vars}
    assert units == {
        "radar_bed": "m",
        "radar_thickness": "m",
        "radar_count": "1",
        "radar_line": "1",
    }
    assert out["radar_count"].dtype.kind == "i"
    assert out["radar_line"].dtype.kind == "i"


def test_radar_thickness_without_a_surface_is_a_schema_error(
    tiny_grid: xr.Dataset,
) -> None:
    # Thickness needs a surface to give a bed.
    picks = _picks([(300_100.0, -2_560_100.0, 300.0, np.nan, 0)])
    with pytest.raises(SchemaError, match="surface_elevation"):
        radar_to_grid(picks, tiny_grid.drop_vars("surface_elevation"))

    # Bed points alone do not need it.
    beds = _picks([(300_100.0, -2_560_100.0, np.nan, 42.0, 0)])
    out = radar_to_grid(beds, tiny_grid.drop_vars("surface_elevation"))
    assert float(out["radar_bed"][0, 0]) == 42.0


def test_helheim_radar_on_the_helheim_grid_agrees_with_bedmachine(
    helheim_grid_path: Path, helheim_mat: pd.DataFrame
) -> None:
    grid = read_topo_hdf5(helheim_grid_path)

    # 634 picks fall inside the grid (README), each in its own cell here.
    inside = picks_in_grid(helheim_mat, grid)
    assert len(inside) == 634
    out = radar_to_grid(helheim_mat, grid)
    assert int(out["radar_count"].sum()) == 634

    # Radar thickness against BedMachine thickness (surface - bed) at the
    # same cells. The README measures a median of +4..8 m with a spread of
    # ~80 m; over 634 cells the median's standard error is ~4 m, so 20 m
    # holds the real agreement with room, while a transposed or flipped
    # grid puts the picks on other cells, hundreds of metres off.
    has = out["radar_count"].to_numpy() > 0
    bedmachine = (grid["surface_elevation"] - grid["bed_bedmachine"]).to_numpy()
    difference = out["radar_thickness"].to_numpy()[has] - bedmachine[has]
    assert abs(np.median(difference)) < 20.0

    # Radar bed is the grid's surface minus radar thickness; 1e-3 m covers
    # float32 storage of values up to ~1700 m (spacing 1.2e-4 m).
    surface = grid["surface_elevation"].to_numpy()[has]
    np.testing.assert_allclose(
        out["radar_bed"].to_numpy()[has],
        surface - out["radar_thickness"].to_numpy()[has],
        atol=1e-3,
    )


def test_reading_valid_files_gives_no_warning(helheim_radar_csv_path: Path) -> None:
    # A clean file reads without any DataWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        read_radar(helheim_radar_csv_path)
