"""Gridded climate fields from NetCDF files, as one cube.

A climate cube (see ``CONVENTIONS.md``, "Climate cubes") is an
``xarray.Dataset`` with dims ``("time", "lat", "lon")``: ``lat`` increasing
in degrees north, ``lon`` increasing in -180..180 degrees east, ``time`` as
``datetime64[ns]``, one data variable per field, named as in its file and
keeping its CF ``units``, ``standard_name`` and ``long_name``. Sea or
missing cells are ``NaN``.

:func:`open_climate_cube` reads one or many NetCDF files (one variable per
file, or several), recognises their coordinates by CF conventions, puts
them in that shape and merges them, lazily: values are read from disk only
when computed. :func:`to_cube` does the same to a Dataset already open,
and :func:`describe_cube` summarises a cube for a page.

Example
-------
>>> with open_climate_cube("wfde5_uk_201701/", resample="1D") as cube:
...     summary = describe_cube(cube)
"""

from __future__ import annotations

import glob
import math
import os
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeAlias

import numpy as np
import pandas as pd
import xarray as xr

from engine.data.errors import DataError, FileFormatError, SchemaError

__all__ = [
    "CubeSummary",
    "FieldSummary",
    "describe_cube",
    "open_climate_cube",
    "to_cube",
]

#: What ``open_climate_cube`` accepts as ``paths``.
PathSpec: TypeAlias = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]

#: Dims of a cube, in order.
CUBE_DIMS = ("time", "lat", "lon")

#: Suffixes of the files picked up from a folder.
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")

#: Tolerance (degrees) under which two grids count as the same; about 10 m.
GRID_ATOL = 1e-4

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CLASSIC_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")

# Bytes per value of each classic NetCDF type code (NC_BYTE .. NC_UINT64).
_CLASSIC_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 4,
    6: 8,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 8,
}

# Names that mark a coordinate, compared in lower case.
_AXIS_NAMES = {
    "time": ("time", "valid_time", "t"),
    "lat": ("lat", "latitude", "nav_lat", "y"),
    "lon": ("lon", "longitude", "nav_lon", "x"),
}
_AXIS_LETTERS = {"time": "T", "lat": "Y", "lon": "X"}
_AXIS_STANDARD_NAMES = {"time": "time", "lat": "latitude", "lon": "longitude"}
_LAT_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreen"}
_LON_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreee"}
_DEGREE_UNITS = {"degrees", "degree", "deg"}

# Attributes of the cube's coordinates (CF).
_COORD_ATTRS = {
    "time": {"standard_name": "time", "long_name": "time", "axis": "T"},
    "lat": {
        "standard_name": "latitude",
        "long_name": "latitude",
        "units": "degrees_north",
        "axis": "Y",
    },
    "lon": {
        "standard_name": "longitude",
        "long_name": "longitude",
        "units": "degrees_east",
        "axis": "X",
    },
}

# Encoding kept on the cube's variables; the rest (chunk sizes, shapes,
# compression) describes the source file and goes stale once reshaped.
_KEPT_ENCODING = (
    "dtype",
    "_FillValue",
    "missing_value",
    "scale_factor",
    "add_offset",
    "units",
    "calendar",
    "source",
)

# Attributes that point at variables the cube does not keep.
_DANGLING_ATTRS = ("bounds", "grid_mapping", "coordinates", "climatology")

_FETCH_AGAIN = "download or copy the file again"


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def open_climate_cube(
    paths: PathSpec,
    *,
    variables: str | Sequence[str] | None = None,
    resample: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    period: tuple[Any, Any] | None = None,
) -> xr.Dataset:
    """Open gridded climate NetCDF files as one cube.

    Parameters
    ----------
    paths
        A NetCDF file, a folder (its ``*.nc``, ``*.nc4``, ``*.netcdf`` and
        ``*.cdf`` files, not recursive), a glob pattern such as
        ``"data/*_2017.nc"``, or a list of any of these. Files may hold one
        field each or several; a field split over several files along time
        (``Tair_2017_01.nc``, ``Tair_2017_02.nc``) is joined in time order.
    variables
        Names of the fields to keep, as in the files (``"Tair"``,
        ``["Tair", "pr"]``); ``None`` keeps every field that varies in
        time. Fields without a time dimension (a land mask, orography) are
        skipped with a warning.
    resample
        A pandas frequency (``"1D"``, ``"6h"``, ``"MS"``) to aggregate the
        cube to, by the **mean** over each period; ``None`` keeps the
        native step. The mean is right for states (temperature, humidity,
        wind speed) and for fluxes given as rates (``kg m-2 s-1``,
        ``W m-2``), which stay in their units; a sum of rates would be
        wrong. Accumulated amounts (``precipitation_amount`` in ``kg m-2``
        per step) would need a sum: convert them to rates first. Steps
        are labelled as pandas does (the start of each day for ``"1D"``);
        missing values are skipped, so a period with a single valid value
        gets that value. Each resampled variable gains ``time: mean`` in
        its ``cell_methods`` attribute. A frequency finer than the cube's
        step is refused, and one equal to it leaves the cube as it is.
    bbox
        ``(lon_min, lat_min, lon_max, lat_max)`` in degrees; keeps the
        cells whose centres lie inside, edges included. Longitudes above
        180 are read as 0..360 and converted. A box crossing the
        antimeridian is refused.
    period
        ``(start, end)``, both inclusive, as anything
        :class:`pandas.Timestamp` reads; either may be ``None`` for an open
        end. A date string covers its whole day or month:
        ``("2017-01-03", "2017-01-04")`` runs to ``2017-01-04 23:00``.

    Returns
    -------
    xarray.Dataset
        Dims ``("time", "lat", "lon")``; ``lat`` increasing in degrees
        north, ``lon`` increasing in -180..180 degrees east, ``time``
        ``datetime64[ns]``. One variable per field, dims
        ``(time, lat, lon)``, in its file's units, with its CF attributes;
        ``NaN`` where the file has no value (sea). Values stay on disk (in
        dask arrays when dask is installed) until computed. The files stay
        open until ``cube.close()``, or use the cube as a context manager.
        ``cube.attrs["origin"]`` names the files.

    Raises
    ------
    FileFormatError
        A path is missing, a folder or glob holds no NetCDF file, or a file
        is empty, truncated, corrupt or not NetCDF.
    SchemaError
        A file lacks a latitude, longitude or time coordinate, its grid is
        not a regular lat/lon grid, a field has a dimension beyond time,
        lat and lon that is longer than 1, or a requested variable is not
        in the files.
    DataError
        Files are on different grids, a field's files overlap in time,
        fields have different time steps or no common times, ``bbox`` or
        ``period`` is malformed or selects nothing, or ``resample`` is not
        a frequency or is finer than the data.

    Notes
    -----
    Fields whose time axes have the same step but cover different periods
    are cut to their common period, with a warning. Grids that agree
    within ``GRID_ATOL`` degrees are taken as the same, on the first file's
    coordinates. A longitude repeated after the 0..360 conversion (a
    cyclic column at both 0 and 360) is kept once.
    """
    # Resolve the paths and check the arguments before opening anything.
    files = _resolve_paths(paths)
    wanted_order = _as_names(variables)
    if bbox is not None:
        bbox = _check_bbox(bbox)
    if period is not None:
        _check_period(period)
    if resample is not None:
        _frequency_span(resample)

    opened: dict[Path, xr.Dataset] = {}
    try:
        # Open every file lazily and find its time, lat and lon axes.
        layouts: list[tuple[Path, xr.Dataset, _Axes]] = []
        for path in files:
            ds = _open_file(path)
            opened[path] = ds
            layouts.append((path, ds, _locate_axes(ds, str(path))))

        # List the fields on offer and check the requested ones.
        available: dict[str, None] = {}
        static: dict[str, None] = {}
        for _, ds, axes in layouts:
            varying, fixed = _field_names(ds, axes)
            available.update(dict.fromkeys(varying))
            static.update(dict.fromkeys(fixed))
        wanted = _check_variables(wanted_order, list(available), list(static))

        # Put each file's selected fields in cube shape; close the others.
        pieces: list[tuple[Path, xr.Dataset]] = []
        for path, ds, axes in layouts:
            varying, _ = _field_names(ds, axes)
            keep = [name for name in varying if name in wanted]
            if not keep:
                opened.pop(path).close()
                continue
            pieces.append((path, _standardise(ds, axes, keep, str(path))))

        # Join the files into one cube, then subset and aggregate it.
        cube = _combine(pieces)
        if wanted_order is not None:
            cube = cube[wanted_order]
        if bbox is not None:
            cube = _select_bbox(cube, bbox)
        if period is not None:
            cube = _select_period(cube, period)
        if resample is not None:
            cube = _resample_mean(cube, resample)
    except BaseException:
        # Leave no file open behind an error.
        for ds in opened.values():
            ds.close()
        raise

    # Hand the open files to the cube, so that closing it closes them.
    cube.set_close(_closer(list(opened.values())))
    return cube


def to_cube(
    ds: xr.Dataset,
    *,
    variables: str | Sequence[str] | None = None,
    source: str = "dataset",
) -> xr.Dataset:
    """Put a Dataset already open (or built in memory) in cube shape.

    Use it for a file that needs a step of its own first, such as picking
    one pressure level: ``to_cube(xr.open_dataset(f).sel(level=850))``.

    Parameters
    ----------
    ds
        Gridded fields on a regular lat/lon grid, with CF or common
        coordinate names, in any dim order; lat may decrease, lon may run
        0..360.
    variables
        Names of the fields to keep; ``None`` keeps every field that varies
        in time.
    source
        What to call ``ds`` in error messages (a file name).

    Returns
    -------
    xarray.Dataset
        Dims ``("time", "lat", "lon")`` as in :func:`open_climate_cube`,
        with ``ds``'s global attributes. Lazy where ``ds`` is lazy.

    Raises
    ------
    SchemaError
        As :func:`open_climate_cube`, for coordinates, extra dims and
        unknown variables.
    DataError
        Duplicated times or latitudes.
    """
    # Find the axes and the fields, and check the requested names.
    axes = _locate_axes(ds, source)
    varying, fixed = _field_names(ds, axes)
    wanted_order = _as_names(variables)
    wanted = _check_variables(wanted_order, varying, fixed)

    # Reshape the kept fields, in the requested order.
    keep = [name for name in varying if name in wanted]
    cube = _standardise(ds, axes, keep, source)
    return cube[wanted_order] if wanted_order is not None else cube


@dataclass(frozen=True)
class FieldSummary:
    """What one field of a cube holds.

    Attributes
    ----------
    name
        Variable name, as in the file.
    units, long_name, standard_name
        CF attributes; ``None`` where the file gives none.
    dtype
        NumPy dtype of the values, e.g. ``"float32"``.
    missing_share
        Share (0..1) of all (time, lat, lon) values that are missing.
    empty_cell_share
        Share (0..1) of grid cells missing at every time step: sea, or
        outside the data.
    cell_methods
        CF ``cell_methods`` (``"time: mean"`` after resampling), or
        ``None``.
    """

    name: str
    units: str | None
    long_name: str | None
    standard_name: str | None
    dtype: str
    missing_share: float | None
    empty_cell_share: float | None
    cell_methods: str | None


@dataclass(frozen=True)
class CubeSummary:
    """What a climate cube holds, for a page.

    Attributes
    ----------
    variables
        One :class:`FieldSummary` per field, in the cube's order.
    shape
        ``(n_time, n_lat, n_lon)``.
    lat_step, lon_step
        Median grid spacing in degrees; ``None`` along a single cell.
    lat_range, lon_range
        Centres of the first and last cells, in degrees (north, east).
    start, end
        First and last time step.
    step
        Median time step; ``None`` for a single step.
    frequency
        Pandas frequency alias when the steps are regular (``"h"``,
        ``"D"``, ``"MS"``), else ``None``.
    """

    variables: tuple[FieldSummary, ...]
    shape: tuple[int, int, int]
    lat_step: float | None
    lon_step: float | None
    lat_range: tuple[float, float]
    lon_range: tuple[float, float]
    start: pd.Timestamp
    end: pd.Timestamp
    step: pd.Timedelta | None
    frequency: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values.

        Returns
        -------
        dict
            As the attributes, with times as ISO 8601 strings, the step as
            pandas writes a Timedelta (``"0 days 01:00:00"``), tuples as
            lists and ``variables`` as a list of dicts.
        """
        # Turn the nested dataclasses into dicts, then the times into text.
        out = asdict(self)
        out["variables"] = [asdict(field) for field in self.variables]
        out["start"] = self.start.isoformat()
        out["end"] = self.end.isoformat()
        out["step"] = None if self.step is None else str(self.step)
        out["shape"] = list(self.shape)
        out["lat_range"] = list(self.lat_range)
        out["lon_range"] = list(self.lon_range)
        return out


def describe_cube(ds: xr.Dataset, *, missing: bool = True) -> CubeSummary:
    """Summarise what a climate cube holds.

    Parameters
    ----------
    ds
        A cube, as :func:`open_climate_cube` returns.
    missing
        Count missing values per field. This reads every value once (in one
        pass over all fields); pass ``False`` for a large cube when only
        the metadata are needed, and the shares come back as ``None``.

    Returns
    -------
    CubeSummary
        Fields with units and names, grid shape, spacing and extent, time
        period and step, and the share of missing values per field.

    Raises
    ------
    SchemaError
        ``ds`` is not in cube shape.
    """
    # Check the shape: a page may hand over any Dataset.
    for dim in CUBE_DIMS:
        if dim not in ds.dims or dim not in ds.coords:
            raise SchemaError(
                f"not a climate cube: it has no {dim!r} coordinate (dims "
                f"{tuple(ds.dims)}); open the files with open_climate_cube "
                "or pass the Dataset through to_cube"
            )

    # Count missing values of all fields in one pass over the data.
    names = [str(name) for name in ds.data_vars]
    shares: dict[str, tuple[float | None, float | None]] = dict.fromkeys(
        names, (None, None)
    )
    if missing and names:
        isnull = ds[names].isnull()
        counts = xr.merge(
            [
                isnull.mean(CUBE_DIMS).rename({n: f"{n}|all" for n in names}),
                isnull.all("time")
                .mean(("lat", "lon"))
                .rename({n: f"{n}|cell" for n in names}),
            ]
        ).compute()
        shares = {
            n: (float(counts[f"{n}|all"]), float(counts[f"{n}|cell"]))
            for n in names
        }

    # Describe each field from its attributes.
    fields = tuple(
        FieldSummary(
            name=name,
            units=_text_attr(ds[name], "units"),
            long_name=_text_attr(ds[name], "long_name"),
            standard_name=_text_attr(ds[name], "standard_name"),
            dtype=str(ds[name].dtype),
            missing_share=shares[name][0],
            empty_cell_share=shares[name][1],
            cell_methods=_text_attr(ds[name], "cell_methods"),
        )
        for name in names
    )

    # Describe the grid and the time axis from the coordinates.
    lat = ds["lat"].values
    lon = ds["lon"].values
    times = pd.DatetimeIndex(ds["time"].values)
    step = _median_step(times)
    frequency = None
    if times.size >= 3:
        inferred = pd.DatetimeIndex(times, freq="infer")
        frequency = None if inferred.freq is None else inferred.freqstr
    return CubeSummary(
        variables=fields,
        shape=(times.size, lat.size, lon.size),
        lat_step=_median_spacing(lat),
        lon_step=_median_spacing(lon),
        lat_range=(float(lat[0]), float(lat[-1])),
        lon_range=(float(lon[0]), float(lon[-1])),
        start=times[0],
        end=times[-1],
        step=step,
        frequency=frequency,
    )


# ---------------------------------------------------------------------------
# Finding and opening files
# ---------------------------------------------------------------------------


def _resolve_paths(paths: PathSpec) -> list[Path]:
    """Expand files, folders and globs into a list of files, in order."""
    # A single path or pattern becomes a list of one.
    if isinstance(paths, (str, os.PathLike)):
        items: list[str | os.PathLike[str]] = [paths]
    else:
        items = list(paths)
    if not items:
        raise FileFormatError(
            "no path given; pass a NetCDF file, a folder of them or a glob "
            "pattern such as 'data/*.nc'"
        )

    # Expand each item; keep the first mention of a file.
    files: dict[Path, None] = {}
    for item in items:
        text = os.path.expanduser(os.fspath(item))
        if Path(text).is_file():
            found = [Path(text)]
        elif Path(text).is_dir():
            found = sorted(
                p
                for p in Path(text).iterdir()
                if p.is_file() and p.suffix.lower() in NETCDF_SUFFIXES
            )
            if not found:
                raise FileFormatError(
                    f"folder {text} holds no NetCDF file (names ending "
                    f"{', '.join(NETCDF_SUFFIXES)}); point to the folder "
                    "that holds them"
                )
        elif any(char in text for char in "*?["):
            matches = sorted(glob.glob(text))
            found = [Path(m) for m in matches if Path(m).is_file()]
            if not found:
                raise FileFormatError(
                    f"no file matches {text!r}; check the folder and the "
                    "pattern"
                )
        else:
            raise FileFormatError(
                f"{text} does not exist; check the path (relative paths "
                f"start from {os.getcwd()})"
            )
        files.update(dict.fromkeys(p.resolve() for p in found))
    return list(files)


def _open_file(path: Path) -> xr.Dataset:
    """Open one NetCDF file lazily, after checking that it is whole."""
    # Check the bytes first: the libraries' own errors say little.
    kind = _sniff(path)
    engine = _engine_for(kind)

    # Open lazily: dask arrays when dask is there, lazy arrays otherwise.
    chunks: dict[str, Any] | None = {} if find_spec("dask") else None
    try:
        return xr.open_dataset(
            path, engine=engine, chunks=chunks, decode_timedelta=False
        )
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
        raise FileFormatError(
            f"{path} cannot be read as NetCDF ({type(err).__name__}: {err}); "
            f"it is probably corrupt or truncated: {_FETCH_AGAIN}, or check "
            "it with 'ncdump -h'"
        ) from err


def _engine_for(kind: str) -> str:
    """The xarray engine for a file of ``kind`` ('hdf5' or 'classic')."""
    if find_spec("netCDF4"):
        return "netcdf4"
    if kind == "hdf5" and find_spec("h5netcdf"):
        return "h5netcdf"
    if kind == "classic" and find_spec("scipy"):
        return "scipy"
    raise FileFormatError(
        f"no library to read {kind} NetCDF files; install netCDF4 "
        "(pip install netCDF4)"
    )


def _sniff(path: Path) -> str:
    """Say whether ``path`` is HDF5 or classic NetCDF, and check its size.

    Returns ``"hdf5"`` or ``"classic"``; raises FileFormatError for an
    empty, truncated or non-NetCDF file.
    """
    # An empty file is the commonest failed download.
    size = path.stat().st_size
    if size == 0:
        raise FileFormatError(f"{path} is empty (0 bytes): {_FETCH_AGAIN}")

    with path.open("rb") as fh:
        head = fh.read(16)

        # Classic NetCDF (CDF-1, CDF-2, CDF-5) starts with its magic.
        if head[:4] in _CLASSIC_MAGICS:
            expected = _classic_expected_size(fh, path)
            _check_size(path, size, expected)
            return "classic"

        # HDF5 (NetCDF-4) puts its signature at 0, 512, 1024, 2048, ...
        offset = 0
        while offset + len(_HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                expected = _hdf5_expected_size(fh, offset)
                _check_size(path, size, expected)
                return "hdf5"
            offset = 512 if offset == 0 else offset * 2

    # The first bytes of a signature alone: cut right at the start.
    if len(head) < 8 and (
        _HDF5_SIGNATURE.startswith(head)
        or any(magic.startswith(head) for magic in _CLASSIC_MAGICS)
    ):
        _check_size(path, size, len(_HDF5_SIGNATURE))

    # Anything else: name what it looks like.
    raise FileFormatError(
        f"{path} is not a NetCDF file ({_guess_kind(head)}; it starts with "
        f"{head[:8]!r}); {_FETCH_AGAIN}, or convert it to NetCDF first "
        "(e.g. 'cdo -f nc copy in.grb out.nc' for GRIB)"
    )


def _guess_kind(head: bytes) -> str:
    """A few words on what a non-NetCDF file looks like."""
    if head.startswith(b"GRIB"):
        return "it looks like GRIB"
    if head.startswith(b"\x1f\x8b"):
        return "it looks gzip-compressed: unzip it first"
    if head.startswith(b"PK\x03\x04"):
        return "it looks like a zip archive: unzip it first"
    if head.lstrip().startswith(b"<"):
        return "it looks like HTML or XML, perhaps an error page"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "it looks like text"
    return "unknown content"


def _check_size(path: Path, size: int, expected: int | None) -> None:
    """Raise FileFormatError when a file is shorter than its header says."""
    if expected is not None and size < expected:
        raise FileFormatError(
            f"{path} is truncated: it holds {size} bytes but its header "
            f"needs at least {expected}; the download or copy was cut "
            f"short: {_FETCH_AGAIN}"
        )


def _hdf5_expected_size(fh: BinaryIO, base: int) -> int | None:
    """End-of-file address an HDF5 superblock announces, in bytes.

    Reads superblock versions 0 to 3; returns ``None`` for others or when
    the address is undefined.
    """
    # Version and size of addresses sit at fixed places after the signature.
    fh.seek(base + 8)
    fixed = fh.read(20)
    if len(fixed) < 4:
        return None
    version = fixed[0]
    if version in (0, 1):
        address_size = fixed[5]
        first_address = base + (24 if version == 0 else 28)
    elif version in (2, 3):
        address_size = fixed[1]
        first_address = base + 12
    else:
        return None

    # Base address, then (free space or extension), then end of file.
    fh.seek(first_address)
    raw = fh.read(3 * address_size)
    if len(raw) < 3 * address_size or address_size not in (2, 4, 8):
        return None
    base_address = int.from_bytes(raw[:address_size], "little")
    eof = int.from_bytes(raw[2 * address_size :], "little")
    if eof == 2 ** (8 * address_size) - 1:
        return None
    return base_address + eof


def _classic_expected_size(fh: BinaryIO, path: Path) -> int | None:
    """Smallest size a classic NetCDF file needs, from its header.

    Walks the header (dims, attributes, variables with their offsets) and
    returns the end of the last value; ``None`` for a streamed file whose
    record count is unknown.
    """
    # Counts are 4 bytes in CDF-1 and CDF-2, 8 in CDF-5; offsets 4 in CDF-1.
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(3)
    version = fh.read(1)[0]
    count_size = 8 if version == 5 else 4
    offset_size = 4 if version == 1 else 8

    def cut() -> FileFormatError:
        return FileFormatError(
            f"{path} is truncated inside its header: {_FETCH_AGAIN}"
        )

    def count(n: int = count_size) -> int:
        data = fh.read(n)
        if len(data) < n:
            raise cut()
        return int.from_bytes(data, "big")

    def skip(n: int) -> None:
        # Seek past names and values (padded to 4 bytes), never read them.
        if fh.seek(-(-n // 4) * 4, os.SEEK_CUR) > size:
            raise cut()

    def skip_attributes() -> None:
        tag, n = count(4), count()
        for _ in range(n if tag else 0):
            skip(count())
            nc_type = count(4)
            skip(count() * _CLASSIC_TYPE_SIZES.get(nc_type, 1))

    try:
        # Record count, dims (0 marks the record dim), global attributes.
        numrecs = count()
        if numrecs == 2 ** (8 * count_size) - 1:
            return None
        tag, n_dims = count(4), count()
        dim_sizes: list[int] = []
        for _ in range(n_dims if tag else 0):
            skip(count())
            dim_sizes.append(count())
        skip_attributes()

        # Variables: shape, type and where their values begin.
        tag, n_vars = count(4), count()
        fixed_ends: list[int] = []
        records: list[tuple[int, int]] = []
        for _ in range(n_vars if tag else 0):
            skip(count())
            dim_ids = [count() for _ in range(count())]
            skip_attributes()
            item = _CLASSIC_TYPE_SIZES.get(count(4), 1)
            count()  # vsize: overflows in CDF-1/2 for big variables
            begin = count(offset_size)
            shape = [dim_sizes[i] for i in dim_ids]
            if shape and shape[0] == 0:
                records.append((begin, item * math.prod(shape[1:])))
            else:
                fixed_ends.append(begin + item * math.prod(shape))
    except (IndexError, OverflowError, OSError) as err:
        raise FileFormatError(
            f"{path} has a corrupt NetCDF header ({err}): {_FETCH_AGAIN}"
        ) from err

    # Records interleave the record variables, each padded to 4 bytes
    # unless it is the only one.
    ends = fixed_ends
    if records and numrecs:
        if len(records) == 1:
            record_size = records[0][1]
        else:
            record_size = sum(-(-per // 4) * 4 for _, per in records)
        ends = ends + [
            begin + (numrecs - 1) * record_size + per for begin, per in records
        ]
    return max(ends, default=None)


# ---------------------------------------------------------------------------
# Recognising coordinates and fields
# ---------------------------------------------------------------------------


class _Axes(NamedTuple):
    """Variable and dim names of a file's time, lat and lon axes."""

    time: tuple[Hashable, Hashable] | None
    lat: tuple[Hashable, Hashable]
    lon: tuple[Hashable, Hashable]


def _locate_axes(ds: xr.Dataset, source: str) -> _Axes:
    """Find the time, latitude and longitude variables of a Dataset.

    Each variable is scored by CF ``standard_name``, ``axis``, ``units``
    and common names; the best one must be 1-D. Time may be absent (static
    fields only); lat and lon may not.
    """
    found: dict[str, tuple[Hashable, Hashable] | None] = {}
    for axis in ("time", "lat", "lon"):
        # Score every variable as a candidate for this axis.
        scored = [
            (score, name)
            for name, var in ds.variables.items()
            if (score := _axis_score(axis, name, var)) > 0
        ]
        if not scored:
            if axis == "time":
                found[axis] = None
                continue
            raise SchemaError(
                f"{source}: no {_AXIS_STANDARD_NAMES[axis]} coordinate "
                f"found among {sorted(map(str, ds.variables))}; name it "
                f"{axis!r} or give it standard_name="
                f"{_AXIS_STANDARD_NAMES[axis]!r}"
            )

        # The best candidate must be 1-D: a regular grid.
        _, name = max(scored, key=lambda pair: pair[0])
        var = ds.variables[name]
        if var.ndim != 1:
            raise SchemaError(
                f"{source}: {_AXIS_STANDARD_NAMES[axis]} {name!r} has dims "
                f"{var.dims}, not one: a curvilinear or unstructured grid. "
                "Regrid it onto a regular lat/lon grid first (e.g. 'cdo "
                "remapbil' or xesmf)"
            )
        found[axis] = (name, var.dims[0])

    # Latitude and longitude must span two different dims.
    lat, lon = found["lat"], found["lon"]
    assert lat is not None and lon is not None
    if lat[1] == lon[1]:
        raise SchemaError(
            f"{source}: latitude {lat[0]!r} and longitude {lon[0]!r} share "
            f"the dim {lat[1]!r}: an unstructured grid (a list of points). "
            "Regrid it onto a regular lat/lon grid first"
        )
    return _Axes(time=found["time"], lat=lat, lon=lon)


def _axis_score(axis: str, name: Hashable, var: xr.Variable) -> float:
    """How strongly a variable looks like the given axis (0: not at all)."""
    attrs = var.attrs
    units = str(attrs.get("units", var.encoding.get("units", "")))
    units = units.strip().lower()
    standard_name = str(attrs.get("standard_name", "")).strip().lower()
    letter = str(attrs.get("axis", "")).strip().upper()
    lowered = str(name).lower()

    # Bounds and auxiliary times are never the axis itself.
    if lowered.endswith(("_bnds", "_bounds")) or standard_name in (
        "forecast_reference_time",
        "forecast_period",
    ):
        return 0.0

    # Lat and lon are in degrees: metres mark a projected y or x.
    if axis in ("lat", "lon") and units:
        good = (_LAT_UNITS if axis == "lat" else _LON_UNITS) | _DEGREE_UNITS
        if units not in good:
            return 0.0

    # Add up the clues, strongest first.
    score = 0.0
    if standard_name == _AXIS_STANDARD_NAMES[axis]:
        score += 8
    if letter == _AXIS_LETTERS[axis]:
        score += 4
    if axis == "lat" and units in _LAT_UNITS:
        score += 4
    if axis == "lon" and units in _LON_UNITS:
        score += 4
    if axis == "time" and (
        np.issubdtype(var.dtype, np.datetime64) or " since " in units
    ):
        score += 2
    if lowered in _AXIS_NAMES[axis] and (score or var.ndim == 1):
        # A name alone ("t", "y") counts only for a 1-D variable.
        score += 1
    if score and var.dims == (name,):
        score += 0.5
    return score


def _field_names(ds: xr.Dataset, axes: _Axes) -> tuple[list[str], list[str]]:
    """Names of the fields that vary in time, and of those that do not.

    A field is a data variable on both the lat and the lon dim; bounds and
    grid-mapping variables are not fields.
    """
    # Variables that other variables point at are helpers, not fields.
    helpers = {
        str(value)
        for var in ds.variables.values()
        for key in ("bounds", "grid_mapping")
        if (value := var.attrs.get(key, var.encoding.get(key)))
    }
    axis_names = {axes.lat[0], axes.lon[0]} | (
        {axes.time[0]} if axes.time else set()
    )

    # Sort the remaining data variables by whether they have time.
    varying: list[str] = []
    fixed: list[str] = []
    for name, var in ds.data_vars.items():
        if name in axis_names or str(name) in helpers:
            continue
        if axes.lat[1] not in var.dims or axes.lon[1] not in var.dims:
            continue
        if axes.time is not None and axes.time[1] in var.dims:
            varying.append(str(name))
        else:
            fixed.append(str(name))
    return varying, fixed


def _as_names(variables: str | Sequence[str] | None) -> list[str] | None:
    """Normalise ``variables`` to a list of names (or None)."""
    if variables is None:
        return None
    names = [variables] if isinstance(variables, str) else list(variables)
    if not names:
        raise SchemaError(
            "variables is empty; pass field names such as ['Tair'] or None "
            "for all of them"
        )
    return list(dict.fromkeys(names))


def _check_variables(
    wanted: list[str] | None, available: list[str], static: list[str]
) -> set[str]:
    """The set of fields to keep; SchemaError for a name not on offer."""
    if not available:
        raise SchemaError(
            "no time-varying field on the lat/lon grid found (fields need "
            "time, lat and lon dims)"
            + (f"; static fields only: {', '.join(static)}" if static else "")
        )
    if wanted is None:
        if static:
            warnings.warn(
                f"skipped field(s) without a time dimension: "
                f"{', '.join(static)}; a climate cube holds time-varying "
                "fields only (open such fields with xarray.open_dataset)",
                stacklevel=3,
            )
        return set(available)
    for name in wanted:
        if name in available:
            continue
        if name in static:
            raise SchemaError(
                f"variable {name!r} has no time dimension; a climate cube "
                "holds time-varying fields only. Open it with "
                "xarray.open_dataset instead"
            )
        raise SchemaError(
            f"unknown variable {name!r}; the files hold: "
            f"{', '.join(available)}"
        )
    return set(wanted)


# ---------------------------------------------------------------------------
# Putting one Dataset in cube shape
# ---------------------------------------------------------------------------


def _standardise(
    ds: xr.Dataset, axes: _Axes, keep: list[str], source: str
) -> xr.Dataset:
    """Rename, reorder and clean one Dataset's kept fields into a cube."""
    assert axes.time is not None, "kept fields always vary in time"

    # Keep the fields and their axes, with the axes as coordinates; copy
    # the variables so that attributes can change without touching ``ds``.
    axis_names = [axes.time[0], axes.lat[0], axes.lon[0]]
    ds = ds.set_coords([n for n in axis_names if n in ds.data_vars])
    ds = ds[keep].copy(deep=False)

    # Drop the other coordinates (scalar heights, forecast times, ...).
    ds = ds.drop_vars(
        [c for c in ds.coords if c not in axis_names and c not in ds.dims]
    )

    # Rename each axis (variable and dim) to time, lat or lon.
    for target, (name, dim) in zip(CUBE_DIMS, (axes.time, axes.lat, axes.lon)):
        ds = _rename_axis(ds, name, dim, target, source)

    # Drop auxiliary coordinates left over from the renaming.
    ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims])

    # Squeeze singleton extra dims; refuse longer ones.
    for name in keep:
        extra = [d for d in ds[name].dims if d not in CUBE_DIMS]
        for dim in extra:
            if ds.sizes[dim] != 1:
                raise SchemaError(
                    f"{source}: variable {name!r} has the dimension {dim!r} "
                    f"(size {ds.sizes[dim]}) besides time, lat and lon; "
                    f"select one {dim} first, e.g. "
                    f"to_cube(xr.open_dataset(path).isel({dim}=0))"
                )
        if extra:
            ds[name] = ds[name].isel(dict.fromkeys(extra, 0), drop=True)
    ds = ds.drop_dims([d for d in ds.dims if d not in CUBE_DIMS])
    ds = ds.transpose(*CUBE_DIMS)

    # Order each axis: time and lat increasing, lon in -180..180.
    ds = _order_time(ds, source)
    ds = _order_lat(ds, source)
    ds = _order_lon(ds, source)

    # Clean attributes and encodings that no longer hold.
    for name in keep:
        var = ds[name]
        for key in _DANGLING_ATTRS:
            var.attrs.pop(key, None)
            var.encoding.pop(key, None)
        var.encoding = {
            k: v for k, v in var.encoding.items() if k in _KEPT_ENCODING
        }
    for dim in CUBE_DIMS:
        coord = ds[dim]
        coord.attrs = {
            k: v for k, v in coord.attrs.items() if k not in _DANGLING_ATTRS
        } | _COORD_ATTRS[dim]
        coord.encoding = {
            k: v for k, v in coord.encoding.items() if k in _KEPT_ENCODING
        }
    return ds


def _rename_axis(
    ds: xr.Dataset, name: Hashable, dim: Hashable, target: str, source: str
) -> xr.Dataset:
    """Make ``name`` (1-D along ``dim``) the dim coordinate ``target``."""
    # Nothing to do when it already carries the cube's name.
    if name == target and dim == target:
        return ds

    # Another variable holding the target name would clash.
    if target in ds.variables and target not in (name, dim):
        raise SchemaError(
            f"{source}: {name!r} is the {target} axis but another variable "
            f"is already called {target!r}; rename or drop it first"
        )

    # A dimension coordinate: rename variable and dim together.
    if name == dim:
        return ds.rename({name: target})

    # An auxiliary 1-D coordinate: drop the dim's own index, then swap.
    ds = ds.drop_vars([dim], errors="ignore").rename_vars({name: target})
    return ds.swap_dims({dim: target}) if dim != target else ds


def _order_time(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Make time datetime64[ns], unique and increasing."""
    # Non-standard calendars decode to cftime: convert them if possible.
    index = ds.indexes["time"]
    if isinstance(index, xr.CFTimeIndex):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                converted = index.to_datetimeindex(unsafe=True, time_unit="ns")
        except (ValueError, TypeError, OverflowError) as err:
            raise SchemaError(
                f"{source}: time in calendar {index.calendar!r} cannot be "
                f"converted to standard dates ({err}); convert it first with "
                "ds.convert_calendar('standard', align_on='date')"
            ) from err
        ds = ds.assign_coords(time=converted)
        index = ds.indexes["time"]

    # Times that failed to decode stay numbers: say how to fix the units.
    if not isinstance(index, pd.DatetimeIndex):
        units = ds["time"].attrs.get("units", ds["time"].encoding.get("units"))
        raise SchemaError(
            f"{source}: time values are not dates (units {units!r}); give "
            "the time variable CF units such as 'hours since 1900-01-01'"
        )
    if index.dtype != np.dtype("datetime64[ns]"):
        ds = ds.assign_coords(time=index.astype("datetime64[ns]"))
        index = ds.indexes["time"]

    # Refuse repeated times, then sort.
    if index.has_duplicates:
        repeated = index[index.duplicated()][0]
        raise DataError(
            f"{source}: time {repeated} appears more than once; drop the "
            "repeated steps first (ds.drop_duplicates('time'))"
        )
    return _increasing(ds, "time")


def _order_lat(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Make lat unique, in -90..90 and increasing."""
    lat = ds.indexes["lat"]
    if lat.has_duplicates:
        raise DataError(
            f"{source}: latitude {lat[lat.duplicated()][0]} appears more "
            "than once; the grid is not regular, regrid it first"
        )
    if lat.size and (lat.min() < -90 or lat.max() > 90):
        raise SchemaError(
            f"{source}: latitudes run {lat.min()}..{lat.max()}, beyond "
            "-90..90; these are not degrees north: check the file, or regrid it "
            "to a lat/lon grid in degrees"
        )
    return _increasing(ds, "lat")


def _order_lon(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Map lon from 0..360 to -180..180, keep each once, and sort it."""
    lon = ds["lon"].values
    if lon.size and (lon.min() < -180 or lon.max() > 360):
        raise SchemaError(
            f"{source}: longitudes run {lon.min()}..{lon.max()}, beyond "
            "-180..360; these are not degrees east: check the file, or regrid it "
            "to a lat/lon grid in degrees"
        )

    # Wrap 0..360 to -180..180; a repeated column (0 and 360) is kept once.
    if lon.size and lon.max() > 180:
        wrapped = np.where(lon > 180, lon - 360, lon)
        ds = ds.assign_coords(lon=("lon", wrapped, ds["lon"].attrs))
        ds = ds.drop_duplicates("lon", keep="first")
    return _increasing(ds, "lon")


def _increasing(ds: xr.Dataset, dim: str) -> xr.Dataset:
    """Order ``dim`` increasing: as is, reversed (a slice), or sorted."""
    index = ds.indexes[dim]
    if index.is_monotonic_increasing:
        return ds
    if index.is_monotonic_decreasing:
        return ds.isel({dim: slice(None, None, -1)})
    return ds.sortby(dim)


# ---------------------------------------------------------------------------
# Joining files
# ---------------------------------------------------------------------------


def _combine(pieces: list[tuple[Path, xr.Dataset]]) -> xr.Dataset:
    """Join per-file cubes: one grid, each field joined along time."""
    # Every file must sit on the first file's grid.
    ref_path, ref = pieces[0]
    aligned: list[tuple[Path, xr.Dataset]] = []
    for path, ds in pieces:
        if path != ref_path:
            _check_same_grid(ref_path, ref, path, ds)
            ds = ds.assign_coords(lat=ref["lat"], lon=ref["lon"])
        aligned.append((path, ds))

    # Gather each field's pieces, then join them in time order.
    by_field: dict[str, list[tuple[Path, xr.DataArray]]] = {}
    for path, ds in aligned:
        for name in ds.data_vars:
            by_field.setdefault(str(name), []).append((path, ds[name]))
    fields = {
        name: _join_in_time(name, parts) for name, parts in by_field.items()
    }

    # Fields must share their time axis; cut to the common period if needed.
    fields = _common_time(fields)
    cube = xr.merge(
        [da.to_dataset(name=name) for name, da in fields.items()],
        join="exact",
        compat="override",
        combine_attrs="override",
    )

    # Global attributes: those all files agree on, plus where they came from.
    cube.attrs = _agreed_attrs([ds.attrs for _, ds in aligned])
    cube.attrs["origin"] = "; ".join(path.name for path, _ in aligned)
    for dim in CUBE_DIMS:
        cube[dim].attrs = dict(aligned[0][1][dim].attrs)
    return cube


def _check_same_grid(
    ref_path: Path, ref: xr.Dataset, path: Path, ds: xr.Dataset
) -> None:
    """Raise DataError when two files are not on the same lat/lon grid."""
    same = all(
        ref.sizes[dim] == ds.sizes[dim]
        and np.allclose(ref[dim].values, ds[dim].values, rtol=0, atol=GRID_ATOL)
        for dim in ("lat", "lon")
    )
    if not same:
        raise DataError(
            f"files are on different grids: {ref_path.name} has "
            f"{_grid_text(ref)}, {path.name} has {_grid_text(ds)}. Regrid "
            "one onto the other first (e.g. 'cdo remapbil' or xesmf), or "
            "open them separately"
        )


def _grid_text(ds: xr.Dataset) -> str:
    """A grid in a few words: cells, extent and spacing."""
    lat, lon = ds["lat"].values, ds["lon"].values
    dlat, dlon = _median_spacing(lat), _median_spacing(lon)
    spacing = "" if dlat is None or dlon is None else f", step {dlat:g} x {dlon:g}"
    return (
        f"{lat.size} x {lon.size} cells (lat {lat.min():g}..{lat.max():g}, "
        f"lon {lon.min():g}..{lon.max():g}{spacing} deg)"
    )


def _join_in_time(
    name: str, parts: list[tuple[Path, xr.DataArray]]
) -> xr.DataArray:
    """Join one field's pieces along time, refusing overlaps."""
    if len(parts) == 1:
        return parts[0][1]

    # Order the pieces by their first time; each must end before the next.
    parts = sorted(parts, key=lambda part: part[1]["time"].values[0])
    for (path_a, a), (path_b, b) in zip(parts, parts[1:]):
        if a["time"].values[-1] >= b["time"].values[0]:
            raise DataError(
                f"{name!r} is in both {path_a.name} ({_period_text(a)}) and "
                f"{path_b.name} ({_period_text(b)}), overlapping in time; "
                "leave one of the files out"
            )
    return xr.concat(
        [da for _, da in parts],
        dim="time",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="override",
    )


def _common_time(fields: dict[str, xr.DataArray]) -> dict[str, xr.DataArray]:
    """Bring all fields onto one time axis, or say why they cannot be."""
    indexes = {name: da.indexes["time"] for name, da in fields.items()}
    first = next(iter(indexes.values()))
    if all(index.equals(first) for index in indexes.values()):
        return fields

    # Different steps cannot be matched time by time.
    steps = {name: _median_step(index) for name, index in indexes.items()}
    if len({step for step in steps.values() if step is not None}) > 1:
        listed = ", ".join(f"{n} every {s}" for n, s in steps.items())
        raise DataError(
            f"fields have different time steps ({listed}); open them "
            "separately and resample the finer ones first"
        )

    # Keep the times all fields share, if any.
    common = first
    for index in indexes.values():
        common = common.intersection(index)
    if common.empty:
        listed = "; ".join(
            f"{name} {_period_text(da)}" for name, da in fields.items()
        )
        raise DataError(
            f"fields have no time in common ({listed}); open files that "
            "cover the same period"
        )
    warnings.warn(
        f"fields cover different periods; keeping the {common.size} common "
        f"steps {common[0]}..{common[-1]}",
        stacklevel=3,
    )
    return {name: da.sel(time=common) for name, da in fields.items()}


def _agreed_attrs(all_attrs: list[dict[Hashable, Any]]) -> dict[Hashable, Any]:
    """Attributes with the same value in every dict, in the first's order."""

    def same(a: Any, b: Any) -> bool:
        try:
            return bool(np.array_equal(a, b))
        except (TypeError, ValueError):
            return False

    first, rest = all_attrs[0], all_attrs[1:]
    return {
        key: value
        for key, value in first.items()
        if all(key in other and same(value, other[key]) for other in rest)
    }


# ---------------------------------------------------------------------------
# Subsetting and resampling
# ---------------------------------------------------------------------------


def _check_bbox(
    bbox: tuple[float, float, float, float],
) -> tuple[float, float, float, float]:
    """Validate a (lon_min, lat_min, lon_max, lat_max) box in -180..180."""
    # Four finite numbers, in the documented order.
    try:
        lon_min, lat_min, lon_max, lat_max = (float(v) for v in bbox)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"bbox {bbox!r} is not four numbers; pass (lon_min, lat_min, "
            "lon_max, lat_max) in degrees"
        ) from err
    if not all(map(math.isfinite, (lon_min, lat_min, lon_max, lat_max))):
        raise DataError(f"bbox {bbox!r} holds a non-finite number")

    # Longitudes in 0..360 are mapped to -180..180.
    lon_min = lon_min - 360 if lon_min > 180 else lon_min
    lon_max = lon_max - 360 if lon_max > 180 else lon_max
    if not (-180 <= lon_min <= 180 and -180 <= lon_max <= 180):
        raise DataError(
            f"bbox {bbox!r}: longitudes must lie in -180..180 (or 0..360)"
        )
    if lon_min > lon_max:
        raise DataError(
            f"bbox {bbox!r}: lon_min is east of lon_max (the box crosses "
            "the antimeridian or the order is swapped); pass (lon_min, "
            "lat_min, lon_max, lat_max) with lon_min <= lon_max, or open "
            "two boxes"
        )
    if lat_min > lat_max or lat_min < -90 or lat_max > 90:
        raise DataError(
            f"bbox {bbox!r}: latitudes must satisfy -90 <= lat_min <= "
            "lat_max <= 90"
        )
    return lon_min, lat_min, lon_max, lat_max


def _select_bbox(
    cube: xr.Dataset, bbox: tuple[float, float, float, float]
) -> xr.Dataset:
    """Keep the cells whose centres fall in the box."""
    lon_min, lat_min, lon_max, lat_max = bbox
    sub = cube.sel(lat=slice(lat_min, lat_max), lon=slice(lon_min, lon_max))
    if sub.sizes["lat"] == 0 or sub.sizes["lon"] == 0:
        raise DataError(
            f"bbox {bbox!r} holds no cell centre; the cube covers "
            f"{_grid_text(cube)}"
        )
    return sub


def _check_period(period: tuple[Any, Any]) -> None:
    """Validate a (start, end) pair of times."""
    # Two parseable times, or None for an open end.
    try:
        start, end = period
        stamps = [None if v is None else pd.Timestamp(v) for v in (start, end)]
    except (TypeError, ValueError) as err:
        raise DataError(
            f"period {period!r} is not (start, end) times; pass e.g. "
            "('2017-01-01', '2017-01-15')"
        ) from err
    if stamps[0] is not None and stamps[1] is not None and stamps[0] > stamps[1]:
        raise DataError(f"period {period!r} ends before it starts; swap them")


def _select_period(cube: xr.Dataset, period: tuple[Any, Any]) -> xr.Dataset:
    """Keep the time steps in the period, both ends included."""
    start, end = period
    sub = cube.sel(time=slice(start, end))
    if sub.sizes["time"] == 0:
        raise DataError(
            f"period {period!r} holds no time step; the cube covers "
            f"{_period_text(cube)}"
        )
    return sub


def _frequency_span(freq: str) -> pd.Timedelta:
    """Shortest period of a pandas frequency; DataError when invalid."""
    # Pandas reads the alias; months and years vary, so take the shortest.
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
        stamps = pd.date_range("2001-01-01", periods=14, freq=offset)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"resample={freq!r} is not a pandas frequency ({err}); use e.g. "
            "'1D' (daily), '6h', 'W' or 'MS' (monthly)"
        ) from err
    span = pd.Timedelta(np.diff(stamps.values).min())
    if span <= pd.Timedelta(0):
        raise DataError(f"resample={freq!r} must be a positive frequency")
    return span


def _resample_mean(cube: xr.Dataset, freq: str) -> xr.Dataset:
    """Aggregate a cube to ``freq`` by the mean, refusing to upsample."""
    # Compare the target period with the cube's own step.
    span = _frequency_span(freq)
    step = _median_step(cube.indexes["time"])
    if step is not None and span < step:
        raise DataError(
            f"resample={freq!r} ({span}) is finer than the data's step "
            f"({step}); resampling only aggregates. Interpolate explicitly "
            "(cube.resample(time=...).interpolate()) if you need it"
        )
    if step is not None and span == step:
        return cube

    # Warn about accumulated amounts, whose mean is not their total.
    amounts = [
        str(name)
        for name, da in cube.data_vars.items()
        if str(da.attrs.get("standard_name", "")).endswith("_amount")
    ]
    if amounts:
        warnings.warn(
            f"{', '.join(amounts)}: accumulated amounts are averaged, not "
            "summed; convert them to rates first if totals are meant",
            stacklevel=3,
        )

    # Mean over each period, keeping attributes and recording the method.
    out = cube.resample(time=freq).mean(keep_attrs=True)
    out.attrs = dict(cube.attrs)
    for name in out.data_vars:
        previous = str(cube[name].attrs.get("cell_methods", "")).strip()
        out[name].attrs = dict(cube[name].attrs)
        out[name].attrs["cell_methods"] = f"{previous} time: mean".strip()
        out[name].encoding = dict(cube[name].encoding)

    # Keep time as datetime64[ns] with its CF attributes.
    if out.indexes["time"].dtype != np.dtype("datetime64[ns]"):
        out = out.assign_coords(time=out.indexes["time"].astype("datetime64[ns]"))
    for dim in CUBE_DIMS:
        out[dim].attrs = dict(cube[dim].attrs)
    out["time"].encoding = {
        k: v for k, v in cube["time"].encoding.items() if k in ("units", "calendar")
    }
    return out


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _median_step(index: pd.Index) -> pd.Timedelta | None:
    """Median step of a time index; None for fewer than two times."""
    if index.size < 2:
        return None
    return pd.Timedelta(np.median(np.diff(index.values)))


def _median_spacing(values: np.ndarray) -> float | None:
    """Median spacing of a 1-D coordinate; None for a single value."""
    if values.size < 2:
        return None
    return float(np.median(np.diff(values)))


def _period_text(obj: xr.Dataset | xr.DataArray) -> str:
    """First and last time of a cube or field, as text."""
    times = obj["time"].values
    if times.size == 0:
        return "no time step"
    return f"{pd.Timestamp(times[0])}..{pd.Timestamp(times[-1])}"


def _text_attr(da: xr.DataArray, key: str) -> str | None:
    """An attribute as text, or None when absent or blank."""
    value = da.attrs.get(key)
    if value is None or str(value).strip() == "":
        return None
    return str(value)


def _closer(datasets: list[xr.Dataset]) -> Callable[[], None]:
    """A function that closes every Dataset in ``datasets``."""

    def close() -> None:
        for ds in datasets:
            ds.close()

    return close
