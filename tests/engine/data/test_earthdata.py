"""Tests of the NASA Earthdata fetchers, with a stub client and local files.

No test touches the network: the stub client serves a small synthetic
BedMachine file and radar CSV files from ``tmp_path``, and every socket
connection outside the machine is refused.
"""

from __future__ import annotations

import io
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
import xarray as xr
from pyproj import Transformer

from engine.data import earthdata as ed
from engine.data.errors import (
    DataNotFoundError,
    EarthdataLoginError,
    RegionError,
    SchemaError,
)

SPACING = 150.0
X0 = 291_025.0  # centre of the first column
Y0 = -2_551_025.0  # centre of the first (northern) row
NX, NY = 240, 220
HELHEIM = (300_000.0, -2_580_000.0, 320_000.0, -2_560_000.0)
RADAR_NAMES = (
    "IRMCR2_20120402_01.csv",  # crosses Helheim
    "IRMCR2_20130411_03.csv",  # in the lon/lat box, outside the region
    "IRMCR2_20140501_02.csv",  # no footprint in its record
)
TO_LONLAT = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True)


# ----------------------------------------------------------------------------
# Fixtures: no network, a synthetic BedMachine file, a stub client
# ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection and name look-up that leaves the machine."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo
    local = ("127.0.0.1", "::1", "localhost")

    def connect(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in local:
            raise OSError(f"network access blocked in tests: {address!r}")
        return real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in local and host is not None:
            raise OSError(f"name look-up blocked in tests: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    x = X0 + SPACING * np.arange(NX)
    y = Y0 - SPACING * np.arange(NY)  # decreasing: row 0 is the north edge
    return x, y


@pytest.fixture
def bedmachine_file(tmp_path: Path) -> Path:
    """A small BedMachine-like NetCDF: schema, encodings and chunking."""
    x, y = _grid()
    rows, cols = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
    bed = (cols + 1000.0 * rows).astype("float32")  # value encodes its cell
    bed[5, 7] = np.nan  # written as the -9999 fill value
    surface = (bed + 500.0).astype("float32")
    surface[0, 0] = np.nan
    mapping_attrs = {
        "grid_mapping_name": "polar_stereographic",
        "latitude_of_projection_origin": 90.0,
        "standard_parallel": 70.0,
        "straight_vertical_longitude_from_pole": -45.0,
    }

    def grid(values: np.ndarray, units: str | None = None) -> tuple[Any, ...]:
        attrs = {"grid_mapping": "mapping"}
        if units:
            attrs["units"] = units
        return (("y", "x"), values, attrs)

    ds = xr.Dataset(
        {
            "mapping": ((), np.array(b"", dtype="S1"), mapping_attrs),
            "mask": grid((rows % 5).astype("int8")),
            "surface": grid(surface, "meters"),
            "thickness": grid(np.full((NY, NX), 800.0, dtype="float32"), "meters"),
            "bed": grid(bed, "meters"),
            "errbed": grid(((rows + cols) % 300).astype("float32"), "meters"),
            "source": grid((cols % 10).astype("int8")),
            "geoid": grid((rows % 60).astype("int16"), "meters"),
        },
        coords={
            "x": ("x", x.astype("int32"), {"units": "meter"}),
            "y": ("y", y.astype("int32"), {"units": "meter"}),
        },
        attrs={"Title": "BedMachine Greenland", "version": "synthetic"},
    )
    chunked = {"chunksizes": (20, 20), "zlib": False}
    encoding = {name: dict(chunked) for name in ds.data_vars if name != "mapping"}
    encoding["bed"].update(_FillValue=np.float32(-9999.0))
    encoding["errbed"].update(dtype="int16", _FillValue=np.int16(-9999))
    encoding["surface"].update(_FillValue=np.float32(np.nan))
    path = tmp_path / "BedMachineGreenland-v6.nc"
    ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return path


class CountingReader(io.RawIOBase):
    """A read-only binary file that counts the bytes read from it."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.name = str(path)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._file.readinto(buffer)
        self.bytes_read += count or 0
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


class StubGranule(dict):
    """A granule as earthaccess returns it: a UMM record and data links."""

    def __init__(self, links: Sequence[str], umm: dict[str, Any] | None = None):
        super().__init__(umm=umm or {})
        self._links = list(links)

    def data_links(self, access: str | None = None) -> list[str]:
        return list(self._links)


class StubClient:
    """Serves local files in place of NASA Earthdata and records every call."""

    def __init__(
        self,
        granules: Sequence[StubGranule],
        files: dict[str, Path],
        *,
        credentials: Sequence[str] = ("environment",),
    ) -> None:
        self.granules = list(granules)
        self.files = files
        self.credentials = set(credentials)
        self.logins: list[str] = []
        self.searches: list[dict[str, Any]] = []
        self.opened: list[CountingReader] = []
        self.downloaded: list[str] = []

    def login(self, strategy: str) -> bool:
        self.logins.append(strategy)
        return strategy in self.credentials

    def search_data(self, **kwargs: Any) -> list[StubGranule]:
        self.searches.append(kwargs)
        return self.granules

    def open(self, granules: Sequence[StubGranule]) -> list[CountingReader]:
        handles = [
            CountingReader(self.files[link.rsplit("/", 1)[-1]])
            for granule in granules
            for link in granule.data_links()
        ]
        self.opened.extend(handles)
        return handles

    def download(self, items: Sequence[str], local_path: Path) -> list[Path]:
        paths = []
        for link in items:
            name = link.rsplit("/", 1)[-1]
            self.downloaded.append(name)
            paths.append(Path(shutil.copy(self.files[name], Path(local_path) / name)))
        return paths


def _bedmachine_client(path: Path, **kwargs: Any) -> StubClient:
    link = f"https://example.nsidc.test/IDBMG4/6/{path.name}"
    umm = {"GranuleUR": path.name, "CollectionReference": {"Version": "6"}}
    return StubClient([StubGranule([link], umm)], {path.name: path}, **kwargs)


# ----------------------------------------------------------------------------
# BedMachine
# ----------------------------------------------------------------------------


def test_crop_keeps_the_cells_whose_centres_are_in_the_region(
    bedmachine_file: Path, tmp_path: Path
) -> None:
    # Bounds fall between cell centres on every side
    bounds = (
        X0 + 10.3 * SPACING,
        Y0 - 40.6 * SPACING,
        X0 + 30.5 * SPACING,
        Y0 - 20.2 * SPACING,
    )
    client = _bedmachine_client(bedmachine_file)

    path = ed.fetch_bedmachine(bounds, client=client, cache_dir=tmp_path / "cache")

    assert path.parent == tmp_path / "cache" / "bedmachine"
    with xr.open_dataset(path, engine="h5netcdf") as crop:
        assert crop["bed"].dims == ("y", "x")
        np.testing.assert_array_equal(crop["x"], X0 + SPACING * np.arange(11, 31))
        np.testing.assert_array_equal(crop["y"], Y0 - SPACING * np.arange(21, 41))
        assert np.all(np.diff(crop["y"].values) < 0)
        rows, cols = np.meshgrid(np.arange(21, 41), np.arange(11, 31), indexing="ij")
        np.testing.assert_array_equal(crop["bed"].values, cols + 1000.0 * rows)
        np.testing.assert_array_equal(crop["geoid"].values, rows % 60)
        np.testing.assert_allclose(crop.attrs["crop_bounds_epsg3413"], bounds)
        assert crop.attrs["Title"] == "BedMachine Greenland"
    assert client.searches == [{"short_name": "IDBMG4"}]
    assert all(handle.closed for handle in client.opened)


def test_only_the_region_is_read_and_written(
    bedmachine_file: Path, tmp_path: Path
) -> None:
    client = _bedmachine_client(bedmachine_file)

    path = ed.fetch_bedmachine(HELHEIM, client=client, cache_dir=tmp_path)

    with xr.open_dataset(path, engine="h5netcdf") as crop:
        assert dict(crop.sizes) == {"y": 134, "x": 134}
        assert set(crop.data_vars) == {*ed.BEDMACHINE_VARIABLES, "mapping"}
        assert crop["x"].min() >= HELHEIM[0] and crop["x"].max() <= HELHEIM[2]
        assert crop["y"].min() >= HELHEIM[1] and crop["y"].max() <= HELHEIM[3]
    (remote,) = client.opened
    size = bedmachine_file.stat().st_size
    assert remote.bytes_read < 0.5 * size  # lazily: not the whole file
    assert path.stat().st_size < size


def test_crop_keeps_types_fill_values_and_nodata(
    bedmachine_file: Path, tmp_path: Path
) -> None:
    bounds = (X0, Y0 - 10 * SPACING, X0 + 10 * SPACING, Y0)  # the north-west corner
    client = _bedmachine_client(bedmachine_file)

    path = ed.fetch_bedmachine(bounds, client=client, cache_dir=tmp_path)

    # A small corner reads a small part of the remote file
    assert client.opened[0].bytes_read < 0.15 * bedmachine_file.stat().st_size

    with xr.open_dataset(path, engine="h5netcdf") as crop:
        assert np.isnan(crop["bed"].values[5, 7])
        assert np.isnan(crop["surface"].values[0, 0])
        assert crop["bed"].encoding["_FillValue"] == -9999
        assert crop["errbed"].encoding["dtype"] == np.dtype("int16")
        assert crop["mask"].dtype == np.int8
        assert crop["bed"].attrs["grid_mapping"] == "mapping"
        assert crop["mapping"].attrs["grid_mapping_name"] == "polar_stereographic"
    with xr.open_dataset(path, engine="h5netcdf", mask_and_scale=False) as raw:
        assert raw["bed"].values[5, 7] == -9999


def test_the_crop_is_written_atomically(
    bedmachine_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_to_netcdf = xr.Dataset.to_netcdf

    def fail_halfway(self: xr.Dataset, target: Any, *args: Any, **kwargs: Any) -> Any:
        Path(target).write_bytes(b"\x89HDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", fail_halfway)

    with pytest.raises(OSError, match="disk full"):
        ed.fetch_bedmachine(
            HELHEIM, client=_bedmachine_client(bedmachine_file), cache_dir=tmp_path
        )

    assert list((tmp_path / "bedmachine").iterdir()) == []
    monkeypatch.setattr(xr.Dataset, "to_netcdf", real_to_netcdf)
    path = ed.fetch_bedmachine(
        HELHEIM, client=_bedmachine_client(bedmachine_file), cache_dir=tmp_path
    )
    assert [p.name for p in (tmp_path / "bedmachine").iterdir()] == [path.name]


def test_a_cached_crop_is_reused_without_logging_in(
    bedmachine_file: Path, tmp_path: Path
) -> None:
    first = ed.fetch_bedmachine(
        HELHEIM, client=_bedmachine_client(bedmachine_file), cache_dir=tmp_path
    )
    offline = _bedmachine_client(bedmachine_file, credentials=())

    again = ed.fetch_bedmachine(HELHEIM, client=offline, cache_dir=tmp_path)

    assert again == first
    assert offline.logins == [] and offline.searches == []


def test_the_newest_netcdf_granule_is_opened(
    bedmachine_file: Path, tmp_path: Path
) -> None:
    old = StubGranule(
        ["https://example.nsidc.test/IDBMG4/5/old.nc"],
        {"CollectionReference": {"Version": "5"}},
    )
    new = StubGranule(
        [
            "https://example.nsidc.test/IDBMG4/6/readme.pdf",
            f"https://example.nsidc.test/IDBMG4/6/{bedmachine_file.name}",
        ],
        {"CollectionReference": {"Version": "6"}},
    )
    readme = tmp_path / "readme.pdf"
    readme.write_bytes(b"%PDF-1.4 user guide")
    files = {bedmachine_file.name: bedmachine_file, "readme.pdf": readme}
    stub = StubClient([old, new], files)

    ed.fetch_bedmachine(HELHEIM, client=stub, cache_dir=tmp_path, version="6")

    assert stub.searches == [{"short_name": "IDBMG4", "version": "6"}]
    assert [Path(h.name).name for h in stub.opened] == [
        "readme.pdf",
        bedmachine_file.name,
    ]
    assert stub.opened[0].bytes_read == 0
    assert all(handle.closed for handle in stub.opened)


@pytest.mark.parametrize(
    ("region", "fragment"),
    [
        ((320_000, -2_560_000, 300_000, -2_580_000), "is empty"),
        ((-38.4, 66.3, -37.9, 66.5), "look like degrees"),
        ((5_000_000, 0, 5_100_000, 100_000), "outside Greenland"),
        ("Helheim", "is not a box"),
        ((0, float("nan"), 1, 2), "finite"),
    ],
)
def test_malformed_regions_are_refused(
    region: Any, fragment: str, tmp_path: Path
) -> None:
    stub = StubClient([], {})

    with pytest.raises(RegionError, match=fragment):
        ed.fetch_bedmachine(region, client=stub, cache_dir=tmp_path)

    assert stub.logins == []


def test_a_region_off_the_grid_names_the_grid_extent(
    bedmachine_file: Path, tmp_path: Path
) -> None:
    far = (100_000.0, -2_300_000.0, 120_000.0, -2_280_000.0)

    with pytest.raises(RegionError, match="holds no BedMachine cell"):
        ed.fetch_bedmachine(
            far, client=_bedmachine_client(bedmachine_file), cache_dir=tmp_path
        )

    assert not (tmp_path / "bedmachine").exists() or not any(
        (tmp_path / "bedmachine").iterdir()
    )


def test_crop_refuses_oversized_regions_and_foreign_files(
    bedmachine_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(RegionError, match="more than 100"):
        ed.crop_bedmachine(bedmachine_file, HELHEIM, max_cells=100)

    other = tmp_path / "other.nc"
    foreign = xr.Dataset({"t": (("y", "x"), np.zeros((2, 2)))})
    foreign.to_netcdf(other, engine="h5netcdf")
    with pytest.raises(SchemaError, match="lacks x, y"):
        ed.crop_bedmachine(other, HELHEIM)


def test_no_granule_found_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="no NetCDF granule of IDBMG4"):
        ed.fetch_bedmachine(HELHEIM, client=StubClient([], {}), cache_dir=tmp_path)


# ----------------------------------------------------------------------------
# Login
# ----------------------------------------------------------------------------


def test_login_without_credentials_says_how_to_get_a_free_login(tmp_path: Path) -> None:
    stub = StubClient([], {}, credentials=())

    with pytest.raises(EarthdataLoginError) as raised:
        ed.fetch_bedmachine(HELHEIM, client=stub, cache_dir=tmp_path)

    message = str(raised.value)
    for needle in (
        "https://urs.earthdata.nasa.gov",
        "free",
        "EARTHDATA_USERNAME",
        "EARTHDATA_PASSWORD",
        "~/.netrc",
    ):
        assert needle in message
    assert stub.logins == ["environment", "netrc"]


def test_login_falls_back_to_netrc() -> None:
    stub = StubClient([], {}, credentials=("netrc",))

    ed.login(stub)

    assert stub.logins == ["environment", "netrc"]


def test_the_earthaccess_adapter_reports_missing_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "EARTHDATA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))

    with pytest.raises(EarthdataLoginError, match="urs.earthdata.nasa.gov"):
        ed.login(ed.EarthaccessClient())


# ----------------------------------------------------------------------------
# IceBridge radar
# ----------------------------------------------------------------------------


def _line_umm(points_3413: Sequence[tuple[float, float]]) -> dict[str, Any]:
    xs, ys = zip(*points_3413, strict=True)
    lons, lats = TO_LONLAT.transform(xs, ys)
    points = [
        {"Longitude": float(lon), "Latitude": float(lat)}
        for lon, lat in zip(lons, lats, strict=True)
    ]
    geometry = {"Lines": [{"Points": points}]}
    return {"SpatialExtent": {"HorizontalSpatialDomain": {"Geometry": geometry}}}


@pytest.fixture
def radar_files(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "nsidc"
    folder.mkdir()
    files = {}
    header = "LAT,LON,UTCTIMESOD,THICK,ELEVATION,FRAME,SURFACE,BOTTOM,QUALITY\n"
    for name in RADAR_NAMES:
        files[name] = folder / name
        files[name].write_text(header)
    return files


def _radar_client(files: dict[str, Path], **kwargs: Any) -> StubClient:
    xmin, ymin, xmax, ymax = HELHEIM
    west, south, _, _ = ed.lonlat_bbox(HELHEIM)
    corner = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True).transform(
        west + 0.02, south + 0.02
    )
    assert not shapely.box(*HELHEIM).contains(shapely.Point(corner))
    base = "https://example.nsidc.test/IRMCR2"
    crossing = StubGranule(
        [f"{base}/IRMCR2_20120402_01.csv", f"{base}/IRMCR2_20120402_01.csv.xml"],
        _line_umm([(xmin - 5_000, -2_570_000), (xmax + 5_000, -2_571_000)]),
    )
    outside = StubGranule(  # in the lon/lat box, not in the region
        [f"{base}/IRMCR2_20130411_03.csv"],
        _line_umm([corner, (corner[0] - 3_000, corner[1] - 3_000)]),
    )
    unknown = StubGranule([f"{base}/IRMCR2_20140501_02.csv"])  # no footprint
    return StubClient([crossing, outside, unknown], files, **kwargs)


def test_radar_search_box_encloses_the_reprojected_region(
    radar_files: dict[str, Path], tmp_path: Path
) -> None:
    stub = _radar_client(radar_files)

    period = ("2011-01-01", "2014-12-31")
    ed.fetch_radar(HELHEIM, client=stub, cache_dir=tmp_path, temporal=period)

    (query,) = stub.searches
    assert query["short_name"] == "IRMCR2"
    assert query["temporal"] == period
    west, south, east, north = query["bounding_box"]
    xmin, ymin, xmax, ymax = HELHEIM
    boundary = shapely.segmentize(shapely.box(*HELHEIM).exterior, 10.0)
    edge_x, edge_y = np.asarray(boundary.coords).T
    lons, lats = TO_LONLAT.transform(edge_x, edge_y)
    assert west <= lons.min() and lons.max() <= east
    assert south <= lats.min() and lats.max() <= north
    # Tight: no more than the margin beyond the true extremes
    assert lons.min() - west < 0.02 and east - lons.max() < 0.02
    assert lats.min() - south < 0.02 and north - lats.max() < 0.02
    # The box around Helheim, about 66.3-66.5 N and 37.9-38.4 W
    assert -38.5 < west < east < -37.8 and 66.3 < south < north < 66.6


def test_radar_downloads_only_files_of_flights_crossing_the_region(
    radar_files: dict[str, Path], tmp_path: Path
) -> None:
    stub = _radar_client(radar_files)
    cache = tmp_path / "cache"

    paths = ed.fetch_radar(HELHEIM, client=stub, cache_dir=cache)

    assert [p.name for p in paths] == [RADAR_NAMES[0], RADAR_NAMES[2]]
    assert sorted(stub.downloaded) == [p.name for p in paths]
    assert all(p.parent == cache / "irmcr2" and p.is_file() for p in paths)
    cached = sorted(p.name for p in (cache / "irmcr2").iterdir())
    assert cached == [p.name for p in paths]  # no staging folder left
    assert stub.logins == ["environment"]


def test_radar_files_in_the_cache_are_not_downloaded_again(
    radar_files: dict[str, Path], tmp_path: Path
) -> None:
    stub = _radar_client(radar_files)
    first = ed.fetch_radar(HELHEIM, client=stub, cache_dir=tmp_path)
    offline = _radar_client(radar_files, credentials=())

    again = ed.fetch_radar(HELHEIM, client=offline, cache_dir=tmp_path)

    assert again == first
    assert offline.downloaded == [] and offline.logins == []


def test_radar_download_needs_a_login(
    radar_files: dict[str, Path], tmp_path: Path
) -> None:
    stub = _radar_client(radar_files, credentials=())

    with pytest.raises(EarthdataLoginError, match="EARTHDATA_USERNAME"):
        ed.fetch_radar(HELHEIM, client=stub, cache_dir=tmp_path)

    assert stub.downloaded == []


def test_radar_without_crossing_flights_warns_and_returns_nothing(
    tmp_path: Path,
) -> None:
    stub = StubClient([], {})

    with pytest.warns(UserWarning, match="no IceBridge radar"):
        paths = ed.fetch_radar(HELHEIM, client=stub, cache_dir=tmp_path)

    assert paths == []


def test_radar_refuses_too_many_segments_and_bad_dates(
    radar_files: dict[str, Path], tmp_path: Path
) -> None:
    stub = _radar_client(radar_files)

    with pytest.raises(RegionError, match="more than 1"):
        ed.fetch_radar(HELHEIM, client=stub, cache_dir=tmp_path, max_granules=1)
    for period, fragment in [
        (("spring", "2014"), "not an ISO date"),
        (("2014-01-01", "2012-01-01"), "after it ends"),
        ("2014", "must be \\(start, end\\)"),
    ]:
        with pytest.raises(RegionError, match=fragment):
            ed.fetch_radar(HELHEIM, client=stub, cache_dir=tmp_path, temporal=period)
    assert stub.downloaded == []


def test_a_failed_download_keeps_no_partial_file(
    radar_files: dict[str, Path], tmp_path: Path
) -> None:
    class Failing(StubClient):
        def download(self, items: Sequence[str], local_path: Path) -> list[Path]:
            (Path(local_path) / "IRMCR2_20120402_01.csv").write_text("LAT,LO")
            raise OSError("connection reset")

    base = _radar_client(radar_files)
    stub = Failing(base.granules, radar_files)

    with pytest.raises(DataNotFoundError, match="connection reset"):
        ed.fetch_radar(HELHEIM, client=stub, cache_dir=tmp_path)

    assert list((tmp_path / "irmcr2").iterdir()) == []


def test_a_search_failure_is_a_clear_error(tmp_path: Path) -> None:
    class Down(StubClient):
        def search_data(self, **kwargs: Any) -> list[StubGranule]:
            raise OSError("CMR unreachable")

    with pytest.raises(DataNotFoundError, match="CMR search .* failed"):
        ed.fetch_radar(HELHEIM, client=Down([], {}), cache_dir=tmp_path)
