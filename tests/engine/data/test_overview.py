"""Tests of ``engine.data.overview``: footprints of the demo data for the map."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import shape

from engine.data.overview import Footprint, demo_footprints, flight_line_geometries
from engine.data.radar import read_radar
from engine.data.registry import CACHE_DIR_ENV, DATA_DIR_ENV

#: The five demo files, as (data set, file, kind).
DEMO = [
    ("helheim", "subdomain_data.h5", "grid"),
    ("helheim", "subdomain_bed.nc", "bedmachine"),
    ("helheim", "flightTracks.mat", "radar"),
    ("narsap", "ProcessedTracks.mat", "radar"),
    ("nioghalvfjerds_79n", "Nioghalvfjerds_bed_data.csv", "points"),
]


@pytest.fixture(scope="module")
def real_footprints(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[Footprint], list[str]]:
    """demo_footprints() on the real data directory and an empty cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(data_dir))
        patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("empty_cache")))
        return demo_footprints()


def _by_file(footprints: list[Footprint]) -> dict[str, Footprint]:
    return {footprint.filename: footprint for footprint in footprints}


def _lonlat_bounds(footprint: Footprint) -> tuple[float, float, float, float]:
    return tuple(shape(footprint.geojson).bounds)  # type: ignore[return-value]


# --- with the real data ---------------------------------------------------------


def test_all_five_demo_files_give_footprints_and_no_problem(
    real_footprints: tuple[list[Footprint], list[str]], data_dir: Path
) -> None:
    footprints, problems = real_footprints
    assert problems == []
    assert [(f.dataset, f.filename, f.kind) for f in footprints] == DEMO

    # Each was found in the data directory, with a label for the legend.
    for footprint in footprints:
        assert footprint.path.is_relative_to(data_dir)
        assert footprint.path.name == footprint.filename
        assert footprint.label


def test_helheim_grid_footprint_is_a_polygon_around_helheim(
    real_footprints: tuple[list[Footprint], list[str]],
) -> None:
    grid = _by_file(real_footprints[0])["subdomain_data.h5"]
    assert grid.geojson["type"] == "Polygon"
    assert grid.details == {"cells": 60_000}

    # The README's 66.32-66.69 N, 38.3-39.05 W for the cell centres; the
    # outline runs along the outer cell edges and its corners are where the
    # extremes of lon/lat lie, hence 0.03 degree (about 3 km) of slack.
    lon_min, lat_min, lon_max, lat_max = _lonlat_bounds(grid)
    assert lat_min == pytest.approx(66.3, abs=0.03)
    assert lat_max == pytest.approx(66.7, abs=0.03)
    assert lon_min == pytest.approx(-39.05, abs=0.03)
    assert lon_max == pytest.approx(-38.3, abs=0.03)

    # A closed ring of four corners, longitude first.
    ring = grid.geojson["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    assert all(-40 < lon < -38 and 66 < lat < 67 for lon, lat in ring)


def test_bedmachine_footprint_lies_east_of_the_grid(
    real_footprints: tuple[list[Footprint], list[str]],
) -> None:
    by_file = _by_file(real_footprints[0])
    bedmachine = by_file["subdomain_bed.nc"]
    assert bedmachine.geojson["type"] == "Polygon"
    assert bedmachine.details == {"cells": 134 * 134}

    # README: about 66.35-66.51 N, 37.9-38.4 W (0.05 degree: its rounding
    # plus the half cell of the outline).
    lon_min, lat_min, lon_max, lat_max = _lonlat_bounds(bedmachine)
    assert (lat_min, lat_max) == pytest.approx((66.35, 66.51), abs=0.05)
    assert (lon_min, lon_max) == pytest.approx((-38.4, -37.9), abs=0.05)

    # The two grids touch at most along an edge: they do not overlap.
    grid = shape(by_file["subdomain_data.h5"].geojson)
    assert grid.intersection(shape(bedmachine.geojson)).area < 1e-9


def test_radar_footprints_are_flight_lines(
    real_footprints: tuple[list[Footprint], list[str]],
    helheim_radar_mat_path: Path,
) -> None:
    by_file = _by_file(real_footprints[0])

    # Helheim: a multi-line of every flight line with two or more picks.
    helheim = by_file["flightTracks.mat"]
    assert helheim.geojson["type"] == "MultiLineString"
    picks = read_radar(helheim_radar_mat_path)
    sizes = picks.groupby("line_id").size()
    assert helheim.details == {"picks": 3192, "lines": int((sizes >= 2).sum())}
    assert len(helheim.geojson["coordinates"]) == helheim.details["lines"]

    # Its lines cross the Helheim grid's polygon.
    grid = shape(by_file["subdomain_data.h5"].geojson)
    assert shape(helheim.geojson).intersects(grid)

    # Narsap: README 64.35-65.07 N, 48.2-49.7 W (0.05 degree: rounding).
    narsap = by_file["ProcessedTracks.mat"]
    assert narsap.geojson["type"] == "MultiLineString"
    assert narsap.details["picks"] == 30_863
    lon_min, lat_min, lon_max, lat_max = _lonlat_bounds(narsap)
    assert (lat_min, lat_max) == pytest.approx((64.35, 65.07), abs=0.05)
    assert (lon_min, lon_max) == pytest.approx((-49.7, -48.2), abs=0.05)


def test_79n_bed_points_footprint_is_their_hull(
    real_footprints: tuple[list[Footprint], list[str]],
) -> None:
    points = _by_file(real_footprints[0])["Nioghalvfjerds_bed_data.csv"]
    assert points.kind == "points"
    assert points.geojson["type"] == "Polygon"
    assert points.details == {"picks": 104_292}

    # README: about 79.0-79.8 N, 20.1-23.9 W (0.1 degree: its rounding).
    lon_min, lat_min, lon_max, lat_max = _lonlat_bounds(points)
    assert (lat_min, lat_max) == pytest.approx((79.0, 79.8), abs=0.1)
    assert (lon_min, lon_max) == pytest.approx((-23.9, -20.1), abs=0.1)


# --- without the data -----------------------------------------------------------


def test_no_data_gives_no_footprints_and_says_how_to_fetch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An empty data directory and an empty cache.
    (tmp_path / "data").mkdir()
    (tmp_path / "cache").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))

    footprints, problems = demo_footprints()
    assert footprints == []

    # One problem per file, naming it and the fetch command of its data set.
    assert len(problems) == len(DEMO)
    for (dataset, filename, _), problem in zip(DEMO, problems):
        assert filename in problem
        assert f"python -m engine data fetch {dataset}" in problem
        assert DATA_DIR_ENV in problem

    # Nothing was downloaded or created in the cache.
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_unreadable_file_is_a_problem_and_the_others_still_show(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    helheim_grid_path: Path,
    helheim_radar_mat_path: Path,
) -> None:
    # A data directory with the radar file and a same-sized garbage grid
    # (so that the registry's size check lets it through to the reader).
    folder = tmp_path / "data" / "pinnicle_greenland"
    folder.mkdir(parents=True)
    shutil.copy(helheim_radar_mat_path, folder)
    size = helheim_grid_path.stat().st_size
    (folder / "subdomain_data.h5").write_bytes(b"\0" * size)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))

    footprints, problems = demo_footprints()

    # The radar still shows; the grid is a problem that names the file.
    assert [f.filename for f in footprints] == ["flightTracks.mat"]
    assert any("subdomain_data.h5 is not a readable HDF5" in p for p in problems)
    assert len(problems) == len(DEMO) - 1


# --- flight lines on synthetic picks ----------------------------------------------


def test_flight_line_geometries_one_line_per_line_id_in_lonlat() -> None:
    # Two straight lines of 30 picks 100 m apart near Helheim, and one pick
    # alone on a third line id.
    x0, y0 = 285_000.0, -2_565_000.0
    steps = 100.0 * np.arange(30)
    picks = pd.DataFrame(
        {
            "x": np.concatenate([x0 + steps, np.full(30, x0 + 10_000.0), [x0]]),
            "y": np.concatenate([np.full(30, y0), y0 + steps, [y0 + 20_000.0]]),
            "line_id": np.repeat([0, 1, 2], [30, 30, 1]),
        }
    )
    lines = flight_line_geometries(picks)

    # Two lines (the lone pick makes none); each straight line is simplified
    # to its two end points, in longitude and latitude near 66.5 N, 38.6 W.
    assert isinstance(lines, shapely.MultiLineString)
    assert len(lines.geoms) == 2
    for line in lines.geoms:
        assert len(line.coords) == 2
        for lon, lat in line.coords:
            assert -39.5 < lon < -37.5 and 66.0 < lat < 67.0
