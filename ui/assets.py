"""Web assets of the maps, served from the app's own static folder.

Folium loads Leaflet and its plugins from public CDNs, and ``st_folium``
drops the whole map when one of them fails to load: offline, the map
vanishes. This module fetches the few packages the maps need from the npm
registry (with ``npm pack``, at set-up time, never at import) into
``static/vendor/`` (git-ignored), and rewrites a map's asset links to that
folder when it is there. Without it the CDN links stay as they are.

Run ``python -m ui.assets`` to fetch them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = [
    "VENDOR_DIR",
    "PACKAGES",
    "fetch_web_assets",
    "assets_present",
    "local_url",
]

#: Where Streamlit serves static files from (``server.enableStaticServing``).
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

#: The fetched packages, one folder per package.
VENDOR_DIR = STATIC_DIR / "vendor"

#: npm packages, their versions (those folium's plugins name) and the files
#: each map needs from the package (paths inside the package's tarball).
PACKAGES: dict[str, tuple[str, list[str]]] = {
    "leaflet": ("1.9.3", ["dist/leaflet.js", "dist/leaflet.css", "dist/images"]),
    "leaflet-draw": (
        "1.0.4",
        ["dist/leaflet.draw.js", "dist/leaflet.draw.css", "dist/images"],
    ),
    "leaflet.fullscreen": (
        "3.0.0",
        ["Control.FullScreen.js", "Control.FullScreen.css", "icon-fullscreen.svg"],
    ),
}

# Streamlit serves ``static/<path>`` at ``/app/static/<path>``.
_URL_PREFIX = "/app/static/vendor"


def assets_present(vendor_dir: Path = VENDOR_DIR) -> bool:
    """True when every package's files have been fetched."""
    return all(
        (vendor_dir / name / Path(files[0]).name).is_file()
        for name, (_, files) in PACKAGES.items()
    )


def local_url(package: str, filename: str) -> str:
    """URL path under which Streamlit serves a fetched file."""
    return f"{_URL_PREFIX}/{package}/{filename}"


def _extract(tarball: Path, files: list[str], dest: Path) -> None:
    """Copy the named files (or folders) out of an npm tarball into dest."""
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        root = Path(tmp) / "package"
        for item in files:
            source = root / item
            target = dest / source.name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)


def fetch_web_assets(vendor_dir: Path = VENDOR_DIR, *, force: bool = False) -> Path:
    """Fetch Leaflet, Leaflet.draw and leaflet.fullscreen with ``npm pack``.

    The folder is built beside its final place and moved in at the end, so
    an interrupted fetch never leaves half a folder that looks complete.

    Parameters
    ----------
    vendor_dir : pathlib.Path
        Destination (``static/vendor`` by default).
    force : bool
        Fetch again even when the files are there.

    Returns
    -------
    pathlib.Path
        ``vendor_dir``.

    Raises
    ------
    RuntimeError
        ``npm`` is missing or the registry cannot be reached; the maps then
        load from the CDNs (and need the internet).
    """
    if assets_present(vendor_dir) and not force:
        return vendor_dir
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is not installed, so the map assets cannot be fetched; install "
            "Node.js (npm), or let the maps load Leaflet from the internet"
        )

    # Download the tarballs into a scratch folder.
    vendor_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".vendor-", dir=vendor_dir.parent))
    try:
        specs = [f"{name}@{version}" for name, (version, _) in PACKAGES.items()]
        result = subprocess.run(
            [npm, "pack", *specs, "--json"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(
                "npm pack failed; check the connection to the npm registry:\n"
                + result.stderr[-2000:]
            )
        packed = {entry["name"]: entry for entry in json.loads(result.stdout)}

        # Unpack what the maps need, one folder per package.
        manifest = {}
        for name, (version, files) in PACKAGES.items():
            dest = staging / "out" / name
            dest.mkdir(parents=True)
            _extract(staging / packed[name]["filename"], files, dest)
            manifest[name] = {
                "version": version,
                "integrity": packed[name]["integrity"],
            }
        (staging / "out" / "manifest.json").write_text(json.dumps(manifest, indent=2))

        # Swap the finished folder into place.
        if vendor_dir.exists():
            shutil.rmtree(vendor_dir)
        os.replace(staging / "out", vendor_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return vendor_dir


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m ui.assets [--force]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch again")
    args = parser.parse_args(argv)
    try:
        path = fetch_web_assets(force=args.force)
    except RuntimeError as exc:
        print(f"map assets not fetched: {exc}", file=sys.stderr)
        return 1
    print(f"map assets ready in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
