"""What a data file holds, told from its content: for ``engine data info``."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from pyproj import Transformer

from engine.data.errors import FileFormatError
from engine.data.grids import (
    CRS,
    VARIABLE_ATTRS,
    _check_xy,
    finish_grid,
    read_bedmachine,
    read_topo_hdf5,
)
from engine.data.radar import read_radar

__all__ = ["describe_file", "describe_grid", "describe_picks"]

_TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def _range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values, or None."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def describe_grid(grid: xr.Dataset, *, kind: str) -> dict[str, Any]:
    """Summary of a grid: shape, spacing, extent, each variable's range.

    Parameters
    ----------
    grid : xarray.Dataset
        A grid of the conventions (dims ``("y", "x")``, EPSG:3413).
    kind : str
        Words for the kind of file.

    Returns
    -------
    dict
        ``kind``, ``shape``, ``spacing_m``, ``extent_m`` (x_min, y_min,
        x_max, y_max), ``extent_lonlat`` and ``variables`` (name to units,
        range and share of NaN).
    """
    x = grid["x"].to_numpy()
    y = grid["y"].to_numpy()
    lon, lat = _TO_LONLAT.transform(
        [x.min(), x.max(), x.min(), x.max()], [y.min(), y.min(), y.max(), y.max()]
    )
    variables = {}
    for name, var in grid.data_vars.items():
        values = var.to_numpy().astype("float64")
        variables[name] = {
            "units": var.attrs.get("units", ""),
            "range": _range(values),
            "nan_share": float(np.isnan(values).mean()),
        }
    return {
        "kind": kind,
        "crs": str(grid.rio.crs),
        "shape": {"y": grid.sizes["y"], "x": grid.sizes["x"]},
        "spacing_m": float(grid.attrs.get("grid_spacing", abs(x[1] - x[0]))),
        "extent_m": (float(x.min()), float(y.min()), float(x.max()), float(y.max())),
        "extent_lonlat": (min(lon), min(lat), max(lon), max(lat)),
        "variables": variables,
    }


def describe_picks(picks: Any) -> dict[str, Any]:
    """Summary of a radar-picks table: counts, extent, value ranges."""
    lon, lat = _TO_LONLAT.transform(picks["x"].to_numpy(), picks["y"].to_numpy())
    return {
        "kind": "radar picks",
        "crs": picks.attrs.get("crs", CRS),
        "picks": len(picks),
        "flight_lines": int(picks["line_id"].nunique()),
        "typical_step_m": picks.attrs.get("typical_step_m"),
        "extent_m": (
            float(picks["x"].min()),
            float(picks["y"].min()),
            float(picks["x"].max()),
            float(picks["y"].max()),
        ),
        "extent_lonlat": (
            float(np.min(lon)),
            float(np.min(lat)),
            float(np.max(lon)),
            float(np.max(lat)),
        ),
        "ice_thickness_m": _range(picks["ice_thickness"].to_numpy()),
        "bed_elevation_m": _range(picks["bed_elevation"].to_numpy()),
    }


def describe_file(path: str | PathLike[str]) -> dict[str, Any]:
    """Tell what a file holds: a grid, BedMachine, radar picks or a climate cube.

    Parameters
    ----------
    path : path-like
        An ``.h5`` grid, a BedMachine or climate ``.nc``, a radar ``.csv``,
        ``.txt`` or ``.mat`` file.

    Returns
    -------
    dict
        A summary whose ``kind`` names what was found.

    Raises
    ------
    FileFormatError
        The file is missing or of no kind this project reads.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file; check the path")
    suffix = path.suffix.lower()

    # HDF5 grids in the DeepTopoNet schema.
    if suffix in (".h5", ".hdf5"):
        return describe_grid(read_topo_hdf5(path), kind="bed-topography grid (HDF5)")

    # NetCDF: BedMachine when it has x/y and a bed, else a climate cube.
    if suffix in (".nc", ".nc4", ".netcdf"):
        try:
            with xr.open_dataset(path) as ds:
                has_xy = {"x", "y"} <= set(ds.coords)
                is_bedmachine = has_xy and "bed" in ds
                is_grid = has_xy and bool(set(VARIABLE_ATTRS) & set(ds.data_vars))
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            # (Backends fail on foreign bytes with any of these.)
            raise FileFormatError(
                f"{path.name} is not a readable NetCDF file ({exc}); it may be "
                "truncated: download it again"
            ) from exc
        if is_bedmachine:
            return describe_grid(read_bedmachine(path), kind="BedMachine Greenland")
        if is_grid:
            # A grid written by this project (a twin, a prediction): its axes
            # are checked, and a failed read names the file.
            try:
                raw = xr.load_dataset(path)
            except (OSError, RuntimeError, ValueError) as exc:
                raise FileFormatError(
                    f"{path.name}: reading its arrays failed ({exc}); the file is "
                    "probably truncated: write or download it again"
                ) from exc
            _check_xy(raw, path.name)
            grid = finish_grid(raw, origin=path.name)
            return describe_grid(grid, kind="grid (NetCDF)")
        from engine.data.climate import describe_cube, open_climate_cube

        with open_climate_cube([path]) as cube:
            summary = describe_cube(cube).to_dict()
        return {"kind": "climate cube", **summary}

    # Radar picks in any of their formats.
    if suffix in (".csv", ".txt", ".mat"):
        if suffix == ".mat" and h5py.is_hdf5(path):
            # A v7.3 file that holds a grid; a broken one is left to read_radar,
            # which names the problem.
            try:
                with h5py.File(path, "r") as handle:
                    is_grid = "surf_x" in handle
            except (OSError, RuntimeError, KeyError, ValueError):
                is_grid = False
            if is_grid:
                return describe_grid(read_topo_hdf5(path), kind="grid")
        return describe_picks(read_radar(path))
    raise FileFormatError(
        f"{path.name}: unknown kind of file '{suffix}'; this project reads .h5 "
        "grids, .nc BedMachine or climate files, and .csv/.txt/.mat radar picks"
    )
