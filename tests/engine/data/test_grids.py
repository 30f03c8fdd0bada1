"""Tests of the grid readers, ``engine.data.grids``.

Real files: the Helheim HDF5 grid (DeepTopoNet schema, arrays indexed
``[x, y]``) and the BedMachine Greenland v6.5 subset next to it. Synthetic
files, written to ``tmp_path``: BedMachine-like NetCDF in both directions of
``y``, an old version with ``-9999`` fill, and broken files of every kind.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from affine import Affine

from engine.data.errors import DataError, FileFormatError, RegionError, SchemaError
from engine.data.grids import read_bedmachine, read_topo_hdf5

#: Variables of the Helheim HDF5 grid and their units (CONVENTIONS.md).
HDF5_UNITS = {
    "surface_elevation": "m",
    "surface_velocity_x": "m a-1",
    "surface_velocity_y": "m a-1",
    "surface_mass_balance": "m a-1",
    "surface_elevation_change": "m a-1",
    "mask": "1",
    "bed_bedmachine": "m",
    "bed_bedmachine_error": "m",
}

#: HDF5 schema name -> name in the data model.
HDF5_NAMES = {
    "surf_elv": "surface_elevation",
    "surf_vx": "surface_velocity_x",
    "surf_vy": "surface_velocity_y",
    "surf_SMB": "surface_mass_balance",
    "surf_dhdt": "surface_elevation_change",
    "surf_mask": "mask",
    "bed_BedMachine": "bed_bedmachine",
    "bed_BedMachineerror": "bed_bedmachine_error",
}

#: Variables of a BedMachine grid and their units (CONVENTIONS.md).
BEDMACHINE_UNITS = {
    "bed_bedmachine": "m",
    "ice_thickness": "m",
    "surface_elevation": "m",
    "bed_bedmachine_error": "m",
    "mask": "1",
    "bed_source": "1",
    "geoid": "m",
}

#: Extent of the BedMachine subset (cell centres, m), from its README.
SUBSET_X = (300025.0, 319975.0)
SUBSET_Y = (-2579975.0, -2560025.0)


# --- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def helheim(helheim_grid_path: Path) -> xr.Dataset:
    """The Helheim HDF5 grid, read once for the module."""
    return read_topo_hdf5(helheim_grid_path)


@pytest.fixture(scope="module")
def bedmachine(helheim_bedmachine_path: Path) -> xr.Dataset:
    """The whole BedMachine subset, read once for the module."""
    return read_bedmachine(helheim_bedmachine_path)


def _bedmachine_like(
    ny: int, nx: int, *, y_increasing: bool = False, x0: float = 200_000.0
) -> xr.Dataset:
    """A BedMachine-like dataset of smooth, distinct values on 150 m cells.

    Every value is a function of its cell centre, so two crops are equal
    exactly when they hold the same cells in the same places.
    """
    x = x0 + 150.0 * np.arange(nx)
    y = -2_500_000.0 - 150.0 * np.arange(ny)
    if y_increasing:
        y = y[::-1]
    yy, xx = np.meshgrid(y, x, indexing="ij")
    bed = ((xx - x0) * 1e-2 + (yy + 2_500_000.0) * 1e-3).astype("float32")
    return xr.Dataset(
        {
            "mask": (("y", "x"), np.full((ny, nx), 2, dtype="int8")),
            "surface": (("y", "x"), bed + 1000.0),
            "thickness": (("y", "x"), np.full((ny, nx), 1000.0, dtype="float32")),
            "bed": (("y", "x"), bed),
            "errbed": (("y", "x"), np.full((ny, nx), 50.0, dtype="float32")),
        },
        coords={"x": x, "y": y},
        attrs={"version": "synthetic"},
    )


def _write(ds: xr.Dataset, path: Path, **encoding_for_all: object) -> Path:
    """Write a dataset to NetCDF4 with one encoding for every data variable."""
    encoding = {name: dict(encoding_for_all) for name in ds.data_vars}
    ds.to_netcdf(path, encoding=encoding)
    return path


# --- Helheim HDF5 grid ------------------------------------------------------


def test_hdf5_grid_has_dims_y_x_of_300_by_200(helheim: xr.Dataset) -> None:
    # The file's 200 x 300 [x, y] arrays become 300 rows (y) by 200 columns (x).
    assert tuple(helheim.sizes) == ("y", "x")
    assert (helheim.sizes["y"], helheim.sizes["x"]) == (300, 200)
    for name in helheim.data_vars:
        assert helheim[name].dims == ("y", "x"), name


def test_hdf5_grid_coordinates_are_150m_cells_x_up_y_down(helheim: xr.Dataset) -> None:
    # x increases and y decreases by exactly one 150 m cell per step.
    x = helheim["x"].to_numpy()
    y = helheim["y"].to_numpy()
    np.testing.assert_array_equal(np.diff(x), 150.0)
    np.testing.assert_array_equal(np.diff(y), -150.0)
    assert helheim.attrs["grid_spacing"] == 150.0
    assert helheim.attrs["origin"] == "subdomain_data.h5"

    # The README's ranges of surf_x and surf_y (cell centres, exact in float32).
    assert (x[0], x[-1]) == (269575.0, 299425.0)
    assert (y[0], y[-1]) == (-2542025.0, -2586875.0)


def test_hdf5_grid_crs_and_transform_match_the_cell_centres(
    helheim: xr.Dataset,
) -> None:
    # The CRS is written by rioxarray as EPSG:3413 on a spatial_ref coordinate.
    assert helheim.rio.crs.to_epsg() == 3413
    assert "spatial_ref" in helheim.coords

    # The transform's origin is the north-west corner: half a cell beyond the
    # first centre in x and above it in y.
    x0 = float(helheim["x"][0])
    y0 = float(helheim["y"][0])
    expected = Affine(150.0, 0.0, x0 - 75.0, 0.0, -150.0, y0 + 75.0)
    assert helheim.rio.transform().almost_equals(expected)

    # Every cell's centre through the transform is its coordinate (exact: the
    # numbers are multiples of 25 m, exact in float64).
    cols = np.array([0, 57, 199])
    rows = np.array([0, 123, 299])
    transform = helheim.rio.transform()
    xs = transform.c + transform.a * (cols + 0.5)
    ys = transform.f + transform.e * (rows + 0.5)
    np.testing.assert_array_equal(xs, helheim["x"].to_numpy()[cols])
    np.testing.assert_array_equal(ys, helheim["y"].to_numpy()[rows])


def test_hdf5_grid_variables_are_named_and_typed_per_conventions(
    helheim: xr.Dataset,
) -> None:
    # All eight fields, renamed, each with CF units and long_name.
    assert set(helheim.data_vars) == set(HDF5_UNITS)
    for name, units in HDF5_UNITS.items():
        assert helheim[name].attrs["units"] == units, name
        assert helheim[name].attrs["long_name"], name

    # Floats are float32; the mask keeps an integer type.
    assert helheim["mask"].dtype == np.int8
    for name in set(HDF5_UNITS) - {"mask"}:
        assert helheim[name].dtype == np.float32, name


def test_hdf5_grid_values_match_the_readme(helheim: xr.Dataset) -> None:
    # surf_dhdt has exactly 4092 NaN cells; nothing else has any.
    assert int(helheim["surface_elevation_change"].isnull().sum()) == 4092
    for name in set(HDF5_UNITS) - {"surface_elevation_change"}:
        assert not bool(helheim[name].isnull().any()), name

    # Velocity components reach about 5.5 km/yr (the README): the largest is
    # 5479 m/yr, so 5000..5600 tells m/yr from km/yr or m/day (factors of
    # 1000 and 365). The speed itself stays below 7 km/yr (6472 m/yr here).
    largest = max(
        float(abs(helheim["surface_velocity_x"]).max()),
        float(abs(helheim["surface_velocity_y"]).max()),
    )
    assert 5000.0 < largest < 5600.0
    speed = np.hypot(helheim["surface_velocity_x"], helheim["surface_velocity_y"])
    assert float(speed.max()) < 7000.0

    # The mask holds only ice-free land (1) and grounded ice (2).
    assert set(np.unique(helheim["mask"]).tolist()) == {1, 2}


def test_hdf5_arrays_indexed_x_y_are_transposed_to_y_x(
    helheim: xr.Dataset, helheim_grid_path: Path, rng: np.random.Generator
) -> None:
    # Read the raw [x, y] arrays straight from the file.
    with h5py.File(helheim_grid_path, "r") as handle:
        raw = {old: handle[old][()] for old in (*HDF5_NAMES, "surf_x", "surf_y")}

    # Spot checks at random (ix, iy): file[ix, iy] is grid.isel(y=iy, x=ix).
    for ix, iy in zip(rng.integers(0, 200, 25), rng.integers(0, 300, 25)):
        cell = helheim.isel(y=int(iy), x=int(ix))
        assert float(cell["x"]) == raw["surf_x"][ix, iy]
        assert float(cell["y"]) == raw["surf_y"][ix, iy]
        assert float(cell["surface_elevation"]) == raw["surf_elv"][ix, iy]

    # And every array as a whole is the transpose of the file's.
    for old, new in HDF5_NAMES.items():
        np.testing.assert_array_equal(helheim[new].to_numpy(), raw[old].T, err_msg=new)


def _write_hdf5_grid(path: Path, x2d: np.ndarray, y2d: np.ndarray) -> Path:
    """An HDF5 grid of the schema whose elevation is a function of x and y."""
    with h5py.File(path, "w") as handle:
        handle["surf_x"] = x2d
        handle["surf_y"] = y2d
        handle["surf_elv"] = (1e-3 * x2d + 1e-4 * y2d).astype("float32")
    return path


def test_hdf5_grid_with_y_up_and_x_down_is_put_in_order(tmp_path: Path) -> None:
    # A 20 x 30 [x, y] grid whose x runs down along axis 0 and y up axis 1.
    x = 280_075.0 + 150.0 * np.arange(20)[::-1]
    y = -2_550_075.0 - 150.0 * np.arange(30)[::-1]
    x2d, y2d = np.meshgrid(x, y, indexing="ij")
    grid = read_topo_hdf5(_write_hdf5_grid(tmp_path / "flipped.h5", x2d, y2d))

    # x increasing, y decreasing, and every value moved with its coordinates.
    assert (grid.sizes["y"], grid.sizes["x"]) == (30, 20)
    np.testing.assert_array_equal(np.diff(grid["x"]), 150.0)
    np.testing.assert_array_equal(np.diff(grid["y"]), -150.0)
    expected = (1e-3 * grid["x"] + 1e-4 * grid["y"]).transpose("y", "x")
    np.testing.assert_array_equal(
        grid["surface_elevation"], expected.astype("float32")
    )


def test_hdf5_grid_stored_y_x_is_refused_or_read_right(tmp_path: Path) -> None:
    # The same 30 x 20 grid stored [y, x] (C order, as most converters write
    # it) instead of the schema's [x, y]: x varies along axis 1.
    x = 280_075.0 + 150.0 * np.arange(20)
    y = -2_550_075.0 - 150.0 * np.arange(30)
    y2d, x2d = np.meshgrid(y, x, indexing="ij")
    path = _write_hdf5_grid(tmp_path / "yx.h5", x2d, y2d)

    # Either a SchemaError that names the file, or the right grid: never
    # one whose x (or y) coordinate repeats a single value.
    try:
        grid = read_topo_hdf5(path)
    except SchemaError as exc:
        assert "yx.h5" in str(exc)
        return
    assert grid.attrs["grid_spacing"] == 150.0
    np.testing.assert_array_equal(grid["x"], x)
    np.testing.assert_array_equal(grid["y"], y)


# --- BedMachine subset --------------------------------------------------------


def test_bedmachine_full_read_is_134_by_134_y_down(bedmachine: xr.Dataset) -> None:
    # The whole subset: 134 x 134 cells of 150 m, y decreasing, EPSG:3413.
    assert tuple(bedmachine.sizes) == ("y", "x")
    assert (bedmachine.sizes["y"], bedmachine.sizes["x"]) == (134, 134)
    np.testing.assert_array_equal(np.diff(bedmachine["y"]), -150.0)
    np.testing.assert_array_equal(np.diff(bedmachine["x"]), 150.0)
    assert bedmachine.rio.crs.to_epsg() == 3413
    assert bedmachine.attrs["grid_spacing"] == 150.0

    # The README's extent of the cell centres.
    assert (float(bedmachine.x.min()), float(bedmachine.x.max())) == SUBSET_X
    assert (float(bedmachine.y.min()), float(bedmachine.y.max())) == SUBSET_Y


def test_bedmachine_variables_are_renamed_with_units_and_version(
    bedmachine: xr.Dataset,
) -> None:
    # The seven BedMachine variables under their model names, nothing else
    # (dataid and the mapping variable are dropped).
    assert set(bedmachine.data_vars) == set(BEDMACHINE_UNITS)
    for name, units in BEDMACHINE_UNITS.items():
        assert bedmachine[name].attrs["units"] == units, name

    # Integer codes stay integers; the version is kept.
    assert bedmachine["mask"].dtype.kind == "i"
    assert bedmachine["bed_source"].dtype.kind == "i"
    assert set(np.unique(bedmachine["mask"]).tolist()) <= {0, 1, 2, 3, 4}
    assert bedmachine.attrs["bedmachine_version"].startswith("v6.5")
    assert bedmachine.attrs["origin"] == "subdomain_bed.nc"


def test_bedmachine_thickness_is_surface_minus_bed_on_grounded_ice(
    bedmachine: xr.Dataset,
) -> None:
    # Grounded ice (mask 2) covers a good part of the subset.
    grounded = (bedmachine["mask"] == 2).to_numpy()
    assert grounded.sum() > 1000

    # thickness = surface - bed there. Tolerance 0.01 m: BedMachine stores
    # float32 values, whose spacing is 1.2e-4 m at the ~1400 m of this area,
    # so a difference of a few roundings stays far below 0.01 m, while any
    # real mismatch of the fields (a shifted or flipped grid) is metres.
    surface = bedmachine["surface_elevation"].to_numpy()[grounded]
    bed = bedmachine["bed_bedmachine"].to_numpy()[grounded]
    thickness = bedmachine["ice_thickness"].to_numpy()[grounded]
    np.testing.assert_allclose(thickness, surface - bed, rtol=0, atol=0.01)


def test_bedmachine_crop_keeps_exactly_the_cells_with_centres_in_bounds(
    bedmachine: xr.Dataset, helheim_bedmachine_path: Path
) -> None:
    # Bounds that fall between cell centres (37 m and 60 m off a centre).
    bounds = (305_062.0, -2_575_012.0, 311_140.0, -2_566_090.0)
    crop = read_bedmachine(helheim_bedmachine_path, bounds=bounds)

    # The expected cells, picked by hand from the full read.
    x = bedmachine["x"].to_numpy()
    y = bedmachine["y"].to_numpy()
    in_x = (x >= bounds[0]) & (x <= bounds[2])
    in_y = (y >= bounds[1]) & (y <= bounds[3])
    np.testing.assert_array_equal(crop["x"], x[in_x])
    np.testing.assert_array_equal(crop["y"], y[in_y])
    assert (crop.sizes["y"], crop.sizes["x"]) == (in_y.sum(), in_x.sum())

    # The same values as the full read, cell for cell.
    for name in BEDMACHINE_UNITS:
        np.testing.assert_array_equal(
            crop[name].to_numpy(), bedmachine[name].to_numpy()[np.ix_(in_y, in_x)]
        )
    assert crop.rio.crs.to_epsg() == 3413


def test_bedmachine_crop_outside_the_file_raises_region_error_with_extent(
    helheim_bedmachine_path: Path,
) -> None:
    # A window on the Helheim h5 grid, west of the subset, holds none of it.
    with pytest.raises(RegionError) as info:
        read_bedmachine(
            helheim_bedmachine_path, bounds=(270_000, -2_580_000, 290_000, -2_560_000)
        )

    # The message names the file and its extent (cell centres).
    message = str(info.value)
    assert "subdomain_bed.nc" in message
    assert "x 300025..319975 m" in message
    assert "y -2579975..-2560025 m" in message


def test_bedmachine_variables_argument_reads_only_those(
    helheim_bedmachine_path: Path,
) -> None:
    # Asking for mask and bed reads those two and nothing else.
    grid = read_bedmachine(helheim_bedmachine_path, variables=["mask", "bed"])
    assert set(grid.data_vars) == {"mask", "bed_bedmachine"}

    # An unknown name is a SchemaError that lists the known ones.
    with pytest.raises(SchemaError, match="choose from"):
        read_bedmachine(helheim_bedmachine_path, variables=["bedrock"])


# --- lazy crop on synthetic files ---------------------------------------------


def test_crop_is_identical_whichever_way_y_runs_in_the_file(tmp_path: Path) -> None:
    # The same 400 x 300 field, written with y decreasing (v5, v6) and with
    # y increasing (as some older files and regridded copies have it).
    down = _write(_bedmachine_like(400, 300), tmp_path / "down.nc")
    up = _write(_bedmachine_like(400, 300, y_increasing=True), tmp_path / "up.nc")

    # A window off the cell centres, in the middle of the grid.
    bounds = (210_010.0, -2_540_020.0, 220_030.0, -2_530_040.0)
    crop_down = read_bedmachine(down, bounds=bounds)
    crop_up = read_bedmachine(up, bounds=bounds)

    # Both give the same cells, y decreasing, and the same values.
    xr.testing.assert_identical(crop_down.drop_attrs(), crop_up.drop_attrs())
    assert bool((crop_down["y"].diff("y") < 0).all())
    assert crop_down.sizes == {"y": 66, "x": 67}
    assert crop_down["x"].min() >= bounds[0] and crop_down["x"].max() <= bounds[2]
    assert crop_down["y"].min() >= bounds[1] and crop_down["y"].max() <= bounds[3]


def test_crop_reads_only_the_window_not_the_whole_variable(tmp_path: Path) -> None:
    # A 1200 x 1000 file, zlib-compressed in 100 x 100 chunks: small on disk
    # (smooth values) but 4.8 MB per float32 variable once read, 20 MB in all.
    big = _bedmachine_like(1200, 1000)
    path = _write(big, tmp_path / "big.nc", zlib=True, chunksizes=(100, 100))
    one_variable = 1200 * 1000 * 4

    # Measure the peak of Python-side allocations (numpy registers its
    # buffers with tracemalloc) while a 40 x 40 window is read.
    bounds = (250_000.0, -2_600_000.0, 256_000.0, -2_594_000.0)
    tracemalloc.start()
    try:
        crop = read_bedmachine(path, bounds=bounds)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert crop.sizes == {"y": 40, "x": 40}

    # Reading any whole variable before slicing needs its 4.8 MB at once
    # (measured: 25 MB when the file is loaded first). The window's five
    # variables take 26 kB, and xarray's own bookkeeping was measured at
    # about 270 kB: the limit of 1 MB leaves that a margin of almost four
    # and is still almost five times below one whole variable.
    assert peak < 1_000_000 < one_variable, f"peak {peak:,} bytes"


def test_old_version_fill_becomes_nan_and_missing_variables_are_absent(
    tmp_path: Path,
) -> None:
    # An old-version file: -9999 marks nodata in bed with no _FillValue
    # attribute, and there is no geoid and no source variable.
    ds = _bedmachine_like(30, 20)
    ds["bed"][:3, :4] = -9999.0
    ds["errbed"][5, 5] = -9999.0
    path = tmp_path / "BedMachineGreenland-2017-09-20.nc"
    ds.to_netcdf(path, encoding={name: {"_FillValue": None} for name in ds.data_vars})

    grid = read_bedmachine(path)

    # The fill is NaN, nothing else is.
    bed = grid["bed_bedmachine"].to_numpy()
    assert np.isnan(bed[:3, :4]).all()
    assert np.isnan(bed).sum() == 12
    assert np.isnan(grid["bed_bedmachine_error"].to_numpy()).sum() == 1
    assert not (grid["bed_bedmachine"] == -9999.0).any()

    # The missing variables are simply absent; the others are there.
    assert "geoid" not in grid and "bed_source" not in grid
    assert {"bed_bedmachine", "surface_elevation", "ice_thickness", "mask"} <= set(
        grid.data_vars
    )
    assert grid.attrs["bedmachine_version"] == "synthetic"


# --- bad files ------------------------------------------------------------------


def test_missing_hdf5_file_raises_file_format_error_with_the_path(
    tmp_path: Path,
) -> None:
    # A path that does not exist: FileFormatError naming it, not OSError.
    missing = tmp_path / "nowhere" / "subdomain_data.h5"
    with pytest.raises(FileFormatError, match="no such file") as info:
        read_topo_hdf5(missing)
    assert str(missing) in str(info.value)


def test_truncated_hdf5_file_raises_file_format_error(
    helheim_grid_path: Path, tmp_path: Path
) -> None:
    # The first half of the real file's bytes, as an interrupted download.
    content = helheim_grid_path.read_bytes()
    truncated = tmp_path / "subdomain_data.h5"
    truncated.write_bytes(content[: len(content) // 2])

    # A FileFormatError that names the file and says to download it again.
    with pytest.raises(FileFormatError) as info:
        read_topo_hdf5(truncated)
    assert "subdomain_data.h5" in str(info.value)
    assert "download it again" in str(info.value)


def test_text_file_named_h5_raises_file_format_error(tmp_path: Path) -> None:
    # A text file with an .h5 name (an HTML error page saved as the file).
    fake = tmp_path / "hackathon.h5"
    fake.write_text("<html><body>404 Not Found</body></html>\n")
    with pytest.raises(FileFormatError, match="hackathon.h5 is not a readable HDF5"):
        read_topo_hdf5(fake)


def test_hdf5_without_surf_x_raises_schema_error_naming_it(tmp_path: Path) -> None:
    # A valid HDF5 file holding surf_y and a field but no surf_x.
    path = tmp_path / "no_x.h5"
    with h5py.File(path, "w") as handle:
        handle["surf_y"] = np.zeros((4, 5))
        handle["surf_elv"] = np.zeros((4, 5))
    with pytest.raises(SchemaError) as info:
        read_topo_hdf5(path)
    assert "no_x.h5" in str(info.value)
    assert "surf_x" in str(info.value)


def test_text_file_named_nc_raises_file_format_error(tmp_path: Path) -> None:
    # A text file with a .nc name is no NetCDF file.
    fake = tmp_path / "BedMachineGreenland-v5.nc"
    fake.write_text("x,y,bed\n1,2,3\n")
    with pytest.raises(FileFormatError) as info:
        read_bedmachine(fake)
    assert "BedMachineGreenland-v5.nc is not a readable NetCDF" in str(info.value)


def test_missing_netcdf_file_raises_file_format_error(tmp_path: Path) -> None:
    # A missing BedMachine file is a FileFormatError that gives the path.
    missing = tmp_path / "BedMachineGreenland-v5.nc"
    with pytest.raises(FileFormatError, match="no such file"):
        read_bedmachine(missing)


def test_netcdf_without_bedmachine_variables_raises_schema_error(
    tmp_path: Path,
) -> None:
    # A NetCDF on x/y whose only variable is not BedMachine's.
    path = tmp_path / "velocity.nc"
    xr.Dataset(
        {"vx": (("y", "x"), np.zeros((3, 3)))},
        coords={"x": [0.0, 150.0, 300.0], "y": [0.0, -150.0, -300.0]},
    ).to_netcdf(path)
    with pytest.raises(SchemaError, match="velocity.nc holds none of"):
        read_bedmachine(path)


def test_every_error_is_a_data_error() -> None:
    # Pages catch DataError: every reader error must be one (and a
    # ValueError, so plain code that expects bad values still copes).
    for kind in (FileFormatError, SchemaError, RegionError):
        assert issubclass(kind, DataError)
        assert issubclass(kind, ValueError)
