"""Tests of regions: drawn polygons and boxes, and their windows on a grid.

A drawn region arrives as a GeoJSON geometry in longitude/latitude (as
Leaflet.draw returns it) or as a lon/lat box; it becomes a polygon in
EPSG:3413 and then a window of grid cells. Every refusal must say what is
wrong and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from pyproj import Geod, Transformer
from shapely.geometry import Polygon

from engine.data.errors import RegionError
from engine.data.grids import finish_grid, read_topo_hdf5
from engine.data.radar import picks_in_grid, read_radar
from engine.data.regions import (
    MAX_CELLS,
    MIN_CELLS_PER_SIDE,
    PRESET_REGIONS,
    grid_region,
    region_from_bounds,
    region_from_geojson,
    region_from_lonlat_box,
    window_on_grid,
)

#: A box on Helheim's trunk, inside the Helheim grid (lon_min, lat_min,
#: lon_max, lat_max), as in the CLI's example.
HELHEIM_BOX = (-38.9, 66.4, -38.5, 66.6)

_TO_POLAR = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)
_TO_LONLAT = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True)


def _leaflet_rectangle(
    lon_min: float, lat_min: float, lon_max: float, lat_max: float
) -> dict[str, Any]:
    """A rectangle as Leaflet.draw returns it: a Feature, clockwise from SW."""
    ring = [
        [lon_min, lat_min],
        [lon_min, lat_max],
        [lon_max, lat_max],
        [lon_max, lat_min],
        [lon_min, lat_min],
    ]
    return {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def _polygon(ring: list[list[float]]) -> dict[str, Any]:
    """A GeoJSON Polygon geometry of one ring."""
    return {"type": "Polygon", "coordinates": [ring]}


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def helheim(helheim_grid_path: Path) -> xr.Dataset:
    """The Helheim HDF5 grid, read once for the module."""
    return read_topo_hdf5(helheim_grid_path)


@pytest.fixture(scope="module")
def helheim_picks(helheim_radar_mat_path: Path) -> pd.DataFrame:
    """The Helheim radar picks, read once for the module."""
    return read_radar(helheim_radar_mat_path)


@pytest.fixture
def tiny_grid() -> xr.Dataset:
    """40 rows x 30 columns of 150 m near Helheim, y decreasing.

    Centres: x 280075 + 150 i, y -2550075 - 150 j.
    """
    x = 280_075.0 + 150.0 * np.arange(30)
    y = -2_550_075.0 - 150.0 * np.arange(40)
    grid = xr.Dataset(
        {"surface_elevation": (("y", "x"), np.ones((40, 30), dtype="float32"))},
        coords={"x": x, "y": y},
    )
    return finish_grid(grid, origin="tiny.h5")


def _cell_bounds(
    grid: xr.Dataset, rows: tuple[int, int], cols: tuple[int, int]
) -> tuple[float, float, float, float]:
    """EPSG:3413 bounds around the centres of rows and cols (inclusive).

    The bounds lie 10 m beyond the outer centres, so no centre is on them.
    """
    x = grid["x"].to_numpy()
    y = grid["y"].to_numpy()
    return (
        x[cols[0]] - 10.0,
        y[rows[1]] - 10.0,
        x[cols[1]] + 10.0,
        y[rows[0]] + 10.0,
    )


# --- lon/lat box and drawn GeoJSON ------------------------------------------------


def test_lonlat_box_becomes_a_polygon_in_epsg3413_with_the_right_area() -> None:
    region = region_from_lonlat_box(*HELHEIM_BOX, name="Helheim trunk")
    assert region.name == "Helheim trunk"

    # The four corners, projected by pyproj, are corners of the region.
    lon_min, lat_min, lon_max, lat_max = HELHEIM_BOX
    xs, ys = _TO_POLAR.transform(
        [lon_min, lon_max, lon_max, lon_min], [lat_min, lat_min, lat_max, lat_max]
    )
    for x, y in zip(xs, ys):
        # 1 micrometre: the same transform of the same corner.
        assert region.polygon.exterior.distance(shapely.Point(x, y)) < 1e-6

    # The area of the box built from the projected corners. The region's
    # edges follow the parallels (densified every 0.05 degree) where that box
    # has straight chords: each 17.8 km parallel bows ~15 m off its chord
    # (0.18 km^2, 4e-4 of the area), but north and south bow the same way
    # and nearly cancel (8e-6 measured). 1e-4 allows that and catches one
    # edge left straight or the box built in the wrong CRS.
    corner_box = Polygon(zip(xs, ys))
    assert region.area_km2 == pytest.approx(corner_box.area / 1e6, rel=1e-4)
    assert 350.0 < region.area_km2 < 450.0


def test_lonlat_box_area_is_close_to_the_geodesic_area() -> None:
    # EPSG:3413 is conformal, not equal-area: at 66.5 N its scale factor is
    # about 1.012, so areas are about 2.4 % larger than on the ellipsoid.
    # Scale 0.97..1.03 over Greenland (Region.area_km2) bounds the ratio to
    # 0.94..1.07.
    region = region_from_lonlat_box(*HELHEIM_BOX)
    lon_min, lat_min, lon_max, lat_max = HELHEIM_BOX
    area, _ = Geod(ellps="WGS84").polygon_area_perimeter(
        [lon_min, lon_max, lon_max, lon_min], [lat_min, lat_min, lat_max, lat_max]
    )
    ratio = region.area_km2 / (abs(area) / 1e6)
    assert 0.94 < ratio < 1.07
    assert ratio > 1.0


def test_leaflet_feature_gives_the_same_region_as_the_box() -> None:
    # Leaflet.draw's rectangle: a Feature holding a clockwise Polygon.
    drawn = region_from_geojson(_leaflet_rectangle(*HELHEIM_BOX))
    boxed = region_from_lonlat_box(*HELHEIM_BOX)

    # Same polygon up to ring order and direction. 1e-9 of the area: the
    # same points, so only rounding in the area sum differs.
    assert drawn.area_km2 == pytest.approx(boxed.area_km2, rel=1e-9)
    assert drawn.polygon.symmetric_difference(boxed.polygon).area < 1e-9 * (
        boxed.polygon.area
    )
    assert drawn.name == "drawn region"


def test_region_to_geojson_is_longitude_first() -> None:
    # The outline back in lon/lat: longitudes -38.9..-38.5, latitudes
    # 66.4..66.6. 1e-6 degree (0.1 m): a round trip through pyproj.
    region = region_from_lonlat_box(*HELHEIM_BOX)
    geojson = region.to_geojson()
    assert geojson["type"] == "Polygon"
    lon, lat = np.asarray(geojson["coordinates"][0]).T
    np.testing.assert_allclose([lon.min(), lon.max()], [-38.9, -38.5], atol=1e-6)
    np.testing.assert_allclose([lat.min(), lat.max()], [66.4, 66.6], atol=1e-6)


# --- windows on the Helheim grid ----------------------------------------------------


def test_window_on_helheim_grid_holds_the_cells_in_the_region(
    helheim: xr.Dataset,
) -> None:
    region = region_from_lonlat_box(*HELHEIM_BOX)
    window = window_on_grid(region, helheim)

    # Independently: which of the grid's centres lie in the region.
    xx, yy = np.meshgrid(helheim["x"].to_numpy(), helheim["y"].to_numpy())
    inside = shapely.contains_xy(region.polygon, xx, yy)

    # The window holds all of them, and nothing outside it is in the region.
    assert window.shape == (
        window.rows.stop - window.rows.start,
        window.cols.stop - window.cols.start,
    )
    np.testing.assert_array_equal(window.mask, inside[window.rows, window.cols])
    assert window.n_cells == int(inside.sum()) == 18_073
    assert (window.rows, window.cols) == (slice(72, 235), slice(23, 159))

    # Area: the cells' area. It matches the polygon's to within a band of
    # half a cell along the perimeter (81 km x 75 m = 6 km^2): only cells
    # cut by the edge can be counted in or out.
    assert window.area_km2 == pytest.approx(window.n_cells * 0.0225)
    band_km2 = region.polygon.length * 75.0 / 1e6
    assert abs(window.area_km2 - region.area_km2) < band_km2
    assert window.spacing == 150.0

    # select() cuts the same cells out of the grid.
    cut = window.select(helheim)
    assert (cut.sizes["y"], cut.sizes["x"]) == window.shape
    assert float(cut["x"][0]) == float(helheim["x"][23])
    assert float(cut["y"][0]) == float(helheim["y"][72])


def test_grid_region_round_trip_covers_the_whole_grid(helheim: xr.Dataset) -> None:
    # The grid's region: its cells' outer edges (centres +- 75 m).
    region = grid_region(helheim)
    assert region.bounds == (269_500.0, -2_586_950.0, 299_500.0, -2_541_950.0)
    assert region.area_km2 == pytest.approx(200 * 300 * 0.0225)
    assert region.name == "subdomain_data.h5"

    # Laid back on the grid it is the whole grid, every cell in it.
    window = window_on_grid(region, helheim)
    assert (window.rows, window.cols) == (slice(0, 300), slice(0, 200))
    assert window.mask.all()
    assert window.n_cells == 60_000
    assert window.area_km2 == pytest.approx(1350.0)

    # Through lon/lat and back (as a page would send it) it stays within a
    # cell: its straight EPSG:3413 edges come back following lon/lat lines,
    # up to 44 m off (measured); 100 m is two-thirds of a cell, and the
    # area moves by 3.5e-5, within 1e-3.
    again = region_from_geojson(region.to_geojson())
    assert region.polygon.hausdorff_distance(again.polygon) < 100.0
    assert again.area_km2 == pytest.approx(region.area_km2, rel=1e-3)


def test_count_picks_counts_helheim_radar_in_the_window(
    helheim: xr.Dataset, helheim_picks: pd.DataFrame
) -> None:
    # The whole grid: the README's 634 picks, on the lines of those picks.
    whole = window_on_grid(grid_region(helheim), helheim)
    inside = picks_in_grid(helheim_picks, helheim)
    assert whole.count_picks(helheim_picks) == (634, inside["line_id"].nunique())

    # The trunk box, checked against the picks' own lon/lat: the region's
    # edges follow the parallels and meridians to 0.2 m (densified every
    # 0.05 degree), and no pick lies that close to them.
    lon, lat = _TO_LONLAT.transform(
        helheim_picks["x"].to_numpy(), helheim_picks["y"].to_numpy()
    )
    lon_min, lat_min, lon_max, lat_max = HELHEIM_BOX
    in_box = (lon > lon_min) & (lon < lon_max) & (lat > lat_min) & (lat < lat_max)
    window = window_on_grid(region_from_lonlat_box(*HELHEIM_BOX), helheim)
    picks, lines = window.count_picks(helheim_picks)
    assert picks == int(in_box.sum()) > 0
    assert lines == helheim_picks.loc[in_box, "line_id"].nunique()


# --- windows on a tiny synthetic grid ---------------------------------------------


def test_window_on_tiny_grid_has_exact_slices_mask_and_area(
    tiny_grid: xr.Dataset,
) -> None:
    # Bounds around rows 10..29 and columns 5..24: 20 x 20 cells.
    region = region_from_bounds(*_cell_bounds(tiny_grid, (10, 29), (5, 24)))
    window = window_on_grid(region, tiny_grid)
    assert (window.rows, window.cols) == (slice(10, 30), slice(5, 25))
    assert window.shape == (20, 20)
    assert window.mask.all()
    assert window.n_cells == 400
    assert window.area_km2 == pytest.approx(400 * 0.0225)


def test_window_is_clipped_to_the_grid(tiny_grid: xr.Dataset) -> None:
    # Bounds over rows 10..29 that reach 3 km (20 cells) east of the grid.
    x_min, y_min, x_max, y_max = _cell_bounds(tiny_grid, (10, 29), (12, 29))
    region = region_from_bounds(x_min, y_min, x_max + 3000.0, y_max)
    window = window_on_grid(region, tiny_grid)

    # Only the grid's own columns 12..29 are in the window, all of them in.
    assert (window.rows, window.cols) == (slice(10, 30), slice(12, 30))
    assert window.mask.all()
    assert window.n_cells == 20 * 18

    # The window's region is the part on the grid, not what was drawn.
    assert window.region.bounds[2] == pytest.approx(float(tiny_grid["x"][-1]) + 75)
    assert window.region.area_km2 < region.area_km2


def test_window_mask_follows_a_triangle(tiny_grid: xr.Dataset) -> None:
    # A right triangle on the same 20 x 20 cells: corners north-west,
    # south-west and south-east, so its hypotenuse runs along the diagonal.
    x_min, y_min, x_max, y_max = _cell_bounds(tiny_grid, (10, 29), (5, 24))
    triangle = shapely.Polygon([(x_min, y_max), (x_min, y_min), (x_max, y_min)])
    ring = [list(_TO_LONLAT.transform(x, y)) for x, y in triangle.exterior.coords]

    # Drawn in lon/lat (as on the map) and laid on the grid.
    window = window_on_grid(region_from_geojson(_polygon(ring)), tiny_grid)
    assert window.shape == (20, 20)

    # Cells below the diagonal are in, above it out; the diagonal's centres
    # lie on the edge (either way, by rounding), so they are not checked.
    row, col = np.mgrid[0:20, 0:20]
    assert window.mask[col < row].all()
    assert not window.mask[col > row].any()
    assert 190 <= window.n_cells <= 210


def test_region_of_16_cells_a_side_is_the_smallest_accepted(
    tiny_grid: xr.Dataset,
) -> None:
    # 16 x 16 cells: accepted.
    assert MIN_CELLS_PER_SIDE == 16
    ok = region_from_bounds(*_cell_bounds(tiny_grid, (0, 15), (0, 15)))
    assert window_on_grid(ok, tiny_grid).shape == (16, 16)

    # 15 cells along one side: refused, saying how large to draw it.
    narrow = region_from_bounds(*_cell_bounds(tiny_grid, (0, 15), (0, 14)))
    with pytest.raises(RegionError) as info:
        window_on_grid(narrow, tiny_grid)
    message = str(info.value)
    assert "covers only 16 x 15 cells of 150 m" in message
    assert "at least 16 x 16 cells (2.4 km x 2.4 km)" in message


def test_region_above_max_cells_is_refused(tiny_grid: xr.Dataset) -> None:
    # 20 x 20 = 400 cells: accepted at 400, refused at 399.
    region = region_from_bounds(*_cell_bounds(tiny_grid, (10, 29), (5, 24)))
    assert window_on_grid(region, tiny_grid, max_cells=400).n_cells == 400
    with pytest.raises(RegionError) as info:
        window_on_grid(region, tiny_grid, max_cells=399)
    assert "20 x 20 = 400 cells, more than the 399 cells" in str(info.value)
    assert "draw a smaller region" in str(info.value)


def test_region_above_the_default_max_cells_is_refused() -> None:
    # A 1001 x 1001 grid of 150 m (150 km square) near Helheim, one cell
    # above the default limit of a million when drawn whole.
    x = 200_075.0 + 150.0 * np.arange(1001)
    y = -2_500_075.0 - 150.0 * np.arange(1001)
    grid = xr.Dataset(coords={"x": x, "y": y}, attrs={"origin": "big"})
    assert MAX_CELLS == 1_000_000
    with pytest.raises(RegionError, match="1,002,001 cells, more than the 1,000,000"):
        window_on_grid(grid_region(grid), grid)


# --- refusals ---------------------------------------------------------------------


def test_box_over_the_uk_lies_outside_greenland() -> None:
    with pytest.raises(RegionError) as info:
        region_from_lonlat_box(-5.0, 51.0, -1.0, 54.0, name="UK box")
    message = str(info.value)
    assert "UK box lies outside Greenland" in message
    assert "60-84 N, 11-74 W" in message


def test_upernavik_box_on_the_helheim_grid_gives_the_coverage(
    helheim: xr.Dataset,
) -> None:
    # Upernavik is in Greenland but not in the Helheim data.
    region = region_from_lonlat_box(
        *PRESET_REGIONS["Upernavik Isstrom"], name="Upernavik Isstrom"
    )
    with pytest.raises(RegionError) as info:
        window_on_grid(region, helheim)

    # The message gives the coverage in metres and in degrees.
    message = str(info.value)
    assert "Upernavik Isstrom lies outside the data's coverage" in message
    assert "'subdomain_data.h5'" in message
    assert "x 269500..299500 m, y -2586950..-2541950 m" in message
    assert "66.29-66.72 N, 38.28-39.05 W" in message
    assert "fetch BedMachine" in message


def test_zero_area_polygon_is_refused() -> None:
    # Three corners on one line of Helheim (a double click on the map).
    ring = [[-38.9, 66.4], [-38.7, 66.5], [-38.5, 66.6], [-38.9, 66.4]]
    with pytest.raises(RegionError, match="zero area"):
        region_from_geojson(_polygon(ring))


def test_self_intersecting_bowtie_is_refused() -> None:
    # A bowtie: its two diagonals cross in the middle.
    ring = [[-38.9, 66.4], [-38.5, 66.6], [-38.5, 66.4], [-38.9, 66.6], [-38.9, 66.4]]
    with pytest.raises(RegionError) as info:
        region_from_geojson(_polygon(ring))
    assert "not a valid polygon" in str(info.value)
    assert "edges cross" in str(info.value)


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Point", "coordinates": [-38.7, 66.5]},
        {"type": "LineString", "coordinates": [[-38.9, 66.4], [-38.5, 66.6]]},
        {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "Point", "coordinates": [-38.7, 66.5]},
        },
        {"type": "Feature", "properties": {}, "geometry": None},
    ],
    ids=["point", "line", "feature-point", "feature-empty"],
)
def test_non_polygon_geometry_is_refused(geometry: dict[str, Any]) -> None:
    with pytest.raises(RegionError, match="not a polygon: draw a rectangle"):
        region_from_geojson(geometry)


def test_swapped_latitude_and_longitude_are_named_as_such() -> None:
    # Helheim's box with each corner given as [lat, lon] instead of [lon, lat],
    # the commonest slip when coordinates are typed or pasted.
    lon_min, lat_min, lon_max, lat_max = HELHEIM_BOX
    ring = [
        [lat_min, lon_min],
        [lat_max, lon_min],
        [lat_max, lon_max],
        [lat_min, lon_max],
        [lat_min, lon_min],
    ]
    with pytest.raises(RegionError, match="look swapped"):
        region_from_geojson(_polygon(ring))


def test_coordinates_out_of_range_are_refused() -> None:
    # Latitude 95: beyond the pole.
    ring = [[-38.9, 66.4], [-38.5, 66.4], [-38.5, 95.0], [-38.9, 66.4]]
    with pytest.raises(RegionError, match=r"beyond \+-90 latitude"):
        region_from_geojson(_polygon(ring))

    # Longitude 300: out of -180..180.
    ring = [[-38.9, 66.4], [300.0, 66.4], [-38.5, 66.6], [-38.9, 66.4]]
    with pytest.raises(RegionError, match="longitude first"):
        region_from_geojson(_polygon(ring))


def test_positions_with_altitude_give_the_same_region() -> None:
    # GeoJSON positions may carry a third value, the altitude (RFC 7946,
    # 3.1.1); Leaflet writes it when a point has one. It must not matter.
    flat = _leaflet_rectangle(*HELHEIM_BOX)
    ring3d = [[lon, lat, 0.0] for lon, lat in flat["geometry"]["coordinates"][0]]
    region = region_from_geojson(_polygon(ring3d))
    # Same corners, so the same area up to rounding (1e-9).
    assert region.area_km2 == pytest.approx(
        region_from_geojson(flat).area_km2, rel=1e-9
    )


def test_polygon_without_coordinates_is_a_region_error() -> None:
    # A truncated payload from a page: a Polygon with no coordinates. The
    # data layer promises a RegionError here, never a bare KeyError.
    with pytest.raises(RegionError):
        region_from_geojson({"type": "Polygon"})


def test_empty_boxes_and_bounds_are_refused() -> None:
    # lon_min >= lon_max: the box is empty.
    with pytest.raises(RegionError, match="is empty"):
        region_from_lonlat_box(-38.5, 66.4, -38.9, 66.6)

    # EPSG:3413 bounds with y_min >= y_max enclose no area.
    with pytest.raises(RegionError, match="enclose no area"):
        region_from_bounds(280_000, -2_550_000, 290_000, -2_560_000)
