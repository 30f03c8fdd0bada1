"""Regions of Greenland: from a drawn polygon or a box to a window on a grid.

A :class:`Region` is a polygon in EPSG:3413 metres. It is made from what a
user gives: a GeoJSON geometry drawn on a web map (longitude, latitude), a
longitude/latitude box, or EPSG:3413 bounds. :func:`window_on_grid` lays it
on a grid and checks that the grid can serve it, with messages that say
what is wrong and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import shapely
import xarray as xr
from pyproj import Transformer
from shapely.geometry import Polygon, box, shape

from engine.data.errors import RegionError
from engine.data.grids import CRS, grid_spacing

__all__ = [
    "Region",
    "GridWindow",
    "GREENLAND_OUTLINE_LONLAT",
    "PRESET_REGIONS",
    "MIN_CELLS_PER_SIDE",
    "MAX_CELLS",
    "region_from_geojson",
    "region_from_lonlat_box",
    "region_from_bounds",
    "window_on_grid",
    "grid_region",
    "geometry_to_lonlat",
]

#: A coarse outline of Greenland (longitude, latitude), hand-drawn along the
#: coast to within a few tens of km; :func:`window_on_grid` buffers it by
#: ``_OUTLINE_BUFFER_M`` so that coastal regions are never refused.
GREENLAND_OUTLINE_LONLAT: tuple[tuple[float, float], ...] = (
    (-43.9, 59.8), (-42.5, 61.0), (-41.0, 63.0), (-39.0, 65.0), (-35.0, 66.0),
    (-31.0, 68.0), (-24.0, 68.5), (-22.0, 70.0), (-21.0, 72.0), (-19.0, 75.0),
    (-18.0, 77.0), (-17.5, 79.5), (-11.5, 81.5), (-17.0, 82.5), (-26.0, 83.6),
    (-38.0, 83.7), (-50.0, 82.5), (-62.0, 81.5), (-68.0, 80.0), (-73.3, 78.3),
    (-71.5, 77.5), (-66.0, 76.2), (-60.0, 75.8), (-57.0, 73.5), (-55.5, 71.0),
    (-54.5, 69.0), (-53.8, 67.0), (-52.5, 65.5), (-50.5, 63.5), (-48.0, 61.0),
)  # fmt: skip

# How far beyond the coarse outline a region may reach and still count.
_OUTLINE_BUFFER_M = 60_000.0

#: The fewest cells a window may have along each side: one 16 x 16 training
#: patch of the bed-topography network.
MIN_CELLS_PER_SIDE = 16

#: The most cells an interactive window may hold. Every feature channel of
#: the window (about 25, float32) and the finer output grid are held in
#: memory and a quick run should end in minutes on two CPU cores; at 150 m
#: this is 22,500 km^2, about a 150 km square.
MAX_CELLS = 1_000_000

_TO_POLAR = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
_TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def _reproject(transform, geometry):
    """Apply a pyproj transform (x and y as separate arrays) to a geometry."""
    return shapely.transform(geometry, lambda x, y: transform(x, y), interleaved=False)


def geometry_to_lonlat(geometry: shapely.Geometry) -> shapely.Geometry:
    """Reproject a geometry from EPSG:3413 metres to longitude/latitude."""
    return _reproject(_TO_LONLAT.transform, geometry)



def _greenland_polygon() -> Polygon:
    """The buffered Greenland outline in EPSG:3413."""
    outline = shapely.segmentize(Polygon(GREENLAND_OUTLINE_LONLAT), 0.5)
    return _reproject(_TO_POLAR.transform, outline).buffer(_OUTLINE_BUFFER_M)


@dataclass(frozen=True)
class Region:
    """A region of Greenland as a polygon in EPSG:3413.

    Attributes
    ----------
    polygon : shapely.Polygon
        The outline, EPSG:3413 metres.
    name : str
        A label for pages and file names.
    """

    polygon: Polygon
    name: str = "region"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` in EPSG:3413 metres."""
        return tuple(float(b) for b in self.polygon.bounds)  # type: ignore[return-value]

    @property
    def area_km2(self) -> float:
        """Area in km^2 (EPSG:3413 is conformal, not equal-area: within a few %
        over Greenland, where its scale factor is 0.97 to 1.03)."""
        return float(self.polygon.area) / 1e6

    def to_lonlat(self) -> Polygon:
        """The outline in longitude and latitude (EPSG:4326)."""
        return _reproject(_TO_LONLAT.transform, self.polygon)

    def to_geojson(self) -> dict[str, Any]:
        """The outline as a GeoJSON geometry in longitude and latitude."""
        return shapely.geometry.mapping(self.to_lonlat())


def _checked_shape(polygon: Polygon, name: str) -> None:
    """Raise RegionError for a polygon of zero area or with crossing edges."""
    # (Corners on one line leave a hull of zero area, up to rounding.)
    if polygon.is_empty or polygon.convex_hull.area <= 1e-9 * polygon.length**2:
        raise RegionError(
            f"{name} has zero area (all its corners on one line or one point): "
            "draw a rectangle or a polygon that encloses an area"
        )
    if not polygon.is_valid or polygon.area <= 0:
        reason = shapely.is_valid_reason(polygon)
        raise RegionError(
            f"{name} is not a valid polygon ({reason}): its edges cross; draw it "
            "again without crossing edges"
        )


def _checked(polygon: Polygon, name: str) -> Region:
    """Check a polygon in EPSG:3413 and wrap it as a Region."""
    # A polygon must enclose an area and not cross itself.
    _checked_shape(polygon, name)

    # It must touch Greenland.
    if not polygon.intersects(_greenland_polygon()):
        lon, lat = _TO_LONLAT.transform(polygon.centroid.x, polygon.centroid.y)
        raise RegionError(
            f"{name} lies outside Greenland (its centre is at {lat:.2f} N, "
            f"{lon:.2f} E): draw it on Greenland, 60-84 N, 11-74 W"
        )
    return Region(polygon=polygon, name=name)


def region_from_geojson(
    geometry: Mapping[str, Any], *, name: str = "drawn region"
) -> Region:
    """Make a region from a GeoJSON polygon in longitude and latitude.

    Parameters
    ----------
    geometry : mapping
        A GeoJSON ``Polygon`` geometry, or a ``Feature`` holding one (as a
        web map's draw tool returns it), coordinates in degrees (EPSG:4326,
        longitude first).
    name : str
        A label for the region.

    Returns
    -------
    Region
        The polygon reprojected to EPSG:3413.

    Raises
    ------
    RegionError
        Not a polygon, coordinates out of range or swapped, zero area,
        crossing edges, outside Greenland.
    """
    # Unwrap a Feature and check the type.
    if not isinstance(geometry, Mapping):
        raise RegionError(
            f"{name} is a {type(geometry).__name__}, not a GeoJSON geometry: pass "
            "a mapping such as {'type': 'Polygon', 'coordinates': [...]}"
        )
    if geometry.get("type") == "Feature":
        geometry = geometry.get("geometry") or {}
        if not isinstance(geometry, Mapping):
            geometry = {"type": type(geometry).__name__}
    if geometry.get("type") != "Polygon":
        raise RegionError(
            f"{name} is a {geometry.get('type')!r}, not a polygon: draw a rectangle "
            "or a polygon"
        )
    try:
        # Positions may carry an altitude (RFC 7946); only lon and lat count.
        polygon = shapely.force_2d(shape(geometry))
    except (
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        OverflowError,
        shapely.errors.GEOSException,
    ) as exc:
        # (GEOS refuses rings it cannot close, such as those with NaN corners.)
        raise RegionError(
            f"{name} is not a readable GeoJSON polygon ({exc}): draw it again"
        ) from exc
    if polygon.is_empty:
        raise RegionError(f"{name} has no corners: draw it again")

    # Every corner a finite number (NaN or infinity from a broken drawing).
    corners = shapely.get_coordinates(polygon)
    if not np.isfinite(corners).all():
        raise RegionError(
            f"{name} has corners that are not finite numbers (NaN or infinity): "
            "draw it again, or give every corner a longitude and a latitude"
        )

    # Degrees in range, longitude first.
    lon, lat = np.asarray(polygon.exterior.coords).T
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise RegionError(
            f"{name}: coordinates beyond +-90 latitude or +-180 longitude; GeoJSON "
            "gives longitude first, then latitude, in degrees"
        )
    # Greenland is 59-84 N and 11-74 W: latitudes there in the first place
    # and negative longitudes in the second mean the pair is swapped.
    if np.all((lon >= 59) & (lon <= 84)) and np.all((lat >= -75) & (lat <= -10)):
        raise RegionError(
            f"{name}: latitude and longitude look swapped (latitudes {lat.min():.1f}"
            f"..{lat.max():.1f}); GeoJSON gives longitude first, then latitude"
        )

    # Check the shape as drawn, before densifying can hide a crossing.
    _checked_shape(polygon, name)

    # Reproject (edges densified so that they follow the lon/lat lines).
    polar = _reproject(_TO_POLAR.transform, shapely.segmentize(polygon, 0.05))
    return _checked(polar, name)


def region_from_lonlat_box(
    lon_min: float,
    lat_min: float,
    lon_max: float,
    lat_max: float,
    *,
    name: str = "box",
) -> Region:
    """Make a region from a longitude/latitude box (degrees, EPSG:4326)."""
    # Four finite numbers, then a box that encloses an area.
    try:
        corners = np.array([lon_min, lat_min, lon_max, lat_max], dtype="float64")
    except (TypeError, ValueError) as exc:
        raise RegionError(
            f"{name}: the box ({lon_min!r}, {lat_min!r}, {lon_max!r}, {lat_max!r}) "
            "is not four numbers; give lon_min, lat_min, lon_max, lat_max in degrees"
        ) from exc
    if not np.isfinite(corners).all():
        raise RegionError(
            f"{name}: the box ({lon_min}, {lat_min}, {lon_max}, {lat_max}) holds NaN "
            "or infinity; give four finite numbers in degrees"
        )
    if lon_min >= lon_max or lat_min >= lat_max:
        raise RegionError(
            f"{name}: the box ({lon_min}, {lat_min}, {lon_max}, {lat_max}) is empty; "
            "give lon_min < lon_max and lat_min < lat_max"
        )
    return region_from_geojson(
        shapely.geometry.mapping(box(lon_min, lat_min, lon_max, lat_max)), name=name
    )


def region_from_bounds(
    x_min: float, y_min: float, x_max: float, y_max: float, *, name: str = "box"
) -> Region:
    """Make a region from EPSG:3413 bounds in metres."""
    if x_min >= x_max or y_min >= y_max:
        raise RegionError(
            f"{name}: the bounds ({x_min}, {y_min}, {x_max}, {y_max}) enclose no "
            "area; give x_min < x_max and y_min < y_max in EPSG:3413 metres"
        )
    return _checked(box(x_min, y_min, x_max, y_max), name)


def grid_region(grid: xr.Dataset, *, name: str | None = None) -> Region:
    """The region covered by a grid's cells (EPSG:3413)."""
    half = grid_spacing(grid) / 2
    x = grid["x"].to_numpy()
    y = grid["y"].to_numpy()
    return region_from_bounds(
        x.min() - half,
        y.min() - half,
        x.max() + half,
        y.max() + half,
        name=name or str(grid.attrs.get("origin", "grid")),
    )


#: Preset regions by name: ``(lon_min, lat_min, lon_max, lat_max)``.
#: Upernavik Isstrom is the DeepTopoNet paper's test region; no data for it
#: ships with the project (BedMachine and radar need an Earthdata login).
PRESET_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "Upernavik Isstrom": (-56.5, 72.5, -53.0, 73.3),
}


@dataclass(frozen=True)
class GridWindow:
    """A region laid on a grid.

    Attributes
    ----------
    region : Region
        The region (EPSG:3413).
    rows, cols : slice
        Index slices of the bounding window on the grid's ``y`` and ``x``.
    mask : numpy.ndarray of bool, shape (n_rows, n_cols)
        True for the window's cells whose centre lies in the polygon.
    spacing : float
        Cell size in metres.
    """

    region: Region
    rows: slice
    cols: slice
    mask: np.ndarray = field(repr=False)
    spacing: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of the bounding window."""
        return self.mask.shape  # type: ignore[return-value]

    @property
    def n_cells(self) -> int:
        """Cells whose centre lies in the polygon."""
        return int(self.mask.sum())

    @property
    def area_km2(self) -> float:
        """Area of the cells in the polygon, km^2."""
        return self.n_cells * self.spacing**2 / 1e6

    def select(self, grid: xr.Dataset) -> xr.Dataset:
        """Cut the window out of a grid (or a grid of the same cells)."""
        return grid.isel(y=self.rows, x=self.cols)

    def count_picks(self, picks: pd.DataFrame) -> tuple[int, int]:
        """Radar picks and flight lines inside the polygon."""
        inside = shapely.contains_xy(
            self.region.polygon, picks["x"].to_numpy(), picks["y"].to_numpy()
        )
        return int(inside.sum()), int(picks.loc[inside, "line_id"].nunique())


def window_on_grid(
    region: Region,
    grid: xr.Dataset,
    *,
    min_cells_per_side: int = MIN_CELLS_PER_SIDE,
    max_cells: int = MAX_CELLS,
) -> GridWindow:
    """Lay a region on a grid and check that the grid can serve it.

    Parameters
    ----------
    region : Region
        The region (EPSG:3413).
    grid : xarray.Dataset
        A grid on dims ``("y", "x")``, y decreasing, EPSG:3413.
    min_cells_per_side : int
        Fewest cells along each side of the window.
    max_cells : int
        Most cells in the window (see :data:`MAX_CELLS` for why).

    Returns
    -------
    GridWindow
        The window of the grid's cells that the region covers, clipped to
        the grid.

    Raises
    ------
    RegionError
        The region misses the grid (the message gives the grid's extent in
        both CRSs), covers too few cells or too many.
    """
    x = grid["x"].to_numpy()
    y = grid["y"].to_numpy()
    spacing = grid_spacing(grid)
    coverage = grid_region(grid, name="the data")

    # The region must overlap the data's coverage.
    part = region.polygon.intersection(coverage.polygon)
    if part.is_empty or part.area <= 0:
        lon_lat = coverage.to_lonlat().bounds
        raise RegionError(
            f"{region.name} lies outside the data's coverage. The grid "
            f"'{grid.attrs.get('origin', 'grid')}' covers x {coverage.bounds[0]:.0f}"
            f"..{coverage.bounds[2]:.0f} m, y {coverage.bounds[1]:.0f}.."
            f"{coverage.bounds[3]:.0f} m (EPSG:3413), about {lon_lat[1]:.2f}-"
            f"{lon_lat[3]:.2f} N, {-lon_lat[2]:.2f}-{-lon_lat[0]:.2f} W: draw "
            "inside it, or fetch BedMachine for your region"
        )

    # Index window of the cells whose centres fall in the overlap's box.
    x_min, y_min, x_max, y_max = part.bounds
    cols = np.flatnonzero((x >= x_min) & (x <= x_max))
    rows = np.flatnonzero((y >= y_min) & (y <= y_max))
    if cols.size == 0 or rows.size == 0:
        cols = np.array([np.argmin(abs(x - part.centroid.x))])
        rows = np.array([np.argmin(abs(y - part.centroid.y))])
    row_slice = slice(int(rows[0]), int(rows[-1]) + 1)
    col_slice = slice(int(cols[0]), int(cols[-1]) + 1)
    xx, yy = np.meshgrid(x[col_slice], y[row_slice])
    mask = shapely.contains_xy(part, xx, yy)

    # Too small: less than one training patch along a side.
    n_rows, n_cols = mask.shape
    if n_rows < min_cells_per_side or n_cols < min_cells_per_side:
        side_km = min_cells_per_side * spacing / 1000
        raise RegionError(
            f"{region.name} covers only {n_rows} x {n_cols} cells of {spacing:.0f} m "
            f"on the data; draw at least {min_cells_per_side} x "
            f"{min_cells_per_side} cells ({side_km:.1f} km x {side_km:.1f} km)"
        )

    # Too large for an interactive run.
    if n_rows * n_cols > max_cells:
        limit_km2 = max_cells * spacing**2 / 1e6
        raise RegionError(
            f"{region.name} covers {n_rows} x {n_cols} = {n_rows * n_cols:,} cells, "
            f"more than the {max_cells:,} cells ({limit_km2:,.0f} km^2 at "
            f"{spacing:.0f} m) an interactive run holds in memory and trains on in "
            "minutes; draw a smaller region or split it into several"
        )
    return GridWindow(
        region=Region(polygon=part, name=region.name),
        rows=row_slice,
        cols=col_slice,
        mask=mask,
        spacing=spacing,
    )
