"""Tests of the data-set registry: reading, locating, fetching, checking.

Downloads are served from a local folder over HTTP on 127.0.0.1; any other
connection is refused, so that no test touches the network.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.data import registry as reg
from engine.data.errors import DataNotFoundError, FileFormatError

REAL_KEYS = ["helheim", "narsap", "nioghalvfjerds_79n", "wfde5_uk_201701"]


# ----------------------------------------------------------------------------
# Fixtures: no network, clean environment, a local HTTP server
# ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection except to 127.0.0.1 and local sockets."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> object:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise OSError(f"network access blocked in tests: {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No data directory, a private cache, and no proxy for 127.0.0.1."""
    monkeypatch.delenv(reg.DATA_DIR_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv(reg.CACHE_DIR_ENV, str(cache))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return cache


@dataclass
class Server:
    """A folder served over HTTP, and the paths requested from it."""

    root: Path
    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """Serve ``tmp_path / "served"`` on 127.0.0.1 for the length of a test."""
    root = tmp_path / "served"
    root.mkdir()
    served = Server(root=root, url="")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:  # noqa: N802 (name set by http.server)
            served.requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Keep the test output quiet."""

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.timeout = 5
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _write_registry(
    path: Path, base_url: str, files: dict[str, bytes], *, sha256: str | None = None
) -> Path:
    """A one-data-set registry ``demo`` (folder ``demo_folder``) of ``files``."""
    lines = [
        "schema_version = 1",
        "",
        "[datasets.demo]",
        'title = "Demo data set"',
        'folder = "demo_folder"',
        'description = "Files served by the test."',
        'licence = "CC0"',
        'citations = ["Nobody (2026), Demo."]',
        'repository = "example/demo"',
        'commit = "0123456789abcdef0123456789abcdef01234567"',
    ]
    for name, content in files.items():
        digest = sha256 or hashlib.sha256(content).hexdigest()
        lines += [
            "",
            "[[datasets.demo.files]]",
            f'name = "{name}"',
            f'sha256 = "{digest}"',
            f"size = {len(content)}",
            f'url = "{base_url}/{name}"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def demo(tmp_path: Path, server: Server) -> tuple[Path, dict[str, bytes]]:
    """Two files served over HTTP and a registry pointing at them."""
    files = {"alpha.bin": bytes(range(256)) * 40, "beta.csv": b"x,y\n1,2\n3,4\n"}
    for name, content in files.items():
        (server.root / name).write_bytes(content)
    return _write_registry(tmp_path / "registry.toml", server.url, files), files


# ----------------------------------------------------------------------------
# The project's registry
# ----------------------------------------------------------------------------


def test_real_registry_lists_the_four_demo_data_sets() -> None:
    registry = reg.load_registry()

    assert [entry.key for entry in registry] == REAL_KEYS
    assert {entry.key: entry.folder for entry in registry} == {
        "helheim": "pinnicle_greenland",
        "narsap": "pinnicle_greenland",
        "nioghalvfjerds_79n": "gstatsim_79N",
        "wfde5_uk_201701": "wfde5_uk_201701",
    }
    names = [item.name for entry in registry for item in entry.files]
    assert len(names) == 11
    assert not [name for name in names if name.endswith("_helheim.csv")]
    assert "ProcessedTracks_narsap.csv" not in names
    for entry in registry:
        assert entry.title and entry.licence and entry.citations
        for item in entry.files:
            assert item.url.startswith("https://raw.githubusercontent.com/")
            assert f"/{entry.repository}/{entry.commit}/" in item.url
            assert item.url.endswith("/" + item.name)


def test_real_registry_origins_are_pinned_commits() -> None:
    registry = reg.load_registry()

    assert registry["helheim"].origin == "ISSMteam/PINNICLE @ 915bfb98"
    assert registry["nioghalvfjerds_79n"].commit.startswith("9be859b3")
    assert registry["nioghalvfjerds_79n"].files[0].url.endswith(
        "/Data/Nioghalvfjerds_bed_data.csv"
    )
    assert registry["narsap"].files[0].url.endswith(
        "/examples/example4_Coupled_Physics/ProcessedTracks.mat"
    )


def test_real_checksums_match_the_data_directory(data_dir: Path) -> None:
    for entry in reg.datasets():
        for item in entry.files:
            path = data_dir / entry.folder / item.name
            if not path.is_file():
                pytest.skip(f"{path} not in the data directory")
            assert path.stat().st_size == item.size, path
            assert reg.verify(path, item.sha256) == path


def test_locate_finds_real_files_in_the_data_directory(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(reg.DATA_DIR_ENV, str(data_dir))
    monkeypatch.setenv(reg.CACHE_DIR_ENV, str(tmp_path / "cache"))

    found = reg.locate("helheim", "subdomain_bed.nc")
    csv = reg.locate("helheim", "flightTracks_helheim.csv")

    assert found == data_dir / "pinnicle_greenland" / "subdomain_bed.nc"
    assert csv.parent == data_dir / "pinnicle_greenland"
    rows = reg.describe()
    assert {row["where"] for row in rows} == {"data directory"}


def test_importing_the_modules_loads_and_downloads_nothing() -> None:
    code = (
        "import sys, engine.data.registry, engine.data.earthdata; "
        "print(sorted(m for m in ('pooch', 'earthaccess', 'requests') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(reg.__file__).resolve().parents[2],
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_cache_dir_defaults_to_repo_data_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(reg.CACHE_DIR_ENV, raising=False)
    assert reg.get_cache_dir() == reg.REPO_ROOT / "data" / "cache"

    monkeypatch.setenv(reg.CACHE_DIR_ENV, "/tmp/somewhere")
    assert reg.get_cache_dir() == Path("/tmp/somewhere")


# ----------------------------------------------------------------------------
# Fetching
# ----------------------------------------------------------------------------


def test_fetch_downloads_into_the_cache_with_the_right_checksum(
    clean_env: Path, demo: tuple[Path, dict[str, bytes]], server: Server
) -> None:
    registry_path, files = demo
    events: list[tuple[str, int, int]] = []

    paths = reg.fetch(
        "demo",
        registry=registry_path,
        progress=lambda name, done, total: events.append((name, done, total)),
    )

    assert paths == [clean_env / "demo_folder" / name for name in files]
    for path, content in zip(paths, files.values(), strict=True):
        assert reg.file_sha256(path) == hashlib.sha256(content).hexdigest()
    assert sorted(server.requests) == ["/alpha.bin", "/beta.csv"]
    assert ("alpha.bin", len(files["alpha.bin"]), len(files["alpha.bin"])) in events
    assert all(done <= total for _, done, total in events)
    assert sorted(p.name for p in (clean_env / "demo_folder").iterdir()) == sorted(
        files
    )

    # A second fetch finds everything in the cache and downloads nothing
    assert reg.fetch("demo", registry=registry_path) == paths
    assert len(server.requests) == 2


def test_fetch_with_a_wrong_checksum_raises_and_leaves_no_file(
    clean_env: Path, server: Server, tmp_path: Path
) -> None:
    (server.root / "alpha.bin").write_bytes(b"the real bytes")
    registry_path = _write_registry(
        tmp_path / "bad.toml",
        server.url,
        {"alpha.bin": b"the real bytes"},
        sha256="0" * 64,
    )

    with pytest.raises(FileFormatError, match="checksum mismatch") as raised:
        reg.fetch("demo", registry=registry_path)

    message = str(raised.value)
    assert "alpha.bin" in message and "0" * 64 in message
    assert "nothing was saved" in message
    folder = clean_env / "demo_folder"
    assert not folder.exists() or not any(folder.iterdir())
    with pytest.raises(DataNotFoundError):
        reg.locate("demo", "alpha.bin", registry=registry_path)


def test_fetch_replaces_a_corrupt_cached_copy(
    clean_env: Path, demo: tuple[Path, dict[str, bytes]], server: Server
) -> None:
    registry_path, files = demo
    stale = clean_env / "demo_folder" / "beta.csv"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x,y\n9,9\n0,0\n")  # same size, wrong bytes

    paths = reg.fetch("demo", registry=registry_path)

    assert paths[1] == stale
    assert stale.read_bytes() == files["beta.csv"]
    assert "/beta.csv" in server.requests


def test_fetch_reports_an_unreachable_file(
    clean_env: Path, server: Server, tmp_path: Path
) -> None:
    registry_path = _write_registry(
        tmp_path / "r.toml", server.url, {"gone.bin": b"never served"}
    )

    with pytest.raises(DataNotFoundError, match="could not download") as raised:
        reg.fetch("demo", registry=registry_path)

    assert "python -m engine data fetch demo" in str(raised.value)
    folder = clean_env / "demo_folder"
    assert not folder.exists() or not any(folder.iterdir())


def test_fetch_uses_the_data_directory_without_downloading(
    clean_env: Path,
    demo: tuple[Path, dict[str, bytes]],
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry_path, files = demo
    data = tmp_path / "shared" / "demo_folder"
    data.mkdir(parents=True)
    for name, content in files.items():
        (data / name).write_bytes(content)
    monkeypatch.setenv(reg.DATA_DIR_ENV, str(tmp_path / "shared"))

    paths = reg.fetch("demo", registry=registry_path)

    assert paths == [data / name for name in files]
    assert server.requests == []
    assert not clean_env.exists()


# ----------------------------------------------------------------------------
# Locating
# ----------------------------------------------------------------------------


def test_locate_prefers_the_data_directory_over_the_cache(
    clean_env: Path,
    demo: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry_path, files = demo
    reg.fetch("demo", registry=registry_path)
    shared = tmp_path / "shared"
    (shared / "demo_folder").mkdir(parents=True)
    (shared / "demo_folder" / "alpha.bin").write_bytes(files["alpha.bin"])
    monkeypatch.setenv(reg.DATA_DIR_ENV, str(shared))

    assert reg.locate("demo", "alpha.bin", registry=registry_path) == (
        shared / "demo_folder" / "alpha.bin"
    )
    assert reg.locate("demo", "beta.csv", registry=registry_path) == (
        clean_env / "demo_folder" / "beta.csv"
    )
    rows = {row["file"]: row for row in reg.describe(registry_path)}
    assert rows["alpha.bin"]["where"] == "data directory"
    assert rows["beta.csv"]["where"] == "cache"


def test_locate_explains_how_to_fetch_a_missing_file(
    clean_env: Path, demo: tuple[Path, dict[str, bytes]]
) -> None:
    registry_path, _ = demo

    with pytest.raises(DataNotFoundError) as raised:
        reg.locate("demo", "alpha.bin", registry=registry_path)

    message = str(raised.value)
    assert "python -m engine data fetch demo" in message
    assert reg.DATA_DIR_ENV in message
    assert str(clean_env / "demo_folder" / "alpha.bin") in message


def test_locate_names_the_known_keys_for_an_unknown_data_set(
    clean_env: Path,
) -> None:
    with pytest.raises(DataNotFoundError, match="helheim, narsap"):
        reg.locate("helheimm", "subdomain_bed.nc")


def test_locate_skips_a_copy_of_the_wrong_size(
    clean_env: Path,
    demo: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry_path, files = demo
    reg.fetch("demo", registry=registry_path)
    shared = tmp_path / "shared" / "demo_folder"
    shared.mkdir(parents=True)
    (shared / "alpha.bin").write_bytes(b"truncated")
    monkeypatch.setenv(reg.DATA_DIR_ENV, str(tmp_path / "shared"))

    with pytest.warns(UserWarning, match="bytes instead of"):
        found = reg.locate("demo", "alpha.bin", registry=registry_path)

    assert found == clean_env / "demo_folder" / "alpha.bin"


def test_locate_finds_unregistered_local_files_but_cannot_fetch_them(
    clean_env: Path,
    demo: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry_path, _ = demo
    shared = tmp_path / "shared" / "demo_folder"
    shared.mkdir(parents=True)
    (shared / "converted.csv").write_text("a,b\n")
    monkeypatch.setenv(reg.DATA_DIR_ENV, str(tmp_path / "shared"))

    assert reg.locate("demo", "converted.csv", registry=registry_path) == (
        shared / "converted.csv"
    )
    with pytest.raises(DataNotFoundError, match="not a registered file"):
        reg.locate("demo", "other.csv", registry=registry_path)
    with pytest.raises(DataNotFoundError, match="plain name"):
        reg.locate("demo", "../demo_folder/converted.csv", registry=registry_path)


# ----------------------------------------------------------------------------
# Checksums and registry validation
# ----------------------------------------------------------------------------


def test_verify_accepts_the_right_checksum_and_names_both_on_mismatch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"greenland")
    good = hashlib.sha256(b"greenland").hexdigest()

    assert reg.verify(path, good) == path
    assert reg.verify(path, f"sha256:{good.upper()}") == path
    with pytest.raises(FileFormatError, match=good) as raised:
        reg.verify(path, "f" * 64)
    assert "f" * 64 in str(raised.value)
    with pytest.raises(FileFormatError, match="cannot check"):
        reg.verify(tmp_path / "missing.bin", good)


@pytest.mark.parametrize(
    ("broken", "fragment"),
    [
        ('sha256 = "abc"', "64 hexadecimal digits"),
        ("size = -3", "positive number of bytes"),
        ('url = "ftp://example.org/a.bin"', "https://"),
        ('name = "../escape.bin"', "plain name"),
    ],
)
def test_invalid_registries_are_rejected_with_the_field_named(
    tmp_path: Path, broken: str, fragment: str
) -> None:
    path = _write_registry(tmp_path / "r.toml", "https://example.org", {"a.bin": b"a"})
    key = broken.split(" =")[0]
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join(broken if line.startswith(f"{key} =") else line for line in lines)
    )

    with pytest.raises(FileFormatError, match=fragment.replace("/", ".")):
        reg.load_registry(path)


def test_missing_or_malformed_registry_files_raise_file_format_errors(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileFormatError, match="cannot be read"):
        reg.load_registry(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("[datasets.x\n")
    with pytest.raises(FileFormatError, match="not valid TOML"):
        reg.load_registry(tmp_path / "bad.toml")
    (tmp_path / "empty.toml").write_text("schema_version = 1\n")
    with pytest.raises(FileFormatError, match="no \\[datasets"):
        reg.load_registry(tmp_path / "empty.toml")
