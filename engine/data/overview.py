"""Where data is available: footprints of the demo data sets for a map.

The home page shows, on a map of Greenland, the outline of each grid and
the radar flight lines of each data set that is at hand (in the data
directory or the cache). This module builds those footprints in
longitude and latitude, ready for a web map, from the real files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import LineString, mapping

from engine.data.errors import DataError
from engine.data.grids import read_bedmachine, read_topo_hdf5
from engine.data.radar import read_radar
from engine.data.regions import geometry_to_lonlat, grid_region

__all__ = ["Footprint", "flight_line_geometries", "demo_footprints"]

log = logging.getLogger(__name__)

# The demo files shown on the home map: (data set, file, kind, label).
_DEMO_FILES = (
    ("helheim", "subdomain_data.h5", "grid", "Helheim demo grid (150 m)"),
    ("helheim", "subdomain_bed.nc", "bedmachine", "Helheim BedMachine v6.5 subset"),
    ("helheim", "flightTracks.mat", "radar", "Helheim radar flight lines"),
    ("narsap", "ProcessedTracks.mat", "radar", "Narsap Sermia radar flight lines"),
    (
        "nioghalvfjerds_79n",
        "Nioghalvfjerds_bed_data.csv",
        "points",
        "79N Glacier bed points",
    ),
)


@dataclass
class Footprint:
    """What one data file covers, for a web map.

    Attributes
    ----------
    dataset : str
        Registry key of the data set.
    filename : str
        The file.
    kind : str
        ``"grid"``, ``"bedmachine"``, ``"radar"`` or ``"points"``.
    label : str
        Legend text.
    geojson : dict
        A GeoJSON geometry in longitude and latitude (EPSG:4326): a polygon
        for grids and point sets, a multi-line for radar.
    path : pathlib.Path
        Where the file was found.
    details : dict
        Counts for a caption (cells, picks, lines).
    """

    dataset: str
    filename: str
    kind: str
    label: str
    geojson: dict[str, Any]
    path: Path
    details: dict[str, Any] = field(default_factory=dict)


def flight_line_geometries(
    picks: pd.DataFrame, *, tolerance: float = 100.0
) -> shapely.MultiLineString:
    """Flight lines of radar picks as a multi-line in longitude and latitude.

    Parameters
    ----------
    picks : pandas.DataFrame
        Radar picks with ``line_id`` (EPSG:3413, m).
    tolerance : float
        Simplification tolerance in metres (keeps the map light).

    Returns
    -------
    shapely.MultiLineString
        One line per flight line with two or more picks, EPSG:4326.
    """
    lines = []
    for _, line in picks.groupby("line_id", sort=False):
        if len(line) < 2:
            continue
        polar = LineString(np.column_stack([line["x"], line["y"]]))
        lines.append(polar.simplify(tolerance))
    multi = shapely.MultiLineString(lines)
    return geometry_to_lonlat(multi)


def _footprint(kind: str, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """GeoJSON geometry and counts of one file."""
    if kind == "grid":
        grid = read_topo_hdf5(path)
        outline = grid_region(grid).to_lonlat()
        return mapping(outline), {"cells": grid.sizes["y"] * grid.sizes["x"]}
    if kind == "bedmachine":
        grid = read_bedmachine(path, variables=["mask"])
        outline = grid_region(grid).to_lonlat()
        return mapping(outline), {"cells": grid.sizes["y"] * grid.sizes["x"]}
    picks = read_radar(path)
    if kind == "radar":
        lines = flight_line_geometries(picks)
        return mapping(lines), {"picks": len(picks), "lines": len(lines.geoms)}
    hull = shapely.MultiPoint(picks[["x", "y"]].to_numpy()).convex_hull
    outline = geometry_to_lonlat(hull)
    return mapping(outline), {"picks": len(picks)}


def demo_footprints() -> tuple[list[Footprint], list[str]]:
    """Footprints of the demo files that are at hand.

    Files are looked up through :func:`engine.data.registry.locate` (the
    data directory, then the cache); nothing is downloaded.

    Returns
    -------
    footprints : list of Footprint
        One per file found and read.
    problems : list of str
        One message per file that is missing or unreadable, saying how to
        fetch it.
    """
    from engine.data.registry import locate

    footprints: list[Footprint] = []
    problems: list[str] = []
    for dataset, filename, kind, label in _DEMO_FILES:
        try:
            path = locate(dataset, filename)
            geojson, details = _footprint(kind, path)
        except DataError as exc:
            problems.append(str(exc))
            continue
        footprints.append(
            Footprint(dataset, filename, kind, label, geojson, path, details)
        )
    return footprints, problems
