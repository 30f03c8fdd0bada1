"""Helpers of the hostile-input suite: clear-error checks and small clean files.

Every test here feeds a reader or an upload path with bad input and checks
one promise of ``engine/data/CONVENTIONS.md``: the caller gets a
``DataError`` (or the module's documented ``ValueError`` subclass) whose
message names the problem and the way out, and the reader leaves neither a
file nor an open handle behind.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import scipy.io
import xarray as xr

from engine.data.errors import DataError

#: Words of which a clear message holds at least one: the way out it names.
FIX_WORDS = (
    "add", "check", "choose", "convert", "cut", "delete", "download", "draw",
    "export", "fetch", "fill", "fix", "give", "keep", "name", "need", "open", "pass",
    "point", "regrid", "remove", "replace", "reproject", "save", "split",
    "unzip", "upload", "use", "write",
)  # fmt: skip

#: Longest message accepted: a page shows it whole, so a reader must never
#: echo a megabyte of the file back (1000 characters is about ten lines).
MAX_MESSAGE_CHARS = 1000

#: Text that betrays a library's traceback or repr leaking into a message.
LEAKS = ("Traceback (most recent call last)", 'File "/')

#: A point on Helheim's trunk (EPSG:3413, m), used by the clean files.
HELHEIM_XY = (285_000.0, -2_565_000.0)


def _open_handles(folder: Path) -> list[str]:
    """Paths under ``folder`` that this process holds open (Linux only)."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return []
    held = []
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            # The descriptor closed while we looked: nothing held.
            continue
        if target.startswith(str(folder)):
            held.append(target)
    return held


def release(exc: BaseException) -> None:
    """Drop the tracebacks of an error chain and collect garbage.

    A traceback keeps the frames of the failed call alive, and with them
    any file object a library had opened; a caller that drops the error
    lets them go. Handles still open after this are real leaks.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
    gc.collect()


def check_message(exc: BaseException, *, names: str | None = None) -> str:
    """Assert that an error message is clear; return it.

    Clear means: not empty, not too long, no traceback text, naming the
    file (when ``names`` is given) and holding a word of the way out.
    """
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert len(message) <= MAX_MESSAGE_CHARS, (
        f"message of {len(message)} characters: {message[:200]}..."
    )
    for leak in LEAKS:
        assert leak not in message, f"traceback text in the message: {message}"
    if names is not None:
        assert names in message, f"the message does not name {names!r}: {message}"
    lowered = message.lower()
    assert any(word in lowered for word in FIX_WORDS), (
        f"the message names no way out: {message}"
    )
    return message


@pytest.fixture
def expect_clear() -> Callable[..., BaseException]:
    """Call a reader on bad input and check that it fails clearly and cleanly.

    ``expect_clear(reader, path_or_value, *args, errors=DataError,
    names=None, folder=None, **kwargs)`` returns the error. It asserts that
    the error is of ``errors``, that its message is clear (see
    :func:`check_message`), and that ``folder`` (the bad file's folder by
    default) holds the same files as before and no handle stays open.
    """

    def run(
        reader: Callable[..., Any],
        target: Any,
        *args: Any,
        errors: type[BaseException] | tuple[type[BaseException], ...] = DataError,
        names: str | None = None,
        folder: Path | None = None,
        **kwargs: Any,
    ) -> BaseException:
        # Note the folder's files before the call.
        if folder is None and isinstance(target, Path):
            folder = target.parent
        before = sorted(os.listdir(folder)) if folder is not None else None

        # The reader must fail with a clear error of the documented kind.
        with warnings.catch_warnings():
            # Warnings about dropped rows are fine on the way to the error.
            warnings.simplefilter("ignore")
            with pytest.raises(errors) as info:
                result = reader(target, *args, **kwargs)
                # A lazy result (a climate cube) must fail when read, if at all.
                if hasattr(result, "close"):
                    result.close()
        error = info.value
        check_message(error, names=names)

        # Nothing left behind once the error is dropped: no file, no handle.
        del info
        release(error)
        if folder is not None:
            assert sorted(os.listdir(folder)) == before, "the reader left files"
            assert not _open_handles(folder), "the reader left a file open"
        return error

    return run


@pytest.fixture
def clear_message() -> Callable[..., str]:
    """The :func:`check_message` check, for tests that catch errors themselves."""
    return check_message


@pytest.fixture
def clear_or_ok() -> Callable[..., Any]:
    """The :func:`call_clear_or_ok` check, for damage that may leave a good file."""
    return call_clear_or_ok


def call_clear_or_ok(
    reader: Callable[..., Any], target: Path, *args: Any, **kwargs: Any
) -> Any:
    """Call a reader on damaged input that may still be usable.

    A flipped byte in padding or in a value leaves a usable file; the
    reader may then return. Otherwise it must fail as :func:`expect_clear`
    wants. Returns the result or the error.
    """
    before = sorted(os.listdir(target.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = reader(target, *args, **kwargs)
            if hasattr(result, "load"):
                result.load()
            if hasattr(result, "close"):
                result.close()
        except DataError as exc:
            check_message(exc)
            release(exc)
            result = exc
    assert sorted(os.listdir(target.parent)) == before, "the reader left files"
    assert not _open_handles(target.parent), "the reader left a file open"
    return result


# --- small clean files, written once, damaged per test ----------------------


def write_topo_hdf5(path: Path, nx: int = 24, ny: int = 20) -> Path:
    """A small grid in the DeepTopoNet HDF5 schema, arrays indexed [x, y]."""
    x = HELHEIM_XY[0] + 150.0 * np.arange(nx)
    y = HELHEIM_XY[1] - 150.0 * np.arange(ny)
    x2d, y2d = np.meshgrid(x, y, indexing="ij")
    with h5py.File(path, "w") as out:
        out["surf_x"] = x2d
        out["surf_y"] = y2d
        out["surf_elv"] = 1000.0 + 0.01 * x2d - 0.01 * y2d
        out["surf_mask"] = np.full((nx, ny), 2, dtype="int8")
    return path


def write_bedmachine(path: Path, nx: int = 24, ny: int = 20) -> Path:
    """A small BedMachine-like NetCDF-4 file (y decreasing, -9999 fill)."""
    x = HELHEIM_XY[0] + 150.0 * np.arange(nx)
    y = HELHEIM_XY[1] - 150.0 * np.arange(ny)
    bed = np.full((ny, nx), -200.0, dtype="float32")
    ds = xr.Dataset(
        {
            "bed": (("y", "x"), bed),
            "surface": (("y", "x"), bed + 1200.0),
            "mask": (("y", "x"), np.full((ny, nx), 2, dtype="int8")),
        },
        coords={"x": x, "y": y},
    )
    ds.to_netcdf(path, engine="netcdf4")
    return path


def write_climate(path: Path, *, classic: bool) -> Path:
    """A small climate cube file: NetCDF-4 (HDF5) or classic (CDF-1)."""
    start = np.array("2017-01-01", dtype="datetime64[ns]")
    time = start + np.arange(6) * np.timedelta64(1, "h")
    lat = np.linspace(50.0, 52.0, 5)
    lon = np.linspace(-3.0, 0.0, 7)
    tair = 270.0 + np.arange(6 * 5 * 7, dtype="float32").reshape(6, 5, 7) / 100
    ds = xr.Dataset(
        {"Tair": (("time", "lat", "lon"), tair, {"units": "K"})},
        coords={"time": time, "lat": lat, "lon": lon},
    )
    ds["lat"].attrs["units"] = "degrees_north"
    ds["lon"].attrs["units"] = "degrees_east"
    ds.to_netcdf(path, engine="scipy" if classic else "netcdf4")
    return path


def write_radar_mat(path: Path, *, v73: bool) -> Path:
    """A small radar MATLAB file: x, y, thickness; v5 (scipy) or v7.3 (HDF5)."""
    x = HELHEIM_XY[0] + 100.0 * np.arange(50)
    y = np.full(50, HELHEIM_XY[1])
    thickness = np.full(50, 1200.0)
    if v73:
        # MATLAB v7.3 is HDF5 with a 512-byte text header before the superblock.
        with h5py.File(path, "w", userblock_size=512) as out:
            out["x"] = x
            out["y"] = y
            out["thickness"] = thickness
        with path.open("r+b") as out:
            out.write(b"MATLAB 7.3 MAT-file, hostile-suite test".ljust(128))
    else:
        scipy.io.savemat(path, {"x": x, "y": y, "thickness": thickness})
    return path


@pytest.fixture(scope="session")
def clean_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clean small files of every binary kind, written once per session."""
    folder = tmp_path_factory.mktemp("clean")
    return {
        "topo_h5": write_topo_hdf5(folder / "grid.h5"),
        "bedmachine_nc": write_bedmachine(folder / "bedmachine.nc"),
        "climate_nc4": write_climate(folder / "climate4.nc", classic=False),
        "climate_nc3": write_climate(folder / "climate3.nc", classic=True),
        "radar_mat5": write_radar_mat(folder / "radar5.mat", v73=False),
        "radar_mat73": write_radar_mat(folder / "radar73.mat", v73=True),
    }
