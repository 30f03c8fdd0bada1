"""Readers of airborne radar picks, flight lines, and radar laid on a grid.

All readers return the radar-picks table of ``CONVENTIONS.md``: one row a
pick, columns ``x``, ``y`` (EPSG:3413, m), ``ice_thickness`` (m),
``bed_elevation`` (m), ``source`` and ``line_id``.

Formats read by :func:`read_radar`:

- plain CSV with ``x, y, thickness[, source]`` (EPSG:3413 metres);
- CReSIS L2 CSV with ``LAT, LON, UTCTIMESOD, THICK, ELEVATION, FRAME,
  SURFACE, BOTTOM, QUALITY`` (WGS84 degrees, ``-9999`` missing);
- MATLAB v5 and v7.3 (HDF5) files holding ``x, y, thickness[, source]``;
- bed-point CSV with ``X, Y, Bed`` (EPSG:3413 metres).
"""

from __future__ import annotations

import csv
import logging
import warnings
from os import PathLike
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
import xarray as xr
from pyproj import Transformer

from engine.data.errors import DataWarning, FileFormatError, SchemaError
from engine.data.grids import CRS

__all__ = [
    "RADAR_COLUMNS",
    "GREENLAND_EXTENT",
    "read_radar",
    "assign_flight_lines",
    "radar_to_grid",
    "picks_in_grid",
]

log = logging.getLogger(__name__)

#: Columns of every radar-picks table, in order.
RADAR_COLUMNS = ["x", "y", "ice_thickness", "bed_elevation", "source", "line_id"]

#: BedMachine Greenland's extent in EPSG:3413 metres (x_min, y_min, x_max,
#: y_max): a pick outside it is not in Greenland.
GREENLAND_EXTENT = (-653_000.0, -3_384_500.0, 879_700.0, -632_600.0)

# Longest line accepted in a CSV: a row of picks is under 200 bytes.
_MAX_LINE_BYTES = 10_000

# CReSIS files mark missing values with this number.
_CRESIS_MISSING = -9999.0


def _numeric(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    """Return a column as float64, with a clear error on text in it."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        line = int(raw.index[first]) + 2  # the header is line 1
        # (The cell is cut short, so that a huge cell cannot flood the message.)
        cell = str(raw.iloc[first])
        shown = repr(cell if len(cell) <= 40 else cell[:40] + "...")
        raise SchemaError(
            f"{name}: column '{column}' holds text where numbers are expected "
            f"(row {line} of the file: {shown}); fix or remove those rows"
        )
    out = values.to_numpy(dtype="float64", copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def _picks_frame(
    x: np.ndarray,
    y: np.ndarray,
    *,
    ice_thickness: np.ndarray | None = None,
    bed_elevation: np.ndarray | None = None,
    source: np.ndarray | None = None,
    line_id: np.ndarray | None = None,
    origin: str,
) -> pd.DataFrame:
    """Assemble, check and clean a radar-picks table."""
    n = x.size
    nan = np.full(n, np.nan)
    frame = pd.DataFrame(
        {
            "x": x.astype("float64"),
            "y": y.astype("float64"),
            "ice_thickness": nan if ice_thickness is None else ice_thickness,
            "bed_elevation": nan if bed_elevation is None else bed_elevation,
            "source": (
                np.full(n, -1, dtype="int64")
                if source is None
                else np.nan_to_num(source, nan=-1).astype("int64")
            ),
            "line_id": (
                np.full(n, -1, dtype="int64")
                if line_id is None
                else np.nan_to_num(line_id, nan=-1).astype("int64")
            ),
        }
    )

    # Degrees in metre columns are the commonest mistake: say so.
    finite = frame[["x", "y"]].dropna()
    if len(finite) and (finite["x"].abs().max() <= 360) and (
        finite["y"].abs().max() <= 90
    ):
        raise SchemaError(
            f"{origin}: x and y look like longitude and latitude in degrees, but "
            "EPSG:3413 metres are expected; reproject them, or give the file LAT "
            "and LON columns as in a CReSIS CSV"
        )

    # Negative thickness is not physical.
    negative = frame["ice_thickness"] < 0
    if negative.any():
        warnings.warn(
            f"{origin}: {int(negative.sum())} picks with negative ice thickness "
            "were set to missing",
            DataWarning,
            stacklevel=3,
        )
        frame.loc[negative, "ice_thickness"] = np.nan

    # Drop rows without a position or without anything measured.
    keep = frame[["x", "y"]].notna().all(axis=1) & (
        frame["ice_thickness"].notna() | frame["bed_elevation"].notna()
    )
    if not keep.all():
        warnings.warn(
            f"{origin}: {int((~keep).sum())} of {n} rows without a position or a "
            "value were dropped",
            DataWarning,
            stacklevel=3,
        )
        frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise SchemaError(
            f"{origin}: no usable radar pick (position and value); give every "
            "data row below the header finite x and y and a thickness or bed value"
        )

    # Picks far outside Greenland mean a wrong CRS.
    x_min, y_min, x_max, y_max = GREENLAND_EXTENT
    inside = frame["x"].between(x_min, x_max) & frame["y"].between(y_min, y_max)
    if not inside.any():
        raise SchemaError(
            f"{origin}: no pick lies in Greenland's EPSG:3413 extent "
            f"(x {x_min:.0f}..{x_max:.0f} m, y {y_min:.0f}..{y_max:.0f} m); the "
            "coordinates are probably in another CRS: reproject them to EPSG:3413"
        )

    frame.attrs["crs"] = CRS
    frame.attrs["origin"] = origin
    return frame


def _read_matlab(path: Path) -> dict[str, np.ndarray]:
    """Read the arrays of a MATLAB v5 or v7.3 file as flat float arrays."""
    # v7.3 files are HDF5; older ones are read by scipy.
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as handle:
                return {
                    key: np.asarray(handle[key][()], dtype="float64").ravel()
                    for key in handle
                    if isinstance(handle[key], h5py.Dataset)
                }
        content = scipy.io.loadmat(path)
    except Exception as exc:  # noqa: BLE001 (see below)
        # Truncated, corrupt or non-MATLAB bytes make scipy and h5py fail in
        # many ways (MatReadError, zlib.error, IndexError, even scipy's own
        # UnboundLocalError); every one means the file cannot be used as is.
        raise FileFormatError(
            f"{path.name} is not a readable MATLAB file ({exc}); it may be "
            "truncated: download or export it again"
        ) from exc
    return {
        key: np.asarray(value, dtype="float64").ravel()
        for key, value in content.items()
        if not key.startswith("__") and isinstance(value, np.ndarray)
        and value.dtype.kind in "fiu"
    }


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV with a header, with clear errors for unreadable files."""
    _check_layout(path)
    try:
        # Blank lines are kept while reading so that row numbers in messages
        # are the file's own; they are dropped just after. No column is
        # taken as an index, and a row longer than the header is an error
        # (pandas only warns, and drops its extra values).
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                skipinitialspace=True,
                dtype=str,
                skip_blank_lines=False,
                index_col=False,
            )
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"{path.name} is not UTF-8 text ({exc}); save it as 'CSV UTF-8' with "
            "a header row and comma-separated values"
        ) from exc
    except (
        pd.errors.ParserError,
        pd.errors.ParserWarning,
        pd.errors.EmptyDataError,
        csv.Error,
        OverflowError,
        ValueError,
    ) as exc:
        raise FileFormatError(
            f"{path.name} is not a readable CSV file ({exc}); it needs a header row "
            "and comma-separated values, as many in each row as the header names"
        ) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.dropna(how="all")


def _check_layout(path: Path) -> None:
    """Raise FileFormatError for semicolon separators or very long lines."""
    with path.open("rb") as handle:
        # The header alone tells semicolons (a decimal comma would confuse
        # the rows).
        header = handle.readline(65_536)
        if b";" in header and b"," not in header:
            shown = header[:60].decode("utf-8", errors="replace").strip()
            raise FileFormatError(
                f"{path.name} seems to use semicolons as separators (header "
                f"{shown!r}); save it with commas as separators and '.' as the "
                "decimal point"
            )

        # A row of a radar table holds a few numbers; a very long line is not
        # one (and would keep the CSV parser busy for minutes).
        if len(header) > _MAX_LINE_BYTES:
            handle.seek(0)
        for number, line in enumerate(handle, start=2 if handle.tell() else 1):
            if len(line) > _MAX_LINE_BYTES:
                raise FileFormatError(
                    f"{path.name}: line {number} is {len(line):,} bytes long or more, "
                    f"beyond the {_MAX_LINE_BYTES:,} a row of a few numbers needs; "
                    "check that it is a radar table with one pick a line"
                )


def _shown_columns(frame: pd.DataFrame) -> list[str]:
    """The first column names, each cut short, for a message of bounded size."""
    names = [name if len(name) <= 30 else name[:30] + "..." for name in frame.columns]
    return names[:10] + (["..."] if len(names) > 10 else [])


def _from_cresis(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Turn a CReSIS L2 CSV table into radar picks in EPSG:3413."""
    cols = {c.upper(): c for c in frame.columns}
    lat = _numeric(frame, cols["LAT"], name)
    lon = _numeric(frame, cols["LON"], name)
    thick = _numeric(frame, cols["THICK"], name)

    # -9999 is CReSIS's missing value.
    for values in (lat, lon, thick):
        values[values == _CRESIS_MISSING] = np.nan
    if np.nanmax(np.abs(lat), initial=0.0) > 90:
        raise SchemaError(
            f"{name}: LAT holds values beyond 90 degrees; LAT and LON may be "
            "swapped or in metres: give them in degrees, latitude under LAT"
        )

    # Greenland is 59-84 N and 11-74 W: such latitudes under LON and such
    # longitudes under LAT mean the two columns are swapped.
    if (
        np.isfinite(lat).any()
        and np.nanmin(lon) >= 59
        and np.nanmax(lon) <= 84
        and np.nanmin(lat) >= -75
        and np.nanmax(lat) <= -10
    ):
        raise SchemaError(
            f"{name}: LAT and LON look swapped (LAT {np.nanmin(lat):.1f}.."
            f"{np.nanmax(lat):.1f}, LON {np.nanmin(lon):.1f}..{np.nanmax(lon):.1f}); "
            "swap the two column names"
        )

    # Reproject to EPSG:3413 (always lon, lat order).
    to_polar = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    x, y = to_polar.transform(lon, lat)

    # Frames are CReSIS's own flight-line ids; they become the source ids.
    source = None
    if "FRAME" in cols:
        source = pd.factorize(frame[cols["FRAME"]].to_numpy())[0].astype("float64")
    picks = _picks_frame(
        np.asarray(x), np.asarray(y), ice_thickness=thick, source=source, origin=name
    )
    picks.attrs["line_ids_from_file"] = "source" if source is not None else None
    return picks


def read_radar(path: str | PathLike[str]) -> pd.DataFrame:
    """Read radar picks from any supported file and assign flight lines.

    The format is told from the extension (``.mat``, ``.csv``/``.txt``) and
    the header: ``LAT, LON, THICK`` is CReSIS L2; ``x, y, thickness`` plain;
    ``X, Y, Bed`` bed points. Column names are matched case-insensitively.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    pandas.DataFrame
        The radar-picks table (``CONVENTIONS.md``): ``x``, ``y``
        (EPSG:3413, m), ``ice_thickness`` (m, NaN where absent),
        ``bed_elevation`` (m, bed-point files only; CReSIS ``BOTTOM`` is
        ellipsoidal and not used), ``source`` and ``line_id`` from
        :func:`assign_flight_lines`.

    Raises
    ------
    FileFormatError
        Missing, truncated or unreadable file.
    SchemaError
        Columns missing, text in numeric columns, coordinates in degrees
        or in another CRS.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file; check the path or fetch it")
    suffix = path.suffix.lower()

    # MATLAB files: x, y, thickness and an optional source.
    if suffix == ".mat":
        arrays = _read_matlab(path)
        missing = [k for k in ("x", "y", "thickness") if k not in arrays]
        if missing:
            raise SchemaError(
                f"{path.name} lacks the variables {missing}; a radar MATLAB file "
                f"needs x, y, thickness (found {sorted(map(str, arrays))}): export "
                "them under these names"
            )
        sizes = {k: arrays[k].size for k in ("x", "y", "thickness")}
        if len(set(sizes.values())) != 1:
            raise SchemaError(f"{path.name}: x, y, thickness differ in length {sizes}")
        picks = _picks_frame(
            arrays["x"],
            arrays["y"],
            ice_thickness=arrays["thickness"],
            source=arrays.get("source"),
            origin=path.name,
        )
        return assign_flight_lines(picks)

    if suffix not in (".csv", ".txt"):
        raise FileFormatError(
            f"{path.name}: unknown radar format '{suffix}'; use a .csv (plain, "
            "CReSIS L2 or bed points) or a .mat file"
        )

    # CSV files: tell the kind from the header.
    frame = _read_csv(path)
    upper = {c.upper() for c in frame.columns}
    lower = {c.lower(): c for c in frame.columns}
    if {"LAT", "LON", "THICK"} <= upper:
        picks = _from_cresis(frame, path.name)
    elif {"x", "y"} <= set(lower) and {"thickness", "ice_thickness"} & set(lower):
        # Plain picks, or a table written in this project's own columns.
        thickness = lower.get("thickness", lower.get("ice_thickness"))
        source = (
            _numeric(frame, lower["source"], path.name) if "source" in lower else None
        )
        bed = (
            _numeric(frame, lower["bed_elevation"], path.name)
            if "bed_elevation" in lower
            else None
        )
        line_id = (
            _numeric(frame, lower["line_id"], path.name) if "line_id" in lower else None
        )
        picks = _picks_frame(
            _numeric(frame, lower["x"], path.name),
            _numeric(frame, lower["y"], path.name),
            ice_thickness=_numeric(frame, thickness, path.name),
            bed_elevation=bed,
            source=source,
            line_id=line_id,
            origin=path.name,
        )
        picks.attrs["line_ids_from_file"] = "line_id" if line_id is not None else None
    elif {"x", "y", "bed"} <= set(lower):
        picks = _picks_frame(
            _numeric(frame, lower["x"], path.name),
            _numeric(frame, lower["y"], path.name),
            bed_elevation=_numeric(frame, lower["bed"], path.name),
            origin=path.name,
        )
    else:
        raise SchemaError(
            f"{path.name}: columns {_shown_columns(frame)} match no radar format; "
            "expected x, y, thickness[, source] (EPSG:3413 m), or LAT, LON, THICK "
            "(CReSIS L2), or X, Y, Bed (bed points)"
        )
    return assign_flight_lines(picks, ids_from=picks.attrs.get("line_ids_from_file"))


def assign_flight_lines(
    picks: pd.DataFrame, *, gap_factor: float = 10.0, ids_from: str | None = None
) -> pd.DataFrame:
    """Give every pick a flight-line id, so whole lines can be held out.

    Picks are taken in file order. A new line starts where the ``source``
    id changes, or where the step from the previous pick is longer than
    ``gap_factor`` times the file's typical (median) along-track step: the
    Helheim file samples about one pick per 1.15 km, so a jump of more
    than about 11.5 km starts a new line.

    Parameters
    ----------
    picks : pandas.DataFrame
        A radar-picks table in file order.
    gap_factor : float, default 10
        How many median steps make a gap between two lines.
    ids_from : str, optional
        A column holding the file's own line ids (``"source"`` for CReSIS
        frames, ``"line_id"`` for tables written by this project); they are
        used as they are, without cutting at gaps.

    Returns
    -------
    pandas.DataFrame
        A copy with ``line_id`` set: 0, 1, 2, ... in order of first
        appearance.
    """
    picks = picks.copy()
    if len(picks) == 0:
        return picks

    # The file's own ids, when it has them, are the lines.
    if ids_from:
        picks["line_id"] = pd.factorize(picks[ids_from].to_numpy())[0].astype("int64")
        return picks

    # Otherwise cut at source changes and at gaps much longer than a step.
    source = picks["source"].to_numpy()
    step = np.hypot(np.diff(picks["x"].to_numpy()), np.diff(picks["y"].to_numpy()))
    typical = float(np.median(step[step > 0])) if np.any(step > 0) else 0.0
    new_line = (step > gap_factor * typical) | (source[1:] != source[:-1])
    picks["line_id"] = np.concatenate([[0], np.cumsum(new_line)]).astype("int64")
    picks.attrs["typical_step_m"] = typical
    return picks


def _cell_index(
    picks: pd.DataFrame, grid: xr.Dataset
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and an inside flag of each pick on a grid."""
    x = grid["x"].to_numpy()
    y = grid["y"].to_numpy()
    dx = x[1] - x[0]
    dy = y[0] - y[1]
    col = np.floor((picks["x"].to_numpy() - (x[0] - dx / 2)) / dx).astype("int64")
    row = np.floor(((y[0] + dy / 2) - picks["y"].to_numpy()) / dy).astype("int64")
    inside = (col >= 0) & (col < x.size) & (row >= 0) & (row < y.size)
    return row, col, inside


def picks_in_grid(picks: pd.DataFrame, grid: xr.Dataset) -> pd.DataFrame:
    """Return the picks that fall in a grid's cells, with their row and column.

    Parameters
    ----------
    picks : pandas.DataFrame
        A radar-picks table (EPSG:3413).
    grid : xarray.Dataset
        A grid on dims ``("y", "x")``, y decreasing (EPSG:3413).

    Returns
    -------
    pandas.DataFrame
        The picks inside the grid, with integer columns ``row`` and ``col``.
    """
    row, col, inside = _cell_index(picks, grid)
    out = picks.loc[inside].copy()
    out["row"] = row[inside]
    out["col"] = col[inside]
    return out


def radar_to_grid(picks: pd.DataFrame, grid: xr.Dataset) -> xr.Dataset:
    """Average radar picks per grid cell.

    The radar bed of a pick is the grid's ``surface_elevation`` at its
    cell minus its ice thickness (so that the bed is on the grid's vertical
    datum); a bed-point pick gives its bed directly. Picks are averaged per
    cell.

    Parameters
    ----------
    picks : pandas.DataFrame
        A radar-picks table with ``line_id`` set (EPSG:3413).
    grid : xarray.Dataset
        A grid (dims ``("y", "x")``, EPSG:3413) with ``surface_elevation``
        when the picks carry thickness.

    Returns
    -------
    xarray.Dataset
        On the grid's dims and CRS: ``radar_bed`` (m, NaN where no pick),
        ``radar_thickness`` (m), ``radar_count`` (picks per cell, 0 where
        none) and ``radar_line`` (the line with most picks in the cell, -1
        where none).
    """
    ny, nx = grid.sizes["y"], grid.sizes["x"]
    inside = picks_in_grid(picks, grid)
    flat = (inside["row"] * nx + inside["col"]).to_numpy()

    # The bed at each pick: surface at its cell minus thickness, or its bed.
    thickness = inside["ice_thickness"].to_numpy()
    bed = inside["bed_elevation"].to_numpy().copy()
    if np.isfinite(thickness).any():
        if "surface_elevation" not in grid:
            raise SchemaError(
                "radar thickness needs the grid's surface_elevation to give a bed; "
                "use a grid that has it"
            )
        surface = grid["surface_elevation"].to_numpy().ravel()[flat]
        has_thickness = np.isfinite(thickness)
        bed[has_thickness] = surface[has_thickness] - thickness[has_thickness]

    # Mean and count per cell.
    count = np.bincount(flat, minlength=ny * nx)
    bed_ok = np.isfinite(bed)
    bed_sum = np.bincount(flat[bed_ok], weights=bed[bed_ok], minlength=ny * nx)
    bed_n = np.bincount(flat[bed_ok], minlength=ny * nx)
    th_ok = np.isfinite(thickness)
    th_sum = np.bincount(flat[th_ok], weights=thickness[th_ok], minlength=ny * nx)
    th_n = np.bincount(flat[th_ok], minlength=ny * nx)
    with np.errstate(invalid="ignore", divide="ignore"):
        radar_bed = np.where(bed_n > 0, bed_sum / bed_n, np.nan)
        radar_thickness = np.where(th_n > 0, th_sum / th_n, np.nan)

    # The line with most picks in each cell.
    line = np.full(ny * nx, -1, dtype="int64")
    if len(inside):
        counts = (
            pd.DataFrame({"cell": flat, "line": inside["line_id"].to_numpy()})
            .value_counts()
            .reset_index()
            .drop_duplicates("cell")
        )
        line[counts["cell"].to_numpy()] = counts["line"].to_numpy()

    # Back on the grid's dims, with attributes.
    shape = (ny, nx)
    out = xr.Dataset(
        {
            "radar_bed": (("y", "x"), radar_bed.reshape(shape).astype("float32")),
            "radar_thickness": (
                ("y", "x"),
                radar_thickness.reshape(shape).astype("float32"),
            ),
            "radar_count": (("y", "x"), count.reshape(shape).astype("int32")),
            "radar_line": (("y", "x"), line.reshape(shape)),
        },
        coords={"x": grid["x"], "y": grid["y"]},
    )
    out["radar_bed"].attrs.update(units="m", long_name="radar bed, mean per cell")
    out["radar_thickness"].attrs.update(
        units="m", long_name="radar ice thickness, mean per cell"
    )
    out["radar_count"].attrs.update(units="1", long_name="radar picks per cell")
    out["radar_line"].attrs.update(units="1", long_name="flight line of the cell")
    return out.rio.write_crs(CRS)
