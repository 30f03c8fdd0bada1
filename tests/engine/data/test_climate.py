"""Tests of ``engine.data.climate``: the real WFDE5 files, then tiny
synthetic files written to ``tmp_path``.

Run the real-data tests with ``GREENBED_DATA_DIR=../shared/data``; they
skip when it is unset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.data.climate import (
    CubeSummary,
    describe_cube,
    open_climate_cube,
    to_cube,
)
from engine.data.errors import DataError, FileFormatError, SchemaError

# Units of the six WFDE5 fields, as the data set's README lists them.
WFDE5_UNITS = {
    "Tair": "K",
    "pr": "kg m-2 s-1",
    "Qair": "kg kg-1",
    "LWdown": "W m-2",
    "SWdown": "W m-2",
    "Wind": "m s-1",
}

# Plausible ranges for the UK and Ireland in January: loose physical
# bounds that catch wrong units, unmasked fill values or swapped fields.
WFDE5_RANGES = {
    "Tair": (240.0, 300.0),  # K: -33 to +27 degC
    "pr": (0.0, 0.01),  # kg m-2 s-1: up to 36 mm per hour
    "Qair": (0.0, 0.02),  # kg kg-1
    "LWdown": (100.0, 500.0),  # W m-2
    "SWdown": (0.0, 1000.0),  # W m-2: low winter sun
    "Wind": (0.0, 50.0),  # m s-1
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _field(
    name: str = "tas",
    *,
    times: pd.DatetimeIndex | None = None,
    lat: Sequence[float] = (50.0, 51.0, 52.0),
    lon: Sequence[float] = (-2.0, -1.0, 0.0, 1.0),
    units: str = "K",
    seed: int = 0,
) -> xr.Dataset:
    """A small (time, lat, lon) field with CF coordinates, values 0..1."""
    # Six hourly steps unless told otherwise.
    if times is None:
        times = pd.date_range("2017-01-01", periods=6, freq="h")
    rng = np.random.default_rng(seed)
    values = rng.random((len(times), len(lat), len(lon))).astype("float32")

    # CF attributes on the axes and the field.
    return xr.Dataset(
        {name: (("time", "lat", "lon"), values, {"units": units, "long_name": name})},
        coords={
            "time": ("time", times, {"standard_name": "time", "axis": "T"}),
            "lat": (
                "lat",
                np.asarray(lat, float),
                {"standard_name": "latitude", "units": "degrees_north"},
            ),
            "lon": (
                "lon",
                np.asarray(lon, float),
                {"standard_name": "longitude", "units": "degrees_east"},
            ),
        },
    )


def _write(ds: xr.Dataset, path: Path, fmt: str = "NETCDF4") -> Path:
    """Write ``ds`` to ``path`` with netCDF4 and return the path."""
    ds.to_netcdf(path, engine="netcdf4", format=fmt)
    return path


def _open_descriptors(paths: Sequence[Path]) -> list[str]:
    """Files among ``paths`` that this process holds open."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        pytest.skip("needs /proc/self/fd to list open files")
    targets = {str(p.resolve()) for p in paths}
    hits = []
    for fd in fd_dir.iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link in targets:
            hits.append(link)
    return hits


# ---------------------------------------------------------------------------
# Real data: six WFDE5 files, UK and Ireland, January 2017, hourly
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wfde5_cube(wfde5_dir: Path) -> Iterator[xr.Dataset]:
    """The whole WFDE5 folder as one cube, opened once."""
    cube = open_climate_cube(wfde5_dir)
    yield cube
    cube.close()


@pytest.fixture(scope="module")
def wfde5_values(wfde5_cube: xr.Dataset) -> xr.Dataset:
    """The WFDE5 cube read into memory (10 MB)."""
    return wfde5_cube.compute()


def test_real_cube_has_six_fields_in_cube_shape(wfde5_cube: xr.Dataset) -> None:
    # Six fields, each on (time, lat, lon) with the README's sizes.
    assert set(wfde5_cube.data_vars) == set(WFDE5_UNITS)
    for name in WFDE5_UNITS:
        assert wfde5_cube[name].dims == ("time", "lat", "lon")
    assert tuple(wfde5_cube.sizes[d] for d in ("time", "lat", "lon")) == (744, 20, 28)

    # Axes increasing, lon in -180..180, on the README's 0.5 degree grid.
    lat, lon = wfde5_cube["lat"].values, wfde5_cube["lon"].values
    assert np.all(np.diff(lat) > 0) and np.all(np.diff(lon) > 0)
    assert (lat[0], lat[-1]) == (50.25, 59.75)
    assert (lon[0], lon[-1]) == (-10.75, 2.75)
    assert np.allclose(np.diff(lat), 0.5) and np.allclose(np.diff(lon), 0.5)

    # Hourly January 2017, as datetime64[ns].
    time = wfde5_cube.indexes["time"]
    assert time.dtype == np.dtype("datetime64[ns]")
    assert time[0] == pd.Timestamp("2017-01-01T00:00")
    assert time[-1] == pd.Timestamp("2017-01-31T23:00")
    assert (np.diff(time.values) == np.timedelta64(1, "h")).all()


def test_real_cube_is_lazy(wfde5_cube: xr.Dataset) -> None:
    # Values stay on disk, in dask arrays, until computed.
    dask_array = pytest.importorskip("dask.array")
    for name in wfde5_cube.data_vars:
        assert isinstance(wfde5_cube[name].data, dask_array.Array)


@pytest.mark.parametrize(("name", "units"), sorted(WFDE5_UNITS.items()))
def test_real_units_and_cf_attributes(
    wfde5_cube: xr.Dataset, name: str, units: str
) -> None:
    # Units as the README lists them; the file's standard_name survives.
    field = wfde5_cube[name]
    assert field.attrs["units"] == units
    assert field.attrs["standard_name"]
    assert wfde5_cube["lat"].attrs["units"] == "degrees_north"
    assert wfde5_cube["lon"].attrs["units"] == "degrees_east"


def test_real_sea_share(wfde5_cube: xr.Dataset) -> None:
    summary = describe_cube(wfde5_cube)

    # The README gives 55.4 % sea, rounded to 0.1 %; the tolerance covers
    # that rounding only. Exactly: 310 sea cells of 20 x 28 = 560.
    for field in summary.variables:
        assert field.missing_share == pytest.approx(0.554, abs=0.0005)
        assert field.empty_cell_share == pytest.approx(310 / 560)

    # As many missing values as empty cells: land has a value every hour.
    assert all(f.missing_share == f.empty_cell_share for f in summary.variables)


def test_real_describe_cube(wfde5_cube: xr.Dataset) -> None:
    summary = describe_cube(wfde5_cube)
    assert isinstance(summary, CubeSummary)

    # Grid: shape, spacing and extent.
    assert summary.shape == (744, 20, 28)
    assert summary.lat_step == pytest.approx(0.5)
    assert summary.lon_step == pytest.approx(0.5)
    assert summary.lat_range == (50.25, 59.75)
    assert summary.lon_range == (-10.75, 2.75)

    # Period and step.
    assert summary.start == pd.Timestamp("2017-01-01T00:00")
    assert summary.end == pd.Timestamp("2017-01-31T23:00")
    assert summary.step == pd.Timedelta(hours=1)
    assert summary.frequency == "h"

    # Fields with their units and long names, where the file gives one.
    by_name = {f.name: f for f in summary.variables}
    assert {n: f.units for n, f in by_name.items()} == WFDE5_UNITS
    assert by_name["Tair"].long_name == "Near-Surface Air Temperature"

    # The dict form goes to JSON as it is.
    as_dict = summary.to_dict()
    assert json.loads(json.dumps(as_dict))["start"] == "2017-01-01T00:00:00"
    assert len(as_dict["variables"]) == 6


@pytest.mark.parametrize(("name", "bounds"), sorted(WFDE5_RANGES.items()))
def test_real_values_plausible(
    wfde5_values: xr.Dataset, name: str, bounds: tuple[float, float]
) -> None:
    # Land values inside loose physical bounds: fill values (1e20) are gone.
    values = wfde5_values[name].values
    low, high = bounds
    assert low <= np.nanmin(values) and np.nanmax(values) <= high

    # Sea is NaN at every hour, land never is: the README's 250 land cells.
    missing = np.isnan(values)
    assert (missing.all(axis=0) == missing.any(axis=0)).all()
    assert (~missing[0]).sum() == 250


def test_real_daily_resample_matches_hand_mean(wfde5_dir: Path) -> None:
    with open_climate_cube(wfde5_dir, resample="1D") as daily:
        # 31 daily steps, labelled at midnight; attributes kept.
        assert daily.sizes["time"] == 31
        assert daily.indexes["time"][0] == pd.Timestamp("2017-01-01")
        assert daily.indexes["time"][-1] == pd.Timestamp("2017-01-31")
        assert daily["Tair"].attrs["units"] == "K"
        assert daily["Tair"].attrs["cell_methods"] == "time: mean"
        assert daily["pr"].attrs["standard_name"] == "precipitation_flux"

        # One land cell (London) on 15 January, from xarray...
        lat, lon = 51.25, -0.25
        got = float(daily["Tair"].sel(time="2017-01-15", lat=lat, lon=lon))

    # ... and by hand from the raw file: the mean of 24 hourly values.
    with netCDF4.Dataset(wfde5_dir / "air_temperature.nc") as nc:
        i = int(np.argmin(np.abs(nc["lat"][:] - lat)))
        j = int(np.argmin(np.abs(nc["lon"][:] - lon)))
        hourly = np.asarray(nc["Tair"][14 * 24 : 15 * 24, i, j], dtype=float)
    assert hourly.size == 24 and np.isfinite(hourly).all()
    assert got == pytest.approx(hourly.mean(), rel=1e-6)


def test_real_subsets(wfde5_dir: Path) -> None:
    # A box over south-east England and two days of two fields.
    with open_climate_cube(
        wfde5_dir,
        variables=["pr", "Tair"],
        bbox=(-5.0, 50.0, 0.0, 55.0),
        period=("2017-01-03", "2017-01-04"),
    ) as cube:
        assert list(cube.data_vars) == ["pr", "Tair"]
        assert cube.sizes["time"] == 48
        assert cube["lat"].values[[0, -1]].tolist() == [50.25, 54.75]
        assert cube["lon"].values[[0, -1]].tolist() == [-4.75, -0.25]

    # Selections that hold nothing say what the cube covers.
    with pytest.raises(DataError, match="holds no cell centre"):
        open_climate_cube(wfde5_dir, bbox=(20.0, 60.0, 30.0, 70.0))
    with pytest.raises(DataError, match="2017-01-01 00:00:00..2017-01-31"):
        open_climate_cube(wfde5_dir, period=("2018-01-01", "2018-02-01"))


def test_real_unknown_variable_lists_fields(wfde5_dir: Path) -> None:
    with pytest.raises(SchemaError, match="unknown variable 'tas'") as info:
        open_climate_cube(wfde5_dir, variables="tas")
    assert all(name in str(info.value) for name in WFDE5_UNITS)


def test_real_daily_cube_writes_back(wfde5_dir: Path, tmp_path: Path) -> None:
    # A resampled cube's encodings still fit a NetCDF file.
    out = tmp_path / "daily.nc"
    with open_climate_cube(wfde5_dir, resample="1D", variables="Tair") as cube:
        cube.to_netcdf(out)
        expected = cube.compute()
    with xr.open_dataset(out) as back:
        xr.testing.assert_allclose(back, expected)
        assert back["Tair"].attrs["cell_methods"] == "time: mean"


# ---------------------------------------------------------------------------
# Synthetic files: coordinates
# ---------------------------------------------------------------------------


def test_lon_0_360_becomes_minus_180_180(tmp_path: Path) -> None:
    # A global ring of 30 degree cells with a cyclic column at 360.
    lon = np.arange(0.0, 361.0, 30.0)
    ds = _field(lon=lon)
    ds["tas"].values[:] = lon  # each column holds its own longitude
    cube = open_climate_cube(_write(ds, tmp_path / "ring.nc"))

    # Increasing in -180..180, the cyclic column kept once.
    out = cube["lon"].values
    assert out.tolist() == np.arange(-150.0, 181.0, 30.0).tolist()
    # Values travel with their longitudes.
    assert float(cube["tas"].sel(lon=-30.0)[0, 0]) == 330.0
    assert float(cube["tas"].sel(lon=180.0)[0, 0]) == 180.0
    assert float(cube["tas"].sel(lon=0.0)[0, 0]) == 0.0
    cube.close()


def test_decreasing_lat_is_sorted(tmp_path: Path) -> None:
    lat = [60.0, 55.0, 50.0]
    ds = _field(lat=lat)
    ds["tas"].values[:] = np.asarray(lat)[None, :, None]
    with open_climate_cube(_write(ds, tmp_path / "north_first.nc")) as cube:
        assert cube["lat"].values.tolist() == [50.0, 55.0, 60.0]
        assert cube["tas"].isel(time=0, lon=0).values.tolist() == [50, 55, 60]


@pytest.mark.parametrize(
    ("time", "lat", "lon", "drop_cf"),
    [
        ("valid_time", "latitude", "longitude", False),
        ("t", "nav_lat", "nav_lon", False),
        ("time", "y", "x", True),
        ("date", "rows", "cols", False),  # found by standard_name only
    ],
)
def test_alternative_coordinate_names(
    tmp_path: Path, time: str, lat: str, lon: str, drop_cf: bool
) -> None:
    # Rename the axes, reorder the dims, and maybe strip the CF attributes.
    ds = _field().rename({"time": time, "lat": lat, "lon": lon})
    ds = ds.transpose(lon, time, lat)
    if drop_cf:
        for name in (time, lat, lon):
            ds[name].attrs = {}
    with open_climate_cube(_write(ds, tmp_path / "renamed.nc")) as cube:
        assert cube["tas"].dims == ("time", "lat", "lon")
        assert cube.sizes == {"time": 6, "lat": 3, "lon": 4}
        expected = _field()["tas"].values
        np.testing.assert_array_equal(cube["tas"].values, expected)


def test_auxiliary_lat_lon_on_projected_dims(tmp_path: Path) -> None:
    # Dims y and x hold metres; lat(y) and lon(x) hold the degrees.
    ds = _field().rename({"lat": "y", "lon": "x"})
    ds = ds.assign_coords(
        y=("y", [0.0, 1e5, 2e5], {"units": "m"}),
        x=("x", [0.0, 1e5, 2e5, 3e5], {"units": "m"}),
        latitude=("y", [50.0, 51.0, 52.0], {"units": "degrees_north"}),
        longitude=("x", [-2.0, -1.0, 0.0, 1.0], {"units": "degrees_east"}),
    )
    with open_climate_cube(_write(ds, tmp_path / "aux.nc")) as cube:
        assert cube["tas"].dims == ("time", "lat", "lon")
        assert cube["lat"].values.tolist() == [50.0, 51.0, 52.0]
        assert set(cube.coords) == {"time", "lat", "lon"}


def test_singleton_extra_dim_is_squeezed(tmp_path: Path) -> None:
    # A 2 m height dim of size one, placed between time and lat.
    ds = _field().expand_dims(height=[2.0], axis=1)
    ds["height"].attrs = {"units": "m", "axis": "Z"}
    with open_climate_cube(_write(ds, tmp_path / "height.nc")) as cube:
        assert cube["tas"].dims == ("time", "lat", "lon")
        assert "height" not in cube.coords and "height" not in cube.dims


def test_long_extra_dim_is_refused(tmp_path: Path) -> None:
    ds = _field().expand_dims(plev=[1000.0, 850.0, 500.0], axis=1)
    path = _write(ds, tmp_path / "levels.nc")
    with pytest.raises(SchemaError, match=r"'tas'.*'plev' \(size 3\)"):
        open_climate_cube(path)

    # The message's way out works: pick a level, then to_cube.
    with xr.open_dataset(path) as raw:
        cube = to_cube(raw.isel(plev=0), source=path.name)
        assert cube["tas"].dims == ("time", "lat", "lon")


def test_noleap_calendar_becomes_datetime64(tmp_path: Path) -> None:
    times = xr.date_range("2001-02-27", periods=4, freq="D", calendar="noleap")
    ds = _field(times=pd.date_range("2001-02-27", periods=4, freq="D"))
    ds = ds.assign_coords(time=times)
    with open_climate_cube(_write(ds, tmp_path / "noleap.nc")) as cube:
        index = cube.indexes["time"]
        assert index.dtype == np.dtype("datetime64[ns]")
        assert index[-1] == pd.Timestamp("2001-03-02")


def test_static_fields_are_skipped_with_warning(tmp_path: Path) -> None:
    ds = _field()
    ds["orog"] = (("lat", "lon"), np.ones((3, 4)), {"units": "m"})
    path = _write(ds, tmp_path / "with_orog.nc")
    with pytest.warns(UserWarning, match="orog"):
        cube = open_climate_cube(path)
    assert list(cube.data_vars) == ["tas"]
    cube.close()
    with pytest.raises(SchemaError, match="'orog' has no time dimension"):
        open_climate_cube(path, variables=["orog"])

    # to_cube skips them the same way.
    with pytest.warns(UserWarning, match="orog"):
        assert list(to_cube(ds).data_vars) == ["tas"]


def test_missing_latitude_is_named(tmp_path: Path) -> None:
    ds = xr.Dataset(
        {"tas": (("time", "row", "col"), np.zeros((2, 2, 2)))},
        coords={"time": pd.date_range("2017-01-01", periods=2, freq="h")},
    )
    with pytest.raises(SchemaError, match="no latitude coordinate"):
        open_climate_cube(_write(ds, tmp_path / "no_lat.nc"))


def test_era5_style_layout_in_memory() -> None:
    # ERA5 from the CDS: valid_time, latitude north first, longitude
    # 0..360, a scalar forecast time called "time" and per-step labels.
    times = pd.date_range("2020-01-01", periods=3, freq="h")
    ds = xr.Dataset(
        {
            "t2m": (
                ("valid_time", "latitude", "longitude"),
                np.arange(60.0).reshape(3, 4, 5),
                {"units": "K", "grid_mapping": "crs"},
            ),
            "crs": ((), 0),
        },
        coords={
            "valid_time": ("valid_time", times, {"standard_name": "time"}),
            "latitude": ("latitude", [60.0, 59.75, 59.5, 59.25]),
            "longitude": ("longitude", [0.0, 90.0, 180.0, 270.0, 359.75]),
            "expver": ("valid_time", ["0001"] * 3),
            "time": (
                (),
                np.datetime64("2020-01-01", "ns"),
                {"standard_name": "forecast_reference_time"},
            ),
        },
    )
    attrs_before = {k: dict(v.attrs) for k, v in ds.variables.items()}
    cube = to_cube(ds)

    # Cube shape and order, and nothing left of the extras.
    assert set(cube.variables) == {"t2m", "time", "lat", "lon"}
    assert cube["lat"].values.tolist() == [59.25, 59.5, 59.75, 60.0]
    assert cube["lon"].values.tolist() == [-90.0, -0.25, 0.0, 90.0, 180.0]
    assert cube.indexes["time"].equals(times)
    assert "grid_mapping" not in cube["t2m"].attrs
    # The value at 60 N, 270 E is first-step row 0, column 3.
    assert float(cube["t2m"].sel(lat=60.0, lon=-90.0)[0]) == 3.0

    # The input Dataset is left as it was.
    assert attrs_before == {k: dict(v.attrs) for k, v in ds.variables.items()}


@st.composite
def _ring(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes somewhere in 0..360 and latitudes in either order."""
    step = draw(st.sampled_from([0.25, 0.5, 2.5, 10.0, 30.0, 45.0]))
    count = draw(st.integers(1, int(360 / step) + 1))
    start = draw(st.integers(0, int((360 - step * (count - 1)) / step)))
    lon = (start + np.arange(count)) * step
    lat = np.linspace(-80.0, 80.0, draw(st.integers(1, 5)))
    return lon, (lat[::-1] if draw(st.booleans()) else lat)


@settings(max_examples=40, deadline=None)
@given(_ring())
def test_to_cube_orders_any_grid(grid: tuple[np.ndarray, np.ndarray]) -> None:
    # Each cell holds its longitude (mod 360) plus 1000 x its latitude.
    lon, lat = grid
    values = (lon % 360)[None, None, :] + 1000 * lat[None, :, None]
    ds = _field(lat=lat, lon=lon, times=pd.date_range("2017", periods=1))
    ds["tas"] = (("time", "lat", "lon"), values)
    cube = to_cube(ds)

    # Axes increasing and in range; the cyclic duplicate dropped.
    out_lon, out_lat = cube["lon"].values, cube["lat"].values
    assert np.all(np.diff(out_lon) > 0) and np.all(np.diff(out_lat) > 0)
    assert out_lon.min() >= -180 and out_lon.max() <= 180
    assert out_lon.size == np.unique(lon % 360).size

    # Every value still sits at its own longitude and latitude.
    expected = (out_lon % 360)[None, None, :] + 1000 * out_lat[None, :, None]
    np.testing.assert_allclose(cube["tas"].values, expected, atol=1e-9)


# ---------------------------------------------------------------------------
# Synthetic files: joining several
# ---------------------------------------------------------------------------


def test_fields_from_several_files_are_merged(tmp_path: Path) -> None:
    _write(_field("tas"), tmp_path / "tas.nc")
    _write(_field("pr", units="kg m-2 s-1", seed=1), tmp_path / "pr.nc")
    with open_climate_cube(tmp_path / "*.nc", variables=["tas", "pr"]) as cube:
        assert list(cube.data_vars) == ["tas", "pr"]
        assert cube["pr"].attrs["units"] == "kg m-2 s-1"
        assert cube.attrs["origin"] == "pr.nc; tas.nc"


def test_one_field_split_in_time_is_joined(tmp_path: Path) -> None:
    # February first on the list: files are put in time order.
    jan = pd.date_range("2017-01-31T21:00", periods=3, freq="h")
    feb = pd.date_range("2017-02-01T00:00", periods=3, freq="h")
    paths = [
        _write(_field(times=feb), tmp_path / "tas_02.nc"),
        _write(_field(times=jan), tmp_path / "tas_01.nc"),
    ]
    with open_climate_cube(paths) as cube:
        assert cube.indexes["time"].equals(jan.append(feb))


def test_overlapping_files_of_one_field_are_refused(tmp_path: Path) -> None:
    times = pd.date_range("2017-01-01", periods=6, freq="h")
    _write(_field(times=times), tmp_path / "a.nc")
    later = pd.date_range("2017-01-01T03:00", periods=6, freq="h")
    _write(_field(times=later), tmp_path / "b.nc")
    with pytest.raises(DataError, match="'tas' is in both a.nc .* and b.nc"):
        open_climate_cube(tmp_path)


def test_mismatched_grids_are_refused(tmp_path: Path) -> None:
    _write(_field("tas"), tmp_path / "tas.nc")
    _write(_field("pr", lat=(40.0, 41.0, 42.0)), tmp_path / "pr.nc")
    with pytest.raises(DataError, match="different grids") as info:
        open_climate_cube(tmp_path)
    assert "tas.nc" in str(info.value) and "pr.nc" in str(info.value)
    assert "Regrid" in str(info.value)


def test_grids_equal_within_tolerance_are_merged(tmp_path: Path) -> None:
    # Latitudes stored in float32 in one file differ by about 1e-6 deg;
    # the cube takes the first file's.
    first = _write(_field("tas", lat=(50.1, 51.1, 52.1)), tmp_path / "tas.nc")
    pr = _field("pr", lat=(50.1, 51.1, 52.1))
    pr["lat"].encoding["dtype"] = "float32"
    second = _write(pr, tmp_path / "pr.nc")
    with open_climate_cube([first, second]) as cube:
        assert cube.sizes["lat"] == 3
        assert cube["lat"].values.tolist() == [50.1, 51.1, 52.1]


def test_fields_without_common_times_are_refused(tmp_path: Path) -> None:
    _write(_field("tas"), tmp_path / "tas.nc")
    later = pd.date_range("2018-01-01", periods=6, freq="h")
    _write(_field("pr", times=later), tmp_path / "pr.nc")
    with pytest.raises(DataError, match="no time in common"):
        open_climate_cube(tmp_path)


def test_fields_with_partial_overlap_keep_common_period(tmp_path: Path) -> None:
    _write(_field("tas"), tmp_path / "tas.nc")
    later = pd.date_range("2017-01-01T03:00", periods=6, freq="h")
    _write(_field("pr", times=later), tmp_path / "pr.nc")
    with pytest.warns(UserWarning, match="keeping the 3 common steps"):
        cube = open_climate_cube(tmp_path)
    assert cube.sizes["time"] == 3
    cube.close()


def test_fields_with_different_steps_are_refused(tmp_path: Path) -> None:
    _write(_field("tas"), tmp_path / "tas.nc")
    daily = pd.date_range("2017-01-01", periods=6, freq="D")
    _write(_field("pr", times=daily), tmp_path / "pr.nc")
    with pytest.raises(DataError, match="different time steps"):
        open_climate_cube(tmp_path)


def test_unknown_variable_lists_available_names(tmp_path: Path) -> None:
    _write(_field("tas"), tmp_path / "tas.nc")
    _write(_field("pr"), tmp_path / "pr.nc")
    with pytest.raises(SchemaError, match=r"unknown variable 'huss'.*pr, tas"):
        open_climate_cube(tmp_path, variables=["tas", "huss"])


# ---------------------------------------------------------------------------
# Synthetic files: broken input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["NETCDF4", "NETCDF4_CLASSIC", "NETCDF3_64BIT"])
@pytest.mark.parametrize("keep", [0.5, 0.95, 6])
def test_truncated_file_is_named(tmp_path: Path, fmt: str, keep: float) -> None:
    # Write a real file, then keep only its first bytes.
    times = pd.date_range("2017", periods=50, freq="h")
    path = _write(_field(times=times), tmp_path / "cut.nc", fmt)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    with pytest.raises(FileFormatError, match="cut.nc is truncated") as info:
        open_climate_cube(path)
    assert "download or copy the file again" in str(info.value)


def test_text_file_named_nc_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.nc"
    path.write_text("this is not a NetCDF file\n")
    with pytest.raises(FileFormatError, match="fake.nc is not a NetCDF file"):
        open_climate_cube(path)


def test_html_error_page_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "page.nc"
    path.write_text("<!DOCTYPE html><html>401 Unauthorized</html>")
    with pytest.raises(FileFormatError, match="HTML or XML"):
        open_climate_cube(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.nc"
    path.touch()
    with pytest.raises(FileFormatError, match="empty.nc is empty"):
        open_climate_cube(path)


def test_corrupt_header_is_refused(tmp_path: Path) -> None:
    # A valid signature followed by noise: the library cannot read it.
    path = _write(_field(), tmp_path / "noise.nc")
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8)
    data[100:400] = noise.tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="noise.nc"):
        open_climate_cube(path).load()


def test_missing_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="nowhere.nc does not exist"):
        open_climate_cube(tmp_path / "nowhere.nc")
    with pytest.raises(FileFormatError, match="holds no NetCDF file"):
        open_climate_cube(tmp_path)
    with pytest.raises(FileFormatError, match="no file matches"):
        open_climate_cube(str(tmp_path / "*.nc"))


def test_files_are_closed(tmp_path: Path) -> None:
    paths = [_write(_field("tas"), tmp_path / "tas.nc")]
    paths.append(_write(_field("pr"), tmp_path / "pr.nc"))

    # Open while the cube is in use; closed with it.
    with open_climate_cube(paths) as cube:
        cube.load()
        assert _open_descriptors(paths)
    assert not _open_descriptors(paths)

    # Closed too when a later file is broken.
    bad = tmp_path / "zz_bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(FileFormatError):
        open_climate_cube(tmp_path)
    assert not _open_descriptors(paths)

    # And when files clash after opening.
    bad.unlink()
    _write(_field("huss", lat=(0.0, 1.0, 2.0)), tmp_path / "zz_grid.nc")
    with pytest.raises(DataError, match="different grids"):
        open_climate_cube(tmp_path)
    assert not _open_descriptors(paths)


# ---------------------------------------------------------------------------
# Synthetic files: selecting and resampling
# ---------------------------------------------------------------------------


def test_upsampling_is_refused(tmp_path: Path) -> None:
    daily = pd.date_range("2017-01-01", periods=6, freq="D")
    path = _write(_field(times=daily), tmp_path / "daily.nc")
    with pytest.raises(DataError, match="finer than the data's step"):
        open_climate_cube(path, resample="1h")


def test_same_step_resample_is_a_no_op(tmp_path: Path) -> None:
    path = _write(_field(), tmp_path / "hourly.nc")
    with open_climate_cube(path, resample="1h") as cube:
        assert cube.sizes["time"] == 6
        assert "cell_methods" not in cube["tas"].attrs


def test_bad_resample_frequency_is_refused(tmp_path: Path) -> None:
    path = _write(_field(), tmp_path / "hourly.nc")
    with pytest.raises(DataError, match="not a pandas frequency"):
        open_climate_cube(path, resample="fortnightly")


def test_resample_mean_and_cell_methods(tmp_path: Path) -> None:
    # Twelve hours, two six-hour means; an existing cell method is kept.
    ds = _field(times=pd.date_range("2017-01-01", periods=12, freq="h"))
    ds["tas"].attrs["cell_methods"] = "area: mean"
    ds["tas"].values[:6, 0, 0] = [1, 2, 3, 4, 5, np.nan]
    path = _write(ds, tmp_path / "hourly.nc")
    with open_climate_cube(path, resample="6h") as cube:
        assert cube.sizes["time"] == 2
        assert cube["tas"].attrs["cell_methods"] == "area: mean time: mean"
        assert cube["tas"].attrs["units"] == "K"
        # Missing hours are skipped: (1 + 2 + 3 + 4 + 5) / 5.
        assert float(cube["tas"][0, 0, 0]) == pytest.approx(3.0)


def test_amounts_warn_when_averaged(tmp_path: Path) -> None:
    ds = _field("tp", units="kg m-2")
    ds["tp"].attrs["standard_name"] = "precipitation_amount"
    path = _write(ds, tmp_path / "tp.nc")
    with pytest.warns(UserWarning, match="averaged, not summed"):
        open_climate_cube(path, resample="3h").close()


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ((1.0, 50.0, -1.0, 52.0), "east of lon_max"),
        ((-1.0, 52.0, 1.0, 50.0), "latitudes must satisfy"),
        ((-1.0, 50.0, 1.0), "not four numbers"),
        ((-200.0, 50.0, 1.0, 52.0), "-180..180"),
    ],
)
def test_bad_bbox_is_refused(
    tmp_path: Path, bbox: tuple[float, ...], message: str
) -> None:
    path = _write(_field(), tmp_path / "tas.nc")
    with pytest.raises(DataError, match=message):
        open_climate_cube(path, bbox=bbox)  # type: ignore[arg-type]


def test_bbox_in_0_360_is_converted(tmp_path: Path) -> None:
    path = _write(_field(), tmp_path / "tas.nc")
    with open_climate_cube(path, bbox=(358.0, 50.0, 359.0, 51.0)) as cube:
        assert cube["lon"].values.tolist() == [-2.0, -1.0]
        assert cube["lat"].values.tolist() == [50.0, 51.0]


def test_bad_period_is_refused(tmp_path: Path) -> None:
    path = _write(_field(), tmp_path / "tas.nc")
    with pytest.raises(DataError, match="ends before it starts"):
        open_climate_cube(path, period=("2017-02-01", "2017-01-01"))
    with pytest.raises(DataError, match="not \\(start, end\\) times"):
        open_climate_cube(path, period=("soon", None))
    with open_climate_cube(path, period=("2017-01-01T02:00", None)) as cube:
        assert cube.sizes["time"] == 4


def test_describe_cube_refuses_other_datasets() -> None:
    with pytest.raises(SchemaError, match="not a climate cube"):
        describe_cube(xr.Dataset({"a": ("x", [1.0])}))


def test_describe_cube_without_counting(tmp_path: Path) -> None:
    path = _write(_field(), tmp_path / "tas.nc")
    with open_climate_cube(path) as cube:
        summary = describe_cube(cube, missing=False)
    assert summary.variables[0].missing_share is None
    assert summary.step == pd.Timedelta("1h")
