"""Bad CSV files, bad regions and CRS, and hostile uploads.

CSV files go into ``read_radar`` (and ``describe_file``) and into the small
uploaded-CSV loader ``engine.backprop.datasets.load_csv``; GeoJSON and boxes
into the region makers; oversized and oddly named files into the upload and
run-folder paths. Each must fail with a clear message that names the
problem, or (a byte-order mark) be read as meant.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from engine.backprop.datasets import MAX_CSV_BYTES, load_csv
from engine.backprop.errors import CSVError
from engine.data.errors import RegionError, SchemaError
from engine.data.info import describe_file
from engine.data.radar import read_radar
from engine.data.regions import (
    region_from_geojson,
    region_from_lonlat_box,
    window_on_grid,
)
from engine.jobs import store

#: Radar CSV files and a word their error must hold (the problem named).
RADAR_CSVS: dict[str, tuple[bytes | str, str]] = {
    "wrong_columns": ("a,b,c\n1,2,3\n", "match no radar format"),
    "missing_thickness": ("x,y\n285000,-2565000\n", "match no radar format"),
    "text_in_numbers": ("x,y,thickness\n285000,abc,1000\n", "text"),
    "nan_values": ("x,y,thickness\nnan,nan,nan\n", "no usable"),
    "infinite_values": ("x,y,thickness\ninf,-inf,inf\n", "no usable"),
    "empty": ("", "not a readable CSV"),
    "only_header": ("x,y,thickness\n", "no usable"),
    "blank_lines": ("\r\n\r\n\r\n", "not a readable CSV"),
    "binary": (bytes(range(256)) * 4, "CSV"),
    "nul_bytes": (bytes(2048), "CSV"),
    "very_long_line": ("x,y,thickness\n" + "1," * 200_000 + "1\n", "long"),
    "huge_cell": ("x,y,thickness\n285000,-2565000," + "9" * 500_000 + "\n", "long"),
    "semicolons": ("x;y;thickness\n285000;-2565000;1000\n", "semicolon"),
    "semicolons_decimal_commas": (
        "x;y;thickness\n285000,5;-2565000,5;1,1\n",
        "semicolon",
    ),
    "latin1": (
        "x,y,thickness,n\xe9\n285000,-2565000,1000,1\n".encode("latin-1"),
        "UTF-8",
    ),
    "utf16": ("x,y,thickness\n285000,-2565000,1000\n".encode("utf-16"), "UTF-8"),
    "unclosed_quote": ('x,y,thickness\n"285000,-2565000,1000\n', "CSV"),
    "ragged_rows": ("x,y,thickness\n285000,-2565000,1000,5,6\n", "as many"),
    "bed_points_text": ("X,Y,Bed\n461890,-1047400,abc\n", "text"),
    "source_text": ("x,y,thickness,source\n285000,-2565000,1000,abc\n", "text"),
    # Degrees in a metre file, and metres of UTM 33N (Europe) far away.
    "degrees_in_metres": (
        "x,y,thickness\n-38.5,66.3,1000\n-38.4,66.3,990\n",
        "degrees",
    ),
    "utm_metres": ("x,y,thickness\n500000,4649776,1000\n500100,4649776,990\n", "CRS"),
    # CReSIS: LAT and LON swapped, outside Greenland, out of range, missing.
    "cresis_swapped": ("LAT,LON,THICK\n-38.5,66.3,1000\n-38.4,66.3,990\n", "swapped"),
    "cresis_outside": ("LAT,LON,THICK\n45,7,1000\n", "Greenland"),
    "cresis_lat_beyond_90": ("LAT,LON,THICK\n120,-38,1000\n", "90"),
    "cresis_all_missing": ("LAT,LON,THICK\n-9999,-9999,-9999\n", "no usable"),
}


@pytest.mark.parametrize("case", sorted(RADAR_CSVS))
def test_bad_radar_csv_gives_clear_error(expect_clear, tmp_path, case):
    # Save the bad table as a .csv.
    content, problem = RADAR_CSVS[case]
    path = tmp_path / f"{case}.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())

    # read_radar and describe_file refuse it, naming the file and the problem.
    for reader in (read_radar, describe_file):
        error = expect_clear(reader, path, names=path.name)
        assert problem.lower() in str(error).lower(), str(error)


def test_radar_csv_with_byte_order_mark_reads_as_meant(tmp_path):
    # A BOM before the header is not part of the first column's name.
    path = tmp_path / "bom.csv"
    path.write_text(
        "\ufeffx,y,thickness\n285000,-2565000,1000\n285100,-2565000,990\n",
        encoding="utf-8",
    )
    picks = read_radar(path)
    assert len(picks) == 2
    assert picks["ice_thickness"].tolist() == [1000.0, 990.0]


#: Uploaded CSV files for load_csv and a word their error must hold.
UPLOAD_CSVS: dict[str, tuple[bytes | str, str]] = {
    "wrong_columns": ("a,b\n1,2\n3,4\n", "label"),
    "label_only": ("label\na\nb\n", "feature"),
    "text_in_numbers": ("x1,label\nabc,a\n1,b\n", "not a number"),
    "nan_value": ("x1,label\nnan,a\n1,b\n", "NaN"),
    "infinite_value": ("x1,label\ninf,a\n1,b\n", "infinite"),
    "overflowing_value": ("x1,label\n1e400,a\n1,b\n", "infinite"),
    "empty": ("", "empty"),
    "only_header": ("x1,label\n", "no data rows"),
    "binary": (bytes(range(256)) * 4, "UTF-8"),
    "utf16": ("x1,label\n1,a\n2,b\n".encode("utf-16"), "UTF-8"),
    "very_long_line": ("x1,label\n" + "1," * 200_000 + "a\n", "values"),
    "semicolons": ("x1;label\n1;a\n2;b\n", "semicolon"),
    "ragged_rows": ("x1,label\n1,a,3\n", "values"),
    "one_class": ("x1,label\n1,a\n2,a\n", "class"),
    "duplicate_names": ("x1,x1,label\n1,2,a\n3,4,b\n", "more than once"),
}


@pytest.mark.parametrize("case", sorted(UPLOAD_CSVS))
def test_bad_uploaded_csv_gives_clear_error(expect_clear, case):
    # load_csv takes the bytes of an upload; its errors are CSVError.
    content, problem = UPLOAD_CSVS[case]
    error = expect_clear(load_csv, content, errors=CSVError)
    assert problem.lower() in str(error).lower(), str(error)


def test_uploaded_csv_with_byte_order_mark_reads_as_meant():
    # A BOM is dropped with the UTF-8 decoding.
    data = load_csv("\ufeffx1,label\n1,a\n2,b\n".encode())
    assert data.feature_names == ("x1",)


def test_uploaded_csv_over_the_size_limit_gives_clear_error(expect_clear):
    # One byte over the limit, counted in bytes even for text with accents.
    error = expect_clear(load_csv, "é" * (MAX_CSV_BYTES // 2 + 1), errors=CSVError)
    assert "limit" in str(error)


# --- regions --------------------------------------------------------------------


def _ring(*corners: tuple[float, float]) -> dict:
    """A GeoJSON polygon from corners (closed here)."""
    return {"type": "Polygon", "coordinates": [[*map(list, corners), list(corners[0])]]}


NAN = float("nan")

#: Bad GeoJSON inputs and a word their error must hold.
BAD_GEOJSON: dict[str, tuple[object, str]] = {
    "lon_lat_swapped": (_ring((66, -40), (66, -38), (67, -38), (67, -40)), "swapped"),
    "outside_greenland": (_ring((0, 45), (1, 45), (1, 46), (0, 46)), "outside"),
    "zero_area_line": (_ring((-40, 66), (-39, 66), (-38, 66)), "zero area"),
    "zero_area_point": (_ring((-40, 66), (-40, 66), (-40, 66)), "zero area"),
    "self_intersecting": (_ring((-40, 66), (-38, 67), (-38, 66), (-40, 67)), "cross"),
    "point": ({"type": "Point", "coordinates": [-40, 66]}, "not a polygon"),
    "line": (
        {"type": "LineString", "coordinates": [[-40, 66], [-39, 67]]},
        "not a polygon",
    ),
    "multipolygon": ({"type": "MultiPolygon", "coordinates": []}, "not a polygon"),
    "collection": ({"type": "GeometryCollection", "geometries": []}, "not a polygon"),
    "nan_corner": (_ring((NAN, 66), (-38, 66), (-38, 67), (-40, 67)), "readable"),
    "infinite_corner": (_ring((float("inf"), 66), (-38, 66), (-38, 67)), "finite"),
    "empty_coordinates": ({"type": "Polygon", "coordinates": []}, "no corners"),
    "empty_ring": ({"type": "Polygon", "coordinates": [[]]}, "no corners"),
    "no_coordinates": ({"type": "Polygon"}, "readable"),
    "text_coordinates": ({"type": "Polygon", "coordinates": "abc"}, "readable"),
    "two_corners": (
        {"type": "Polygon", "coordinates": [[[-40, 66], [-39, 66]]]},
        "readable",
    ),
    "huge_number": (_ring((10**400, 66), (-38, 66), (-38, 67)), "readable"),
    "metres_not_degrees": (
        _ring((285_000, -2_565_000), (295_000, -2_565_000), (295_000, -2_555_000)),
        "degrees",
    ),
    "feature_without_geometry": (
        {"type": "Feature", "geometry": None},
        "not a polygon",
    ),
    "list": ([1, 2, 3], "not a GeoJSON"),
    "none": (None, "not a GeoJSON"),
    "string": ("Polygon", "not a GeoJSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_GEOJSON))
def test_bad_geojson_region_gives_clear_error(expect_clear, case):
    geometry, problem = BAD_GEOJSON[case]
    error = expect_clear(region_from_geojson, geometry, errors=RegionError)
    assert problem.lower() in str(error).lower(), str(error)


@pytest.mark.parametrize(
    ("box", "problem"),
    [
        ((-38, 66, -40, 67), "empty"),
        ((NAN, 66, -38, 67), "NaN"),
        ((66, -40, 67, -38), "swapped"),
        ((0, 0, 1, 1), "outside"),
        (("a", 1, 2, 3), "four numbers"),
    ],
    ids=["reversed", "nan", "swapped", "outside", "text"],
)
def test_bad_lonlat_box_gives_clear_error(expect_clear, box, problem):
    error = expect_clear(
        lambda corners: region_from_lonlat_box(*corners), box, errors=RegionError
    )
    assert problem.lower() in str(error).lower(), str(error)


def test_region_far_too_large_is_refused_on_the_grid(expect_clear):
    # All of Greenland on a 1500 x 1500 grid of 150 m cells (coordinates only).
    x = 100_000.0 + 150.0 * np.arange(1500)
    y = -2_400_000.0 - 150.0 * np.arange(1500)
    grid = xr.Dataset(coords={"x": x, "y": y}, attrs={"origin": "test grid"})
    region = region_from_lonlat_box(-70.0, 60.0, -15.0, 83.0, name="all Greenland")
    error = expect_clear(window_on_grid, region, grid, errors=RegionError)
    assert "smaller region" in str(error)


# --- uploads and run folders ----------------------------------------------------


@pytest.fixture
def uploads(monkeypatch, tmp_path) -> Path:
    """The runs folder in tmp_path; returns its uploads folder."""
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(tmp_path / "runs"))
    return tmp_path / "runs" / "uploads"


def test_upload_over_the_size_limit_is_refused_and_not_written(uploads):
    # One byte over the page's limit: refused before anything is written.
    climate = pytest.importorskip("ui.climate")
    content = bytes(climate.MAX_UPLOAD_MB * 1_000_000 + 1)
    with pytest.raises(ValueError, match="limit") as info:
        climate.save_upload(content, "big.nc")
    assert "cut the file" in str(info.value)
    assert not uploads.exists() or not any(uploads.iterdir())


@pytest.mark.parametrize(
    "name",
    ["../escape.nc", "../../etc/passwd", "a/b.nc", "/etc/passwd", "..\\win.nc",
     ".hidden.nc", "", "x\x00y.nc", "é" * 5000 + ".nc"],
    ids=["dotdot", "dotdot2", "subfolder", "absolute", "backslash", "hidden",
         "empty", "nul", "very_long"],
)  # fmt: skip
def test_upload_keeps_a_server_chosen_name(uploads, name):
    # Whatever the user's name, the file lands in uploads under random hex.
    climate = pytest.importorskip("ui.climate")
    path = climate.save_upload(b"CDF\x01", name)
    assert path.parent == uploads
    assert re.fullmatch(r"[0-9a-f]{16}\.nc", path.name)
    assert path.read_bytes() == b"CDF\x01"
    assert sorted(p.name for p in uploads.iterdir()) == [path.name]


@pytest.mark.parametrize(
    "job_id", ["../x", "a/b", ".hidden", "", "..", ".", "a\\b", "/abs"]
)
def test_job_dir_refuses_ids_that_are_not_plain_names(tmp_path, job_id):
    with pytest.raises(ValueError, match="not a job id"):
        store.job_dir(job_id, root=tmp_path)
