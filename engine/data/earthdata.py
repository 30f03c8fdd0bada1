"""BedMachine Greenland and IceBridge radar for a region, from NASA Earthdata.

Real users who need a region beyond the demo data sets get it from NSIDC
through the ``earthaccess`` package, with a free NASA Earthdata login:

- :func:`fetch_bedmachine` opens BedMachine Greenland (NSIDC ``IDBMG4``,
  about 2 GB) lazily over HTTPS, reads only the cells of the region and
  writes them, in the BedMachine schema, to a NetCDF file in the cache;
- :func:`fetch_radar` searches the Operation IceBridge MCoRDS L2 ice
  thickness (NSIDC ``IRMCR2``, one CSV file per flight segment) by region
  and time, and downloads only the files whose flights cross the region.

A region is a box ``(xmin, ymin, xmax, ymax)`` in EPSG:3413 metres, or any
object with such a ``bounds`` attribute (a shapely geometry in EPSG:3413).

Every function takes an optional ``client``: an object with the methods
``login``, ``search_data``, ``open`` and ``download`` of
:class:`EarthdataClient`. The default, :class:`EarthaccessClient`, passes
them to ``earthaccess``, which is imported only when first used; tests pass
a stub that serves local files.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xarray as xr

from engine.atomic import atomic_write
from engine.data.errors import (
    DataNotFoundError,
    EarthdataLoginError,
    RegionError,
    SchemaError,
)
from engine.data.registry import get_cache_dir

__all__ = [
    "BEDMACHINE_SHORT_NAME",
    "BEDMACHINE_VARIABLES",
    "EARTHDATA_LOGIN_URL",
    "LOGIN_HELP",
    "RADAR_SHORT_NAME",
    "Bounds",
    "EarthaccessClient",
    "EarthdataClient",
    "crop_bedmachine",
    "fetch_bedmachine",
    "fetch_radar",
    "lonlat_bbox",
    "login",
    "region_bounds",
]

logger = logging.getLogger(__name__)

#: NSIDC short name of BedMachine Greenland.
BEDMACHINE_SHORT_NAME = "IDBMG4"

#: NSIDC short name of IceBridge MCoRDS L2 ice thickness (CSV per segment).
RADAR_SHORT_NAME = "IRMCR2"

#: BedMachine variables kept in a crop (with the grid mapping variable).
BEDMACHINE_VARIABLES = (
    "mask",
    "surface",
    "thickness",
    "bed",
    "errbed",
    "source",
    "geoid",
)

#: Where a free NASA Earthdata login is made.
EARTHDATA_LOGIN_URL = "https://urs.earthdata.nasa.gov"

#: What to do when no Earthdata credentials are found.
LOGIN_HELP = (
    "NASA Earthdata credentials were not found. BedMachine Greenland (NSIDC "
    f"{BEDMACHINE_SHORT_NAME}) and the IceBridge radar thickness (NSIDC "
    f"{RADAR_SHORT_NAME}) need a free NASA Earthdata login: register at "
    f"{EARTHDATA_LOGIN_URL}, then either set the environment variables "
    "EARTHDATA_USERNAME and EARTHDATA_PASSWORD (or EARTHDATA_TOKEN), or add "
    "the line 'machine urs.earthdata.nasa.gov login <user> password "
    "<password>' to ~/.netrc (readable only by you: chmod 600 ~/.netrc)"
)

#: Login strategies tried in turn; never the interactive prompt.
LOGIN_STRATEGIES = ("environment", "netrc")

#: Box around BedMachine Greenland in EPSG:3413 metres, with a margin.
GREENLAND_BOUNDS = (-700_000.0, -3_450_000.0, 900_000.0, -550_000.0)

#: Largest crop, in cells per variable (about 750 x 750 km at 150 m).
MAX_CELLS = 25_000_000

#: Region box ``(xmin, ymin, xmax, ymax)`` in EPSG:3413 metres.
Bounds = tuple[float, float, float, float]

_METADATA_SUFFIXES = (".xml", ".jpg", ".png", ".pdf", ".md5", ".txt")


# ----------------------------------------------------------------------------
# Client
# ----------------------------------------------------------------------------


class EarthdataClient(Protocol):
    """What the fetchers need from NASA Earthdata.

    Granules are whatever ``search_data`` returns; the fetchers only call
    their ``data_links()`` method and read ``granule["umm"]`` (the CMR UMM-G
    record) when it is there.
    """

    def login(self, strategy: str) -> bool:
        """Log in with one strategy; False when it has no credentials."""
        ...

    def search_data(self, **kwargs: Any) -> list[Any]:
        """Search granules (``short_name``, ``bounding_box``, ``temporal``)."""
        ...

    def open(self, granules: Sequence[Any]) -> list[Any]:
        """Open granules as binary file-like objects, lazily."""
        ...

    def download(self, items: Sequence[Any], local_path: Path) -> list[Path]:
        """Download granules or URLs into ``local_path``."""
        ...


class EarthaccessClient:
    """The default client: a thin adapter over the ``earthaccess`` module.

    ``earthaccess`` is imported on the first call, never at import time.
    """

    def login(self, strategy: str) -> bool:
        """Log in with one ``earthaccess`` strategy.

        Parameters
        ----------
        strategy : str
            ``"environment"`` or ``"netrc"``.

        Returns
        -------
        bool
            True when logged in, False when the strategy finds no
            credentials.

        Raises
        ------
        EarthdataLoginError
            When Earthdata Login rejects the credentials or cannot be
            reached.
        """
        import earthaccess
        from earthaccess.exceptions import LoginAttemptFailure, LoginStrategyUnavailable

        try:
            auth = earthaccess.login(strategy=strategy)
        except LoginStrategyUnavailable as err:
            logger.debug("Earthdata login strategy %s unavailable: %s", strategy, err)
            return False
        except LoginAttemptFailure as err:
            raise EarthdataLoginError(
                f"NASA Earthdata Login rejected the credentials from {strategy} "
                f"({err}); check the user name and password at "
                f"{EARTHDATA_LOGIN_URL} and fix EARTHDATA_USERNAME / "
                "EARTHDATA_PASSWORD or ~/.netrc"
            ) from err
        except OSError as err:
            raise EarthdataLoginError(
                f"could not reach NASA Earthdata Login ({err}); check the "
                "internet connection and retry"
            ) from err
        return bool(getattr(auth, "authenticated", False))

    def search_data(self, **kwargs: Any) -> list[Any]:
        """Search granules with ``earthaccess.search_data``."""
        import earthaccess

        return list(earthaccess.search_data(**kwargs))

    def open(self, granules: Sequence[Any]) -> list[Any]:
        """Open granules lazily with ``earthaccess.open`` (HTTPS or S3)."""
        import earthaccess

        return list(earthaccess.open(list(granules), show_progress=False))

    def download(self, items: Sequence[Any], local_path: Path) -> list[Path]:
        """Download granules or URLs with ``earthaccess.download``."""
        import earthaccess
        from earthaccess.exceptions import DownloadFailure, EulaNotAccepted

        try:
            paths = earthaccess.download(
                list(items), local_path=str(local_path), show_progress=False
            )
        except EulaNotAccepted as err:
            raise EarthdataLoginError(
                f"the data set's licence (EULA) has not been accepted ({err}); "
                f"accept it in your profile at {EARTHDATA_LOGIN_URL} and retry"
            ) from err
        except DownloadFailure as err:
            raise DataNotFoundError(
                f"NASA Earthdata download failed ({err}); retry later"
            ) from err
        return [Path(path) for path in paths]


def _client(client: EarthdataClient | None) -> EarthdataClient:
    return client if client is not None else EarthaccessClient()


def login(client: EarthdataClient | None = None) -> None:
    """Log in to NASA Earthdata from the environment or ``~/.netrc``.

    Tries the environment variables ``EARTHDATA_USERNAME`` and
    ``EARTHDATA_PASSWORD`` (or ``EARTHDATA_TOKEN``) first, then
    ``~/.netrc``; never prompts.

    Parameters
    ----------
    client : EarthdataClient, optional
        The client to log in with; :class:`EarthaccessClient` by default.

    Raises
    ------
    EarthdataLoginError
        When no credentials are found (the message says how to get and give
        them) or when they are rejected.
    """
    # Try each strategy that needs no prompt
    active = _client(client)
    for strategy in LOGIN_STRATEGIES:
        if active.login(strategy):
            logger.info("logged in to NASA Earthdata (%s)", strategy)
            return

    # Nothing worked: say how to get a login
    raise EarthdataLoginError(LOGIN_HELP)


# ----------------------------------------------------------------------------
# Regions
# ----------------------------------------------------------------------------


def region_bounds(region: Any) -> Bounds:
    """Check a region and return its box in EPSG:3413 metres.

    Parameters
    ----------
    region : sequence of 4 floats or object with ``bounds``
        ``(xmin, ymin, xmax, ymax)`` in EPSG:3413 metres, or a geometry in
        EPSG:3413 (shapely) whose ``bounds`` are used.

    Returns
    -------
    tuple of float
        ``(xmin, ymin, xmax, ymax)``.

    Raises
    ------
    RegionError
        When the box is malformed, empty, or outside Greenland.
    """
    # Read four finite numbers
    values = getattr(region, "bounds", region)
    try:
        xmin, ymin, xmax, ymax = (float(value) for value in values)
    except (TypeError, ValueError):
        raise RegionError(
            f"region {region!r} is not a box: give (xmin, ymin, xmax, ymax) in "
            "EPSG:3413 metres, or a shapely geometry in EPSG:3413"
        ) from None
    if not all(math.isfinite(value) for value in (xmin, ymin, xmax, ymax)):
        raise RegionError(f"region bounds {values!r} must be finite numbers")

    # The box must have an area and overlap Greenland
    if xmin >= xmax or ymin >= ymax:
        raise RegionError(
            f"region ({xmin}, {ymin}, {xmax}, {ymax}) is empty: give "
            "(xmin, ymin, xmax, ymax) with xmin < xmax and ymin < ymax"
        )
    gxmin, gymin, gxmax, gymax = GREENLAND_BOUNDS
    if xmax < gxmin or xmin > gxmax or ymax < gymin or ymin > gymax:
        hint = (
            " (these look like degrees: convert longitude/latitude to EPSG:3413)"
            if max(abs(xmin), abs(ymin), abs(xmax), abs(ymax)) <= 360
            else ""
        )
        raise RegionError(
            f"region ({xmin:.0f}, {ymin:.0f}, {xmax:.0f}, {ymax:.0f}) is outside "
            f"Greenland, which spans x {gxmin / 1e3:.0f}..{gxmax / 1e3:.0f} km and "
            f"y {gymin / 1e3:.0f}..{gymax / 1e3:.0f} km in EPSG:3413{hint}"
        )

    return xmin, ymin, xmax, ymax


def lonlat_bbox(
    bounds: Bounds, *, densify: int = 101, margin_deg: float = 0.01
) -> Bounds:
    """Longitude/latitude box enclosing an EPSG:3413 box.

    The edges of a polar-stereographic box are curves in longitude and
    latitude, so each edge is sampled at ``densify`` points before the
    extremes are taken, and a small margin is added.

    Parameters
    ----------
    bounds : tuple of float
        ``(xmin, ymin, xmax, ymax)`` in EPSG:3413 metres.
    densify : int, optional
        Points sampled along each edge.
    margin_deg : float, optional
        Degrees added on every side.

    Returns
    -------
    tuple of float
        ``(west, south, east, north)`` in degrees, as CMR's
        ``bounding_box`` takes it.
    """
    from pyproj import Transformer

    # Reproject the densified edges and take the extremes
    transformer = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True)
    west, south, east, north = transformer.transform_bounds(
        *bounds, densify_pts=densify
    )

    # Pad a little, keeping latitudes valid
    return (
        west - margin_deg,
        max(south - margin_deg, -90.0),
        east + margin_deg,
        min(north + margin_deg, 90.0),
    )


# ----------------------------------------------------------------------------
# Granules
# ----------------------------------------------------------------------------


def _data_links(granule: Any) -> list[str]:
    links = getattr(granule, "data_links", None)
    return [str(link) for link in links()] if callable(links) else []


def _umm(granule: Any) -> dict[str, Any]:
    try:
        umm = granule["umm"]
    except (KeyError, TypeError, IndexError):
        return {}
    return umm if isinstance(umm, dict) else {}


def _granule_name(granule: Any) -> str:
    name = _umm(granule).get("GranuleUR")
    if name:
        return str(name)
    links = _data_links(granule)
    return links[0].rsplit("/", 1)[-1] if links else repr(granule)


def _version_key(granule: Any) -> tuple[int, ...]:
    reference = _umm(granule).get("CollectionReference")
    version = str(reference.get("Version", "")) if isinstance(reference, dict) else ""
    digits = [part for part in version.replace("-", ".").split(".") if part.isdigit()]
    return tuple(int(part) for part in digits)


def _footprint(granule: Any) -> Any:
    """The granule's footprint in longitude/latitude (shapely), or None."""
    import shapely

    # Read the UMM-G horizontal geometry, if any
    try:
        geometry = _umm(granule)["SpatialExtent"]["HorizontalSpatialDomain"][
            "Geometry"
        ]
    except (KeyError, TypeError):
        return None

    # Turn each part into a shapely geometry
    def points(items: Iterable[dict[str, Any]]) -> list[tuple[float, float]]:
        return [(float(p["Longitude"]), float(p["Latitude"])) for p in items]

    parts = []
    try:
        for rect in geometry.get("BoundingRectangles", []):
            west = float(rect["WestBoundingCoordinate"])
            east = float(rect["EastBoundingCoordinate"])
            if west > east:
                return None
            parts.append(
                shapely.box(
                    west,
                    float(rect["SouthBoundingCoordinate"]),
                    east,
                    float(rect["NorthBoundingCoordinate"]),
                )
            )
        for polygon in geometry.get("GPolygons", []):
            parts.append(shapely.Polygon(points(polygon["Boundary"]["Points"])))
        for line in geometry.get("Lines", []):
            parts.append(shapely.LineString(points(line["Points"])))
        parts.extend(shapely.Point(xy) for xy in points(geometry.get("Points", [])))
    except (
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
        shapely.errors.GEOSException,
    ):
        return None

    return shapely.union_all(parts) if parts else None


def _crosses(granule: Any, box: Any) -> bool:
    """Whether a granule's footprint crosses an EPSG:3413 box (True if unknown)."""
    import shapely
    from pyproj import Transformer

    # Without a footprint, trust the catalogue's search
    footprint = _footprint(granule)
    if footprint is None or footprint.is_empty:
        return True

    # Reproject the densified footprint and intersect
    transformer = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    projected = shapely.transform(shapely.segmentize(footprint, 0.05), project)
    return bool(projected.intersects(box))


def _search(client: EarthdataClient, what: str, **kwargs: Any) -> list[Any]:
    try:
        return list(client.search_data(**kwargs))
    except OSError as err:
        raise DataNotFoundError(
            f"the NASA CMR search for {what} failed ({err}); check the internet "
            "connection and retry"
        ) from err


# ----------------------------------------------------------------------------
# BedMachine
# ----------------------------------------------------------------------------


def crop_bedmachine(
    source: Any,
    bounds: Bounds,
    *,
    variables: Sequence[str] | None = None,
    max_cells: int = MAX_CELLS,
) -> xr.Dataset:
    """Read the cells of a region from a BedMachine Greenland file.

    The file is opened lazily, so only the blocks holding the region are
    read, which matters when ``source`` is a remote file.

    Parameters
    ----------
    source : str, PathLike or binary file-like
        The BedMachine NetCDF file, local or opened over HTTPS.
    bounds : tuple of float
        ``(xmin, ymin, xmax, ymax)`` in EPSG:3413 metres; the cells whose
        centres lie in the box (edges included) are kept.
    variables : sequence of str, optional
        Variables to keep; :data:`BEDMACHINE_VARIABLES` by default. The grid
        mapping variable they name is kept too.
    max_cells : int, optional
        Largest number of cells accepted.

    Returns
    -------
    xarray.Dataset
        The crop, loaded in memory, in the BedMachine schema and order
        (dims ``y``, ``x``).

    Raises
    ------
    SchemaError
        When the file lacks ``x``, ``y`` or a requested variable.
    RegionError
        When the box holds no cell of the grid, or too many.
    """
    wanted = tuple(variables) if variables is not None else BEDMACHINE_VARIABLES
    xmin, ymin, xmax, ymax = region_bounds(bounds)

    with xr.open_dataset(source, engine="h5netcdf") as full:
        # Check the schema
        missing = [name for name in ("x", "y", *wanted) if name not in full.variables]
        if missing:
            raise SchemaError(
                f"BedMachine file lacks {', '.join(missing)}; is it BedMachine "
                f"Greenland (NSIDC {BEDMACHINE_SHORT_NAME})?"
            )

        # Find the rows and columns whose centres lie in the box
        x = np.asarray(full["x"].values, dtype=float)
        y = np.asarray(full["y"].values, dtype=float)
        cols = np.flatnonzero((x >= xmin) & (x <= xmax))
        rows = np.flatnonzero((y >= ymin) & (y <= ymax))
        if cols.size == 0 or rows.size == 0:
            raise RegionError(
                f"region ({xmin:.0f}, {ymin:.0f}, {xmax:.0f}, {ymax:.0f}) holds "
                f"no BedMachine cell: the grid spans x {x.min():.0f}..{x.max():.0f} "
                f"and y {y.min():.0f}..{y.max():.0f} m (EPSG:3413)"
            )
        if cols[-1] - cols[0] + 1 != cols.size or rows[-1] - rows[0] + 1 != rows.size:
            raise SchemaError("BedMachine x or y coordinates are not monotonic")
        if cols.size * rows.size > max_cells:
            raise RegionError(
                f"region has {rows.size} x {cols.size} cells, more than "
                f"{max_cells}; choose a smaller region"
            )

        # Read only those cells, with the grid mapping variable
        keep = list(wanted)
        for name in wanted:
            mapping = full[name].attrs.get("grid_mapping")
            if mapping in full.variables and mapping not in keep:
                keep.append(mapping)
        window = {"x": slice(cols[0], cols[-1] + 1), "y": slice(rows[0], rows[-1] + 1)}
        crop = full[keep].isel(window).load()

    return crop


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Keep each variable's packing and fill value, compress the grids."""
    keys = ("dtype", "_FillValue", "scale_factor", "add_offset", "char_dim_name")
    encoding = {}
    for name, variable in ds.variables.items():
        kept = {key: variable.encoding[key] for key in keys if key in variable.encoding}
        if variable.ndim >= 2:
            kept.update(zlib=True, complevel=4, shuffle=True)
        encoding[str(name)] = kept
    return encoding


def _write_netcdf_atomic(ds: xr.Dataset, target: Path) -> None:
    """Write to a temporary file beside ``target``, then rename it."""
    atomic_write(
        target,
        lambda temporary: ds.to_netcdf(
            temporary, engine="h5netcdf", encoding=_encoding(ds)
        ),
    )


def _crop_name(
    bounds: Bounds, version: str | None, variables: Sequence[str] | None
) -> str:
    box = "_".join(f"{value:.0f}" for value in bounds)
    subset = "" if variables is None else "_" + "-".join(sorted(variables))
    return f"BedMachineGreenland-{version or 'latest'}_{box}{subset}.nc"


def _file_name(handle: Any) -> str:
    for attribute in ("path", "name", "url"):
        value = getattr(handle, attribute, None)
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
    return ""


def fetch_bedmachine(
    region: Any,
    *,
    client: EarthdataClient | None = None,
    version: str | None = None,
    variables: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    max_cells: int = MAX_CELLS,
) -> Path:
    """Cut a region out of BedMachine Greenland into a NetCDF file in the cache.

    The granule is opened lazily over HTTPS (or S3 inside AWS us-west-2), so
    only the blocks holding the region travel, not the whole 2 GB file. The
    crop keeps the BedMachine schema and is written to a temporary file that
    is renamed into place, so a crop in the cache is always complete.

    Parameters
    ----------
    region : sequence of 4 floats or object with ``bounds``
        ``(xmin, ymin, xmax, ymax)`` in EPSG:3413 metres.
    client : EarthdataClient, optional
        :class:`EarthaccessClient` by default.
    version : str, optional
        Collection version (``"5"``); the newest found by default.
    variables : sequence of str, optional
        Variables to keep; :data:`BEDMACHINE_VARIABLES` by default.
    cache_dir : str or PathLike, optional
        Cache folder; the crop goes to its ``bedmachine/`` sub-folder.
        ``get_cache_dir()`` by default.
    overwrite : bool, optional
        Cut again even when the crop is already in the cache.
    max_cells : int, optional
        Largest number of cells accepted.

    Returns
    -------
    Path
        The NetCDF file of the crop.

    Raises
    ------
    RegionError
        When the region is malformed, outside the grid or too large.
    EarthdataLoginError
        When no Earthdata credentials are found or they are rejected.
    DataNotFoundError
        When the search finds no BedMachine granule or fails.
    """
    # Check the region and reuse a crop made before
    bounds = region_bounds(region)
    root = Path(cache_dir) if cache_dir is not None else get_cache_dir()
    target = root / "bedmachine" / _crop_name(bounds, version, variables)
    if target.is_file() and not overwrite:
        logger.info("BedMachine crop already in the cache: %s", target)
        return target

    # Log in and find the newest NetCDF granule
    active = _client(client)
    login(active)
    query: dict[str, Any] = {"short_name": BEDMACHINE_SHORT_NAME}
    if version is not None:
        query["version"] = version
    what = f"BedMachine Greenland ({BEDMACHINE_SHORT_NAME})"
    granules = _search(active, what, **query)
    candidates = [
        (_version_key(granule), link, granule)
        for granule in granules
        for link in _data_links(granule)
        if link.lower().endswith(".nc")
    ]
    if not candidates:
        raise DataNotFoundError(
            f"NASA CMR lists no NetCDF granule of {BEDMACHINE_SHORT_NAME}"
            f"{f' version {version}' if version else ''}; check the version, or "
            "see https://nsidc.org/data/idbmg4"
        )
    _, link, granule = max(candidates, key=lambda item: (item[0], item[1]))
    logger.info("BedMachine granule: %s", _granule_name(granule))

    # Open it lazily, read the region, write the crop atomically
    try:
        handles = active.open([granule])
    except OSError as err:
        raise DataNotFoundError(
            f"could not open {link} ({err}); check the internet connection and "
            "retry"
        ) from err
    try:
        wanted_name = link.rsplit("/", 1)[-1]
        named = [h for h in handles if _file_name(h).endswith(wanted_name)]
        if not named and len(handles) != 1:
            raise DataNotFoundError(
                f"opening {_granule_name(granule)} gave no file named {wanted_name}"
            )
        crop = crop_bedmachine(
            (named or handles)[0], bounds, variables=variables, max_cells=max_cells
        )
        crop.attrs["crop_bounds_epsg3413"] = np.asarray(bounds, dtype=float)
        crop.attrs["crop_source"] = link
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        crop.attrs["history"] = (
            f"{stamp}: cells with centres in x {bounds[0]:.0f}..{bounds[2]:.0f}, "
            f"y {bounds[1]:.0f}..{bounds[3]:.0f} cut from {wanted_name} by "
            "engine.data.earthdata"
        )
        _write_netcdf_atomic(crop, target)
    finally:
        for handle in handles:
            close = getattr(handle, "close", None)
            if callable(close):
                close()

    return target


# ----------------------------------------------------------------------------
# IceBridge radar
# ----------------------------------------------------------------------------


def _iso(value: Any, label: str) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    text = str(value)
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        raise RegionError(
            f"{label} {value!r} of the temporal range is not an ISO date; give "
            "e.g. ('2011-01-01', '2014-12-31')"
        ) from None
    return text


def _check_temporal(temporal: Sequence[Any]) -> tuple[str, str]:
    try:
        start, end = temporal
    except (TypeError, ValueError):
        raise RegionError(
            f"temporal range {temporal!r} must be (start, end), e.g. "
            "('2011-01-01', '2014-12-31')"
        ) from None
    start_text, end_text = _iso(start, "start"), _iso(end, "end")
    if start_text[:10] > end_text[:10]:
        raise RegionError(
            f"temporal range starts ({start_text}) after it ends ({end_text})"
        )
    return start_text, end_text


def _radar_links(granule: Any) -> list[str]:
    links = _data_links(granule)
    csv = [link for link in links if link.lower().endswith(".csv")]
    if csv:
        return csv
    return [link for link in links if not link.lower().endswith(_METADATA_SUFFIXES)]


def fetch_radar(
    region: Any,
    *,
    temporal: Sequence[Any] | None = None,
    client: EarthdataClient | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    max_granules: int = 500,
) -> list[Path]:
    """Download the IceBridge radar thickness files whose flights cross a region.

    The catalogue is searched with the longitude/latitude box around the
    region (see :func:`lonlat_bbox`); granules whose footprint, reprojected
    to EPSG:3413, misses the region itself are dropped. Files already in the
    cache are reused. The others are downloaded into a temporary folder
    inside the cache and moved into place once complete.

    Parameters
    ----------
    region : sequence of 4 floats or object with ``bounds``
        ``(xmin, ymin, xmax, ymax)`` in EPSG:3413 metres.
    temporal : (start, end), optional
        ISO dates or ``datetime.date`` objects; the whole record by default.
    client : EarthdataClient, optional
        :class:`EarthaccessClient` by default.
    cache_dir : str or PathLike, optional
        Cache folder; the files go to its ``irmcr2/`` sub-folder.
        ``get_cache_dir()`` by default.
    max_granules : int, optional
        Most flight segments accepted for one call.

    Returns
    -------
    list of Path
        The CSV files (one per flight segment), sorted by name; empty, with
        a warning, when no flight crosses the region.

    Raises
    ------
    RegionError
        When the region or the temporal range is malformed, or the search
        matches more than ``max_granules`` segments.
    EarthdataLoginError
        When files must be downloaded and no credentials are found.
    DataNotFoundError
        When the search or a download fails.
    """
    # Check the region and the time range, and search by lon/lat box
    bounds = region_bounds(region)
    bbox = lonlat_bbox(bounds)
    query: dict[str, Any] = {"short_name": RADAR_SHORT_NAME, "bounding_box": bbox}
    if temporal is not None:
        query["temporal"] = _check_temporal(temporal)
    active = _client(client)
    granules = _search(active, f"IceBridge radar ({RADAR_SHORT_NAME})", **query)

    # Keep the granules whose footprint crosses the region itself
    import shapely

    box = shapely.box(*bounds)
    hits = [granule for granule in granules if _crosses(granule, box)]
    logger.info(
        "%s: %d granules in the lon/lat box, %d cross the region",
        RADAR_SHORT_NAME,
        len(granules),
        len(hits),
    )
    if len(hits) > max_granules:
        raise RegionError(
            f"{len(hits)} radar flight segments cross the region, more than "
            f"{max_granules}; choose a smaller region or a shorter temporal "
            "range, or raise max_granules"
        )
    if not hits:
        period = f" in {query['temporal']}" if "temporal" in query else ""
        box_m = tuple(round(value) for value in bounds)
        warnings.warn(
            f"no IceBridge radar ({RADAR_SHORT_NAME}) flight crosses the region "
            f"{box_m}{period}",
            stacklevel=2,
        )
        return []

    # Skip the files already in the cache
    folder = (Path(cache_dir) if cache_dir is not None else get_cache_dir()) / "irmcr2"
    names = {}
    for granule in hits:
        for link in _radar_links(granule):
            names.setdefault(link.rsplit("/", 1)[-1], link)
    todo = [link for name, link in names.items() if not (folder / name).is_file()]

    # Download the rest into a temporary folder, then move each file
    if todo:
        login(active)
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
        try:
            try:
                fetched = active.download(todo, staging)
            except OSError as err:
                raise DataNotFoundError(
                    f"downloading {len(todo)} radar files failed ({err}); check "
                    "the internet connection and retry"
                ) from err
            for path in fetched:
                os.replace(path, folder / Path(path).name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        absent = [name for name in names if not (folder / name).is_file()]
        if absent:
            raise DataNotFoundError(
                f"{len(absent)} of {len(names)} radar files did not download "
                f"({', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}); "
                "retry, the files already fetched are kept"
            )

    return sorted(folder / name for name in names)
