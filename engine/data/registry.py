"""Registry of the demo data sets: where their files are, and how to get them.

The registry (``data/registry.toml`` at the repository root) lists each
data set with its title, licence, citations and files; each file with its
SHA-256, its size and the URL of its public origin. A file is looked for in
two places, in this order:

1. the data directory named by the environment variable
   ``GREENBED_DATA_DIR``, as ``$GREENBED_DATA_DIR/<folder>/<file>``
   (a shared copy, nothing is downloaded);
2. the cache, ``<repo>/data/cache/<folder>/<file>`` unless the environment
   variable ``GREENBED_CACHE_DIR`` names another folder.

:func:`fetch` downloads the missing files into the cache with pooch, which
writes each download to a temporary file, checks its SHA-256 and only then
moves it into place, so that the cache never holds a partial or wrong file.
Nothing is read or downloaded at import time.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import tomllib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.data.errors import DataNotFoundError, FileFormatError

__all__ = [
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "DEFAULT_CACHE_DIR",
    "REGISTRY_PATH",
    "DataFile",
    "Dataset",
    "ProgressCallback",
    "Registry",
    "datasets",
    "describe",
    "fetch",
    "file_sha256",
    "get_cache_dir",
    "get_data_dir",
    "get_dataset",
    "load_registry",
    "locate",
    "verify",
]

logger = logging.getLogger(__name__)

#: Root of the repository (``engine/data/registry.py`` is two levels down).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: The registry shipped with the project.
REGISTRY_PATH = REPO_ROOT / "data" / "registry.toml"

#: Environment variable naming the directory searched first for data files.
DATA_DIR_ENV = "GREENBED_DATA_DIR"

#: Environment variable naming the cache folder, instead of the default.
CACHE_DIR_ENV = "GREENBED_CACHE_DIR"

#: Cache folder used when ``GREENBED_CACHE_DIR`` is unset (git-ignored).
DEFAULT_CACHE_DIR = REPO_ROOT / "data" / "cache"

#: Called while a file downloads, as ``progress(file_name, done, total)``
#: with the bytes received so far and the expected total.
ProgressCallback = Callable[[str, int, int], None]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DOWNLOAD_TIMEOUT_S = 60.0


# ----------------------------------------------------------------------------
# Registry entries
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFile:
    """One registered file.

    Attributes
    ----------
    name : str
        File name, as in the data set's folder.
    sha256 : str
        SHA-256 of the file, 64 lower-case hexadecimal digits.
    size : int
        Size in bytes.
    url : str
        Where the file is downloaded from (its public origin).
    description : str
        One line saying what the file holds.
    """

    name: str
    sha256: str
    size: int
    url: str
    description: str = ""


@dataclass(frozen=True)
class Dataset:
    """One registered data set.

    Attributes
    ----------
    key : str
        Short name used by the code and the CLI (``helheim``).
    title : str
        Human-readable title.
    folder : str
        Sub-folder of the data directory and of the cache holding the files.
    description : str
        What the data set holds.
    licence : str
        Licence terms of the data and of the repository they come from.
    citations : tuple of str
        References to cite when the data are used.
    repository : str
        GitHub repository the files come from (``owner/name``), or "".
    commit : str
        Commit of that repository the URLs are pinned to, or "".
    files : tuple of DataFile
        The registered files.
    """

    key: str
    title: str
    folder: str
    description: str
    licence: str
    citations: tuple[str, ...]
    repository: str
    commit: str
    files: tuple[DataFile, ...]

    @property
    def origin(self) -> str:
        """The public origin in words: ``owner/name @ commit`` or the URLs."""
        if self.repository:
            commit = f" @ {self.commit[:8]}" if self.commit else ""
            return f"{self.repository}{commit}"
        return ", ".join(entry.url for entry in self.files)

    def file(self, name: str) -> DataFile | None:
        """The registered file called ``name``, or None when there is none."""
        for entry in self.files:
            if entry.name == name:
                return entry
        return None


@dataclass(frozen=True)
class Registry:
    """The data sets of one registry file, by key.

    Attributes
    ----------
    datasets : Mapping of str to Dataset
        The entries, in the order of the file.
    path : Path or None
        The file the registry was read from, if any.
    """

    datasets: Mapping[str, Dataset]
    path: Path | None = None

    def __getitem__(self, key: str) -> Dataset:
        try:
            return self.datasets[key]
        except KeyError:
            known = ", ".join(self.datasets) or "none"
            raise DataNotFoundError(
                f"unknown data set {key!r}: the registry {self._where()} lists "
                f"{known}; use one of these keys"
            ) from None

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self.datasets.values())

    def __len__(self) -> int:
        return len(self.datasets)

    def __contains__(self, key: object) -> bool:
        return key in self.datasets

    def _where(self) -> str:
        return str(self.path) if self.path is not None else "(in memory)"


RegistryLike = Registry | str | os.PathLike[str] | None


# ----------------------------------------------------------------------------
# Reading the registry
# ----------------------------------------------------------------------------


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """Read and check a registry file.

    Parameters
    ----------
    path : str or PathLike, optional
        The TOML file; the project's ``data/registry.toml`` by default.

    Returns
    -------
    Registry
        The data sets it lists. Read once per file version, then cached.

    Raises
    ------
    FileFormatError
        When the file is missing, is not TOML or lacks a required field.
    """
    # Resolve the path and key the cache on the file's version
    target = Path(path) if path is not None else REGISTRY_PATH
    try:
        stat = target.stat()
    except OSError as err:
        raise FileFormatError(
            f"registry {target} cannot be read ({err.strerror}); restore "
            "data/registry.toml from the repository or pass an existing file"
        ) from err

    return _load_registry_cached(str(target.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _load_registry_cached(path: str, mtime_ns: int, size: int) -> Registry:
    # Parse the TOML
    target = Path(path)
    try:
        with target.open("rb") as stream:
            raw = tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise FileFormatError(
            f"registry {target} is not valid TOML ({err}); fix the syntax at "
            "the place named"
        ) from err

    # Check and convert each data set
    tables = raw.get("datasets")
    if not isinstance(tables, dict) or not tables:
        raise FileFormatError(
            f"registry {target} has no [datasets.<key>] tables; add one per "
            "data set (see data/README.md)"
        )
    entries = {
        key: _parse_dataset(key, table, target) for key, table in tables.items()
    }

    return Registry(datasets=MappingProxyType(entries), path=target)


def _parse_dataset(key: str, table: Any, source: Path) -> Dataset:
    # Check the data set's own fields
    where = f"registry {source}, data set {key!r}"
    if not isinstance(table, dict):
        raise FileFormatError(f"{where}: must be a table of fields; see data/README.md")
    text = {
        name: _required_text(table, name, where)
        for name in ("title", "folder", "description", "licence")
    }
    _check_plain_name(text["folder"], f"{where}, folder")
    citations = table.get("citations")
    if (
        not isinstance(citations, list)
        or not citations
        or not all(isinstance(item, str) and item.strip() for item in citations)
    ):
        raise FileFormatError(
            f"{where}: 'citations' must be a non-empty list of strings; add the "
            "references to cite"
        )

    # Check each file
    files = table.get("files")
    if not isinstance(files, list) or not files:
        raise FileFormatError(
            f"{where}: no [[datasets.{key}.files]] entries; list at least one file"
        )
    parsed = tuple(_parse_file(item, where) for item in files)
    names = [entry.name for entry in parsed]
    if len(set(names)) != len(names):
        raise FileFormatError(f"{where}: a file name is listed twice; remove the copy")

    return Dataset(
        key=key,
        title=text["title"],
        folder=text["folder"],
        description=text["description"].strip(),
        licence=text["licence"].strip(),
        citations=tuple(item.strip() for item in citations),
        repository=str(table.get("repository", "")),
        commit=str(table.get("commit", "")),
        files=parsed,
    )


def _parse_file(item: Any, where: str) -> DataFile:
    # Name, checksum, size and origin are all required
    if not isinstance(item, dict):
        raise FileFormatError(f"{where}: each file entry must be a table")
    name = _required_text(item, "name", where)
    _check_plain_name(name, f"{where}, file name")
    where = f"{where}, file {name!r}"
    sha256 = _required_text(item, "sha256", where).lower()
    if not _SHA256.match(sha256):
        raise FileFormatError(
            f"{where}: sha256 must be 64 hexadecimal digits, got {sha256!r}; "
            "copy it from 'sha256sum <file>'"
        )
    size = item.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise FileFormatError(
            f"{where}: size must be a positive number of bytes, got {size!r}"
        )
    url = _required_text(item, "url", where)
    if not url.startswith(("https://", "http://")):
        raise FileFormatError(f"{where}: url must start with https://, got {url!r}")

    return DataFile(
        name=name,
        sha256=sha256,
        size=size,
        url=url,
        description=str(item.get("description", "")),
    )


def _required_text(table: Mapping[str, Any], name: str, where: str) -> str:
    value = table.get(name)
    if not isinstance(value, str) or not value.strip():
        raise FileFormatError(
            f"{where}: the field {name!r} is missing or empty; add it"
        )
    return value


def _check_plain_name(name: str, where: str) -> None:
    if name in {".", ".."} or Path(name).name != name or "\\" in name:
        raise FileFormatError(
            f"{where} {name!r} must be a plain name without folders; fix it"
        )


def _as_registry(registry: RegistryLike) -> Registry:
    if isinstance(registry, Registry):
        return registry
    return load_registry(registry)


def _as_dataset(dataset: str | Dataset, registry: RegistryLike) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    return _as_registry(registry)[dataset]


def datasets(registry: RegistryLike = None) -> list[Dataset]:
    """All registered data sets, in the order of the registry.

    Parameters
    ----------
    registry : Registry, str or PathLike, optional
        A loaded registry or the path of a registry file; the project's
        registry by default.

    Returns
    -------
    list of Dataset
    """
    return list(_as_registry(registry))


def get_dataset(key: str, registry: RegistryLike = None) -> Dataset:
    """The registered data set called ``key``.

    Parameters
    ----------
    key : str
        Data set key, e.g. ``"helheim"``.
    registry : Registry, str or PathLike, optional
        The registry to look in; the project's registry by default.

    Returns
    -------
    Dataset

    Raises
    ------
    DataNotFoundError
        When no data set has that key; the message lists the known keys.
    """
    return _as_registry(registry)[key]


# ----------------------------------------------------------------------------
# Data directory, cache and checksums
# ----------------------------------------------------------------------------


def get_data_dir() -> Path | None:
    """The data directory named by ``GREENBED_DATA_DIR``, or None when unset.

    Returns
    -------
    Path or None
        The folder, expanded (``~``), whether or not it exists.
    """
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def get_cache_dir() -> Path:
    """The cache folder: ``$GREENBED_CACHE_DIR`` or ``<repo>/data/cache``.

    Returns
    -------
    Path
        The folder; it is created only when something is written to it.
    """
    value = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_CACHE_DIR


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, as 64 lower-case hexadecimal digits.

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    str
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: str | os.PathLike[str], sha256: str) -> Path:
    """Check that a file's SHA-256 is the expected one.

    Parameters
    ----------
    path : str or PathLike
        The file to check.
    sha256 : str
        Expected SHA-256, hexadecimal (an optional ``sha256:`` prefix is
        accepted).

    Returns
    -------
    Path
        ``path``, when the checksum matches.

    Raises
    ------
    FileFormatError
        When the file is missing or unreadable, or when its checksum differs;
        the message gives both checksums.
    """
    # Read and hash the file
    target = Path(path)
    expected = sha256.lower().removeprefix("sha256:")
    try:
        actual = file_sha256(target)
    except OSError as err:
        raise FileFormatError(
            f"cannot check {target}: {err.strerror or err}; make sure the file "
            "exists and is readable"
        ) from err

    # Compare with the registered value
    if actual != expected:
        raise FileFormatError(
            f"{target} has SHA-256 {actual}, expected {expected}: the file is "
            "corrupt, truncated or another version; delete it and fetch it "
            "again ('python -m engine data fetch <key>')"
        )

    return target


# ----------------------------------------------------------------------------
# Finding files
# ----------------------------------------------------------------------------


def _candidates(
    entry: Dataset, name: str, data_dir: Path | None, cache_dir: Path
) -> list[tuple[str, Path]]:
    places = [] if data_dir is None else [("data directory", data_dir)]
    places.append(("cache", cache_dir))
    return [(label, root / entry.folder / name) for label, root in places]


def _find(
    entry: Dataset, name: str, data_dir: Path | None, cache_dir: Path
) -> tuple[Path | None, str, list[str]]:
    """The first usable copy of a file, its place, and why others were skipped."""
    registered = entry.file(name)
    skipped: list[str] = []
    for label, candidate in _candidates(entry, name, data_dir, cache_dir):
        if not candidate.is_file():
            continue
        if registered is not None:
            size = candidate.stat().st_size
            if size != registered.size:
                skipped.append(
                    f"{candidate} ({label}) has {size} bytes instead of "
                    f"{registered.size}"
                )
                continue
        return candidate, label, skipped
    return None, "missing", skipped


def _resolve_dirs(
    data_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
) -> tuple[Path | None, Path]:
    data = Path(data_dir).expanduser() if data_dir is not None else get_data_dir()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else get_cache_dir()
    return data, cache


def locate(
    dataset: str | Dataset,
    filename: str,
    *,
    registry: RegistryLike = None,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where a data set's file is on this machine; nothing is downloaded.

    The data directory is searched first, then the cache. A copy whose size
    differs from the registered one is skipped with a warning. Files the
    registry does not list (local conversions such as the CSV copies of the
    MATLAB files) are found in the same places but cannot be fetched.

    Parameters
    ----------
    dataset : str or Dataset
        Data set key (``"helheim"``) or entry.
    filename : str
        File name within the data set's folder.
    registry : Registry, str or PathLike, optional
        The registry to use; the project's registry by default.
    data_dir, cache_dir : str or PathLike, optional
        Override ``$GREENBED_DATA_DIR`` and the cache folder.

    Returns
    -------
    Path
        The file.

    Raises
    ------
    DataNotFoundError
        When the data set is unknown or the file is in neither place; the
        message tells how to fetch it.
    """
    # Find the entry and the places to look in
    entry = _as_dataset(dataset, registry)
    _check_plain_name_for_lookup(filename)
    data, cache = _resolve_dirs(data_dir, cache_dir)

    # Take the first usable copy
    found, _, skipped = _find(entry, filename, data, cache)
    for reason in skipped:
        warnings.warn(
            f"skipped {reason}; delete it or fetch the data set again",
            stacklevel=2,
        )
    if found is not None:
        return found

    # Explain what was searched and how to get the file
    looked = [str(path) for _, path in _candidates(entry, filename, data, cache)]
    if data is None:
        looked.append(f"({DATA_DIR_ENV} is not set)")
    elif not data.is_dir():
        looked.append(f"({DATA_DIR_ENV}={data} is not a folder)")
    if entry.file(filename) is None:
        known = ", ".join(item.name for item in entry.files)
        raise DataNotFoundError(
            f"{filename!r} is not a registered file of data set {entry.key!r} "
            f"(registered: {known}) and was not found; looked in "
            f"{'; '.join(looked)}. Check the name, or put the file in "
            f"${DATA_DIR_ENV}/{entry.folder}/"
        )
    raise DataNotFoundError(
        f"{entry.key} file {filename!r} not found; looked in {'; '.join(looked)}. "
        f"Download it with 'python -m engine data fetch {entry.key}', or set "
        f"{DATA_DIR_ENV} to a folder holding {entry.folder}/{filename}"
    )


def _check_plain_name_for_lookup(filename: str) -> None:
    if not filename or filename in {".", ".."} or Path(filename).name != filename:
        raise DataNotFoundError(
            f"file name {filename!r} must be a plain name within the data set's "
            "folder, without folders"
        )


# ----------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------


class _PoochProgress:
    """The progress-bar object pooch expects, calling a plain callback."""

    def __init__(self, name: str, expected: int, callback: ProgressCallback) -> None:
        self._name = name
        self._expected = expected
        self._callback = callback
        self._total = expected
        self._done = 0

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        # Servers that send no content length report 0: keep the registry size
        self._total = int(value) if value else self._expected

    def update(self, count: int) -> None:
        self._done = min(self._done + int(count), self._total)
        self._callback(self._name, self._done, self._total)

    def reset(self) -> None:
        self._done = 0

    def close(self) -> None:
        """Nothing to release."""


def fetch(
    dataset: str | Dataset,
    *,
    progress: ProgressCallback | None = None,
    registry: RegistryLike = None,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = _DOWNLOAD_TIMEOUT_S,
) -> list[Path]:
    """Make every file of a data set available, downloading what is missing.

    Files found in the data directory are used as they are. Files already in
    the cache are kept when their SHA-256 matches; a cached copy that does
    not match is deleted and downloaded again. Each download goes to a
    temporary file in the cache folder, is checked against the registered
    SHA-256 and only then renamed into place.

    Parameters
    ----------
    dataset : str or Dataset
        Data set key (``"helheim"``) or entry.
    progress : callable, optional
        Called as ``progress(file_name, done_bytes, total_bytes)`` while a
        file downloads.
    registry : Registry, str or PathLike, optional
        The registry to use; the project's registry by default.
    data_dir, cache_dir : str or PathLike, optional
        Override ``$GREENBED_DATA_DIR`` and the cache folder.
    timeout : float, optional
        Seconds to wait for the server before giving up on a file.

    Returns
    -------
    list of Path
        One path per registered file, in the order of the registry.

    Raises
    ------
    DataNotFoundError
        When the data set is unknown or a file cannot be downloaded.
    FileFormatError
        When a download's SHA-256 is not the registered one (nothing is left
        in the cache).
    """
    # Find the entry and the places to look in
    entry = _as_dataset(dataset, registry)
    data, cache = _resolve_dirs(data_dir, cache_dir)
    target_dir = cache / entry.folder

    # Use what is present, download the rest
    paths = []
    for item in entry.files:
        found, label, skipped = _find(entry, item.name, data, cache)
        for reason in skipped:
            logger.warning("%s: skipped %s", entry.key, reason)
        if found is not None and label == "data directory":
            logger.info("%s: using %s from the data directory", entry.key, found)
            paths.append(found)
            continue
        paths.append(_download(entry, item, target_dir, progress, timeout))

    return paths


def _download(
    entry: Dataset,
    item: DataFile,
    target_dir: Path,
    progress: ProgressCallback | None,
    timeout: float,
) -> Path:
    """Download one file into the cache with pooch, checking its SHA-256."""
    import pooch
    import requests

    # Keep a good cached copy, drop a bad one so that no wrong file remains
    target = target_dir / item.name
    if target.is_file():
        if file_sha256(target) == item.sha256:
            logger.info("%s: %s is already in the cache", entry.key, item.name)
            return target
        logger.warning(
            "%s: cached %s has the wrong SHA-256; downloading it again",
            entry.key,
            target,
        )
        target.unlink()

    # Stream to a temporary file, check the hash, then move it into place
    bar = _PoochProgress(item.name, item.size, progress) if progress else False
    downloader = pooch.HTTPDownloader(progressbar=bar, timeout=timeout)
    logger.info("%s: downloading %s from %s", entry.key, item.name, item.url)
    try:
        fetched = pooch.retrieve(
            item.url,
            known_hash=f"sha256:{item.sha256}",
            fname=item.name,
            path=target_dir,
            downloader=downloader,
        )
    except requests.exceptions.RequestException as err:
        raise DataNotFoundError(
            f"could not download {entry.key} file {item.name!r} from {item.url}: "
            f"{err}. Check the internet connection and retry "
            f"'python -m engine data fetch {entry.key}', or copy the file into "
            f"${DATA_DIR_ENV}/{entry.folder}/"
        ) from err
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise DataNotFoundError(
                f"could not download {entry.key} file {item.name!r} from "
                f"{item.url}: {err}"
            ) from err
        raise FileFormatError(
            f"checksum mismatch for {entry.key} file {item.name!r} downloaded "
            f"from {item.url}: its SHA-256 is not the registered {item.sha256}, "
            "so the download was deleted and nothing was saved. The transfer "
            "may have been corrupted (retry 'python -m engine data fetch "
            f"{entry.key}') or the file at the origin changed (then the "
            "registry entry in data/registry.toml needs updating)"
        ) from err

    return Path(fetched)


# ----------------------------------------------------------------------------
# Overview for pages and the CLI
# ----------------------------------------------------------------------------


def describe(
    registry: RegistryLike = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per registered file, for a table on a page.

    Nothing is hashed or downloaded: a file counts as found when a copy of
    the registered size is in the data directory or the cache.

    Parameters
    ----------
    registry : Registry, str or PathLike, optional
        The registry to describe; the project's registry by default.
    data_dir, cache_dir : str or PathLike, optional
        Override ``$GREENBED_DATA_DIR`` and the cache folder.

    Returns
    -------
    list of dict
        Keys ``key``, ``title``, ``file``, ``description``, ``size``
        (bytes), ``licence``, ``citation`` (the citations joined by new
        lines), ``origin`` (repository @ commit), ``url``, ``where``
        (``"data directory"``, ``"cache"`` or ``"missing"``) and ``path``
        (the file, or None when missing).
    """
    # Find each file without reading it
    data, cache = _resolve_dirs(data_dir, cache_dir)
    rows = []
    for entry in _as_registry(registry):
        for item in entry.files:
            found, where, _ = _find(entry, item.name, data, cache)
            rows.append(
                {
                    "key": entry.key,
                    "title": entry.title,
                    "file": item.name,
                    "description": item.description,
                    "size": item.size,
                    "licence": entry.licence,
                    "citation": "\n".join(entry.citations),
                    "origin": entry.origin,
                    "url": item.url,
                    "where": where,
                    "path": found,
                }
            )

    return rows
