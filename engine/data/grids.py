"""Readers of gridded bed-topography inputs.

Two sources end in the same model of the data (see ``CONVENTIONS.md``):

- the HDF5 schema used by the DeepTopoNet authors (``surf_elv``,
  ``surf_vx``, ... with arrays indexed ``[x, y]``), read by
  :func:`read_topo_hdf5`;
- BedMachine Greenland NetCDF of any version, cropped lazily to a window,
  read by :func:`read_bedmachine`.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from engine.data.errors import FileFormatError, SchemaError

__all__ = [
    "CRS",
    "VARIABLE_ATTRS",
    "read_topo_hdf5",
    "read_bedmachine",
    "finish_grid",
    "grid_spacing",
]

log = logging.getLogger(__name__)

#: The one CRS of every Greenland grid: NSIDC polar stereographic north.
CRS = "EPSG:3413"

#: Units and long names of the grid variables (CF attributes).
VARIABLE_ATTRS: dict[str, dict[str, str]] = {
    "surface_elevation": {"units": "m", "long_name": "surface elevation"},
    "surface_velocity_x": {"units": "m a-1", "long_name": "surface velocity, easting"},
    "surface_velocity_y": {
        "units": "m a-1",
        "long_name": "surface velocity, northing",
    },
    "surface_mass_balance": {"units": "m a-1", "long_name": "surface mass balance"},
    "surface_elevation_change": {
        "units": "m a-1",
        "long_name": "rate of surface elevation change",
    },
    "mask": {
        "units": "1",
        "long_name": "mask (0 ocean, 1 ice-free land, 2 grounded ice, "
        "3 floating ice, 4 other ice masses)",
    },
    "bed_bedmachine": {"units": "m", "long_name": "BedMachine bed elevation"},
    "bed_bedmachine_error": {"units": "m", "long_name": "BedMachine bed error"},
    "ice_thickness": {"units": "m", "long_name": "ice thickness"},
    "bed_source": {"units": "1", "long_name": "BedMachine source of the bed value"},
    "geoid": {"units": "m", "long_name": "geoid height above WGS84"},
    "bed_true": {"units": "m", "long_name": "true bed elevation (synthetic)"},
}

# Names in the DeepTopoNet HDF5 schema and the names they take here.
_HDF5_NAMES = {
    "surf_elv": "surface_elevation",
    "surf_vx": "surface_velocity_x",
    "surf_vy": "surface_velocity_y",
    "surf_SMB": "surface_mass_balance",
    "surf_dhdt": "surface_elevation_change",
    "surf_mask": "mask",
    "bed_BedMachine": "bed_bedmachine",
    "bed_BedMachineerror": "bed_bedmachine_error",
}

# Names in BedMachine Greenland NetCDF files (v3 to v6) and here.
_BEDMACHINE_NAMES = {
    "mask": "mask",
    "surface": "surface_elevation",
    "thickness": "ice_thickness",
    "bed": "bed_bedmachine",
    "errbed": "bed_bedmachine_error",
    "source": "bed_source",
    "geoid": "geoid",
}

# Integer-coded variables keep their type; everything else becomes float32.
_INTEGER_CODES = {"mask", "bed_source"}


def grid_spacing(grid: xr.Dataset) -> float:
    """Return the cell size of a grid in metres.

    Parameters
    ----------
    grid : xarray.Dataset
        A grid with 1-D ``x`` and ``y`` coordinates (EPSG:3413, m).

    Returns
    -------
    float
        The absolute step of ``x`` in metres.
    """
    return float(abs(grid["x"].values[1] - grid["x"].values[0]))


def finish_grid(grid: xr.Dataset, *, origin: str) -> xr.Dataset:
    """Bring a grid to the conventions: order, y decreasing, CRS, attributes.

    Parameters
    ----------
    grid : xarray.Dataset
        Variables on dims ``("y", "x")`` (any order of the dims, any
        direction of the coordinates), coordinates in EPSG:3413 metres.
    origin : str
        What the grid came from (a file name), kept in ``attrs["origin"]``.

    Returns
    -------
    xarray.Dataset
        The same data with dims ``("y", "x")``, ``x`` increasing, ``y``
        decreasing, float variables as float32 with NaN nodata, CF
        ``units`` and ``long_name`` on every known variable and the CRS
        written by rioxarray.
    """
    # Order the dims and the coordinates as the conventions say.
    grid = grid.transpose("y", "x", ...)
    grid = grid.sortby("x").sortby("y", ascending=False)
    grid = grid.assign_coords(
        x=grid["x"].astype("float64"), y=grid["y"].astype("float64")
    )

    # Floats as float32; integer codes as they are.
    for name in list(grid.data_vars):
        if name not in _INTEGER_CODES and grid[name].dtype != np.float32:
            grid[name] = grid[name].astype("float32")

    # CF attributes on the variables and the coordinates.
    for name, attrs in VARIABLE_ATTRS.items():
        if name in grid:
            grid[name].attrs.update(attrs)
    grid["x"].attrs.update(
        units="m", standard_name="projection_x_coordinate", long_name="easting"
    )
    grid["y"].attrs.update(
        units="m", standard_name="projection_y_coordinate", long_name="northing"
    )

    # CRS and provenance.
    grid = grid.rio.write_crs(CRS)
    grid.attrs["grid_spacing"] = grid_spacing(grid)
    grid.attrs["origin"] = origin
    return grid


def _check_regular(values: np.ndarray, axis_name: str, path: Path) -> None:
    """Raise SchemaError unless a coordinate is regularly spaced."""
    steps = np.diff(values)
    if (
        steps.size == 0
        or np.any(steps == 0)
        or not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-3)
    ):
        raise SchemaError(
            f"{path.name}: the {axis_name} coordinate is not a regular grid; "
            "regrid the file to a regular EPSG:3413 grid first"
        )


def _hdf5_array(handle: h5py.File, name: str, path: Path) -> np.ndarray:
    """Read one numeric array of an HDF5 grid, with clear errors."""
    # A group or a text array in place of numbers is a schema problem.
    item = handle[name]
    if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "biuf":
        kind = "a group" if isinstance(item, h5py.Group) else f"of type {item.dtype}"
        raise SchemaError(
            f"{path.name}: {name} is {kind}, not an array of numbers; write it "
            "as a 2-D numeric array in the DeepTopoNet grid schema"
        )

    # Reading fails on a file cut short or corrupt inside its data.
    try:
        return np.asarray(item[()])
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise FileFormatError(
            f"{path.name}: reading {name} failed ({exc}); the file is probably "
            "truncated or corrupt: download it again"
        ) from exc


def _check_xy(ds: xr.Dataset, name: str) -> None:
    """Raise SchemaError unless x and y are 1-D numeric, regular coordinates."""
    for axis in ("x", "y"):
        # Numbers along one dimension of the same name, at least two of them.
        if axis not in ds.coords:
            raise SchemaError(
                f"{name}: no variable lies on the {axis} dimension; a grid needs "
                "its variables on (y, x) in EPSG:3413 metres"
            )
        values = ds[axis]
        if values.dims != (axis,) or values.dtype.kind not in "iuf":
            raise SchemaError(
                f"{name}: the {axis} coordinate is not a 1-D array of numbers "
                f"(dims {values.dims}, type {values.dtype}); a grid needs x and y "
                "in EPSG:3413 metres"
            )
        if values.size < 2:
            raise SchemaError(
                f"{name}: the {axis} coordinate holds {values.size} value(s); a grid "
                "needs at least 2 cells along x and y"
            )
        _check_regular(values.to_numpy(), axis, Path(name))

    # Every variable but scalars (a CRS such as spatial_ref) lies on (y, x).
    flat = [
        v for v in ds.data_vars if ds[v].ndim and not {"x", "y"} <= set(ds[v].dims)
    ]
    if flat:
        raise SchemaError(
            f"{name}: {flat} do not lie on the (y, x) grid; every variable needs "
            "both the x and y dimensions"
        )


def read_topo_hdf5(path: str | PathLike[str]) -> xr.Dataset:
    """Read a grid in the DeepTopoNet HDF5 schema.

    The schema holds 2-D arrays indexed ``[x, y]``: ``surf_x`` and
    ``surf_y`` (cell centres, EPSG:3413, m), ``surf_elv`` (m), ``surf_vx``
    and ``surf_vy`` (m a-1), ``surf_SMB`` (m a-1), ``surf_dhdt`` (m a-1),
    ``surf_mask`` (BedMachine codes), ``bed_BedMachine`` and
    ``bed_BedMachineerror`` (m). Any of the data arrays but the
    coordinates may be absent; they are then absent from the result.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file.

    Returns
    -------
    xarray.Dataset
        Dims ``("y", "x")``, y decreasing, CRS EPSG:3413, variables named
        as in ``CONVENTIONS.md`` (``surface_elevation``, ...).

    Raises
    ------
    FileFormatError
        The file is missing, truncated or not HDF5.
    SchemaError
        ``surf_x``/``surf_y`` are missing, shapes disagree or the grid is
        not regular.
    """
    path = Path(path)

    # Open the file, telling a missing file from a broken one.
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file; check the path or fetch it")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(
            f"{path.name} is not a readable HDF5 file ({exc}); it may be truncated "
            "or of another format: download it again"
        ) from exc

    try:
        with handle:
            # The coordinates are needed; the fields are taken as found.
            missing = [name for name in ("surf_x", "surf_y") if name not in handle]
            if missing:
                raise SchemaError(
                    f"{path.name} lacks {', '.join(missing)}: it is not in the "
                    "DeepTopoNet grid schema (surf_x, surf_y, surf_elv, ...); check "
                    "that it is a grid file, or download it again if it is damaged"
                )
            x2d = _hdf5_array(handle, "surf_x", path).astype("float64")
            y2d = _hdf5_array(handle, "surf_y", path).astype("float64")
            arrays = {
                new: _hdf5_array(handle, old, path)
                for old, new in _HDF5_NAMES.items()
                if old in handle
            }
    except (OSError, RuntimeError, KeyError) as exc:
        # A damaged object header fails even a look-up of a name.
        raise FileFormatError(
            f"{path.name}: reading its structure failed ({exc}); the file is "
            "probably truncated or corrupt: download it again"
        ) from exc

    # Arrays are [x, y]: x varies along axis 0, y along axis 1. A file
    # written [y, x] instead is told by where surf_x varies, and read as such.
    if x2d.ndim != 2 or x2d.shape != y2d.shape:
        raise SchemaError(
            f"{path.name}: surf_x and surf_y must be 2-D arrays of one shape, "
            f"got {x2d.shape} and {y2d.shape}"
        )
    stored_y_x = np.ptp(x2d[0, :]) > 0 and np.ptp(x2d[:, 0]) == 0
    if stored_y_x:
        log.info("%s stores its arrays [y, x]; reading them as such", path.name)
        x2d, y2d = x2d.T, y2d.T
        arrays = {name: values.T for name, values in arrays.items()}
    x = x2d[:, 0]
    y = y2d[0, :]
    _check_regular(x, "x", path)
    _check_regular(y, "y", path)
    for name, values in arrays.items():
        if values.shape != x2d.shape:
            raise SchemaError(
                f"{path.name}: {name} has shape {values.shape}, expected "
                f"{x2d.shape} like surf_x"
            )

    # Build the dataset on (y, x) by transposing every [x, y] array.
    data_vars = {
        name: (("y", "x"), values.T.astype("int8" if name == "mask" else "float32"))
        for name, values in arrays.items()
    }
    grid = xr.Dataset(data_vars, coords={"x": x, "y": y})
    return finish_grid(grid, origin=path.name)


def read_bedmachine(
    source: str | PathLike[str] | Any,
    *,
    bounds: tuple[float, float, float, float] | None = None,
    variables: list[str] | None = None,
    engine: str | None = None,
) -> xr.Dataset:
    """Read BedMachine Greenland (any version), cropped lazily to a window.

    Only the cells inside ``bounds`` are read from disk: the file is opened
    lazily and sliced before anything is loaded, so a 2 GB whole-Greenland
    file costs only the window.

    Parameters
    ----------
    source : path-like or file-like
        A BedMachine Greenland NetCDF file (v3 to v6: ``mask``,
        ``surface``, ``thickness``, ``bed``, ``errbed``, ``source``,
        ``geoid``), or an open file object (for example from
        ``earthaccess.open``).
    bounds : tuple of float, optional
        ``(x_min, y_min, x_max, y_max)`` in EPSG:3413 metres; cells whose
        centres fall inside are kept. The whole file when omitted.
    variables : list of str, optional
        BedMachine names to read; all of the seven that exist by default.
    engine : str, optional
        xarray backend; chosen by xarray when omitted.

    Returns
    -------
    xarray.Dataset
        Dims ``("y", "x")``, y decreasing, CRS EPSG:3413, variables renamed
        as in ``CONVENTIONS.md`` (``bed_bedmachine``, ``ice_thickness``,
        ...), nodata (``-9999`` where a file uses it) as NaN.

    Raises
    ------
    FileFormatError
        The file is missing, truncated or not NetCDF.
    SchemaError
        The file has no ``x``/``y`` or none of the BedMachine variables.
    RegionError
        ``bounds`` holds no cell of the file; the message gives the file's
        extent.
    """
    from engine.data.errors import RegionError

    name = Path(source).name if isinstance(source, (str, PathLike)) else "BedMachine"

    # Open lazily; nothing but metadata is read here.
    if isinstance(source, (str, PathLike)) and not Path(source).is_file():
        raise FileFormatError(f"{source}: no such file; check the path or fetch it")
    try:
        ds = xr.open_dataset(source, engine=engine, mask_and_scale=True)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        # (Backends fail on foreign bytes with any of these.)
        raise FileFormatError(
            f"{name} is not a readable NetCDF file ({exc}); it may be truncated or "
            "of another format: download it again"
        ) from exc

    # Check the schema and choose the variables.
    if "x" not in ds.coords or "y" not in ds.coords:
        ds.close()
        raise SchemaError(f"{name} has no x/y coordinates: not a BedMachine file")
    wanted = variables or list(_BEDMACHINE_NAMES)
    unknown = [v for v in wanted if v not in _BEDMACHINE_NAMES]
    if unknown:
        ds.close()
        raise SchemaError(
            f"unknown BedMachine variables {unknown}; choose from "
            f"{sorted(_BEDMACHINE_NAMES)}"
        )
    present = [v for v in wanted if v in ds.data_vars]
    if not present:
        ds.close()
        raise SchemaError(
            f"{name} holds none of the BedMachine variables {wanted}; found "
            f"{sorted(ds.data_vars)}"
        )

    # x and y must be regular numeric axes and the variables numbers on them.
    ds = ds[present]
    try:
        _check_xy(ds, name)
        text = [v for v in present if ds[v].dtype.kind not in "biuf"]
        if text:
            raise SchemaError(
                f"{name}: {text} hold {ds[text[0]].dtype} values, not numbers; "
                "this is not a BedMachine file"
            )
    except SchemaError:
        ds.close()
        raise

    # Slice to the window before reading (y may run either way in a file).
    if bounds is not None:
        x_min, y_min, x_max, y_max = bounds
        ds = ds.sel(x=slice(x_min, x_max) if ds.x[0] < ds.x[-1] else slice(x_max, x_min))
        ds = ds.sel(y=slice(y_max, y_min) if ds.y[0] > ds.y[-1] else slice(y_min, y_max))
        if ds.sizes["x"] == 0 or ds.sizes["y"] == 0:
            full = xr.open_dataset(source, engine=engine)
            extent = (
                float(full.x.min()),
                float(full.y.min()),
                float(full.x.max()),
                float(full.y.max()),
            )
            full.close()
            raise RegionError(
                f"the window {tuple(round(b) for b in bounds)} holds no cell of "
                f"{name}, whose extent is x {extent[0]:.0f}..{extent[2]:.0f} m, "
                f"y {extent[1]:.0f}..{extent[3]:.0f} m (EPSG:3413): choose a "
                "region inside it"
            )

    # Read the window, mark the -9999 fill of old versions as NaN.
    try:
        ds = ds.load()
    except (OSError, RuntimeError, ValueError) as exc:
        raise FileFormatError(
            f"{name}: reading its arrays failed ({exc}); the file is probably "
            "truncated: download it again"
        ) from exc
    finally:
        ds.close()
    for var in present:
        if var not in ("mask", "source") and np.issubdtype(ds[var].dtype, np.floating):
            ds[var] = ds[var].where(ds[var] != -9999.0)
    ds = ds.rename({v: _BEDMACHINE_NAMES[v] for v in present})
    ds = ds.drop_vars([c for c in ds.coords if c not in ("x", "y")])
    for var in ds.data_vars:
        # The file's own grid mapping is replaced by the one CRS written below.
        ds[var].encoding.pop("grid_mapping", None)
        ds[var].attrs.pop("grid_mapping", None)
    for var in ("mask", "bed_source"):
        if var in ds:
            ds[var] = ds[var].fillna(-1).astype("int8")
    version = str(ds.attrs.get("version", "unknown version"))
    ds.attrs = {"bedmachine_version": version}
    return finish_grid(ds, origin=name)
