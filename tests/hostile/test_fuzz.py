"""Property-based fuzzing of the readers with hypothesis.

Random bytes, and clean small files with random damage (cut short, bytes
overwritten), go into every file reader; random GeoJSON-like values go into
``region_from_geojson``. Only ``DataError`` may escape, with a clear message.
Examples are few and deadlines off, so the module runs in seconds in CI.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data.climate import open_climate_cube
from engine.data.errors import DataError, RegionError
from engine.data.grids import read_topo_hdf5
from engine.data.info import describe_file
from engine.data.radar import read_radar
from engine.data.regions import region_from_geojson

#: Few examples, no deadline: file readers are slow to start and CI is small.
# Derandomised: CI replays the same examples every run, so a slow or failing
# one is reproducible (a random run once met a damaged file that took minutes).
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def read_climate(path: Path):
    """Open a climate cube and read all its values."""
    with open_climate_cube(path) as cube:
        return cube.load()


def _feed(reader, content: bytes, suffix: str, check) -> None:
    """Write bytes to a fresh folder, call the reader, allow only DataError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(content)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = reader(path)
                if hasattr(result, "close"):
                    result.close()
            except DataError as exc:
                check(exc)
        # The reader leaves no file beside the input.
        assert os.listdir(folder) == [path.name]


def _damaged(clean: bytes, data: st.DataObject) -> bytes:
    """A clean file cut short, or with a few bytes overwritten."""
    damaged = bytearray(clean)
    for _ in range(data.draw(st.integers(1, 4), label="patches")):
        at = data.draw(st.integers(0, len(damaged) - 1), label="at")
        patch = data.draw(st.binary(min_size=1, max_size=16), label="patch")
        damaged[at : at + len(patch)] = patch
    cut = data.draw(st.integers(0, len(damaged)), label="cut")
    return bytes(damaged[:cut] if data.draw(st.booleans(), label="cut?") else damaged)


READERS = {
    ".csv": (read_radar, describe_file),
    ".mat": (read_radar, describe_file),
    ".h5": (read_topo_hdf5, describe_file),
    ".nc": (read_climate, describe_file),
}


@FUZZ
@given(content=st.binary(max_size=4096), suffix=st.sampled_from(sorted(READERS)))
def test_random_bytes_give_only_clear_errors(clear_message, content, suffix):
    for reader in READERS[suffix]:
        _feed(reader, content, suffix, clear_message)


#: Each clean file that is damaged, and the suffix it is read under.
CLEAN_OF = {
    "topo_h5": ".h5",
    "climate_nc4": ".nc",
    "climate_nc3": ".nc",
    "radar_mat5": ".mat",
    "radar_mat73": ".mat",
}


@FUZZ
@given(data=st.data(), which=st.sampled_from(sorted(CLEAN_OF)))
def test_damaged_clean_files_give_only_clear_errors(
    clean_files, clear_message, data, which
):
    # Damage a clean file; read it with the readers of its suffix.
    content = _damaged(clean_files[which].read_bytes(), data)
    suffix = CLEAN_OF[which]
    for reader in READERS[suffix]:
        _feed(reader, content, suffix, clear_message)


@FUZZ
@given(data=st.data())
def test_damaged_radar_csv_gives_only_clear_errors(clear_message, data):
    # A clean radar CSV with random bytes written over it.
    clean = b"x,y,thickness,source\n" + b"".join(
        b"%d,-2565000,%d,1\n" % (285_000 + 100 * i, 1000 + i) for i in range(40)
    )
    content = _damaged(clean, data)
    for reader in READERS[".csv"]:
        _feed(reader, content, ".csv", clear_message)


#: Values that appear in JSON, nested a few levels.
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)

#: Numbers a drawing could hold, NaN and huge ones among them.
COORD = st.one_of(
    st.floats(-200, 200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
)

#: GeoJSON-ish geometries: the right keys with odd values, and odd shapes.
GEOJSONISH = st.one_of(
    JSONISH,
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["Polygon", "Point", "Feature", "polygon", ""]),
            "coordinates": st.one_of(
                JSONISH,
                st.lists(
                    st.lists(st.lists(COORD, min_size=0, max_size=4), max_size=8),
                    max_size=3,
                ),
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("Feature"),
            "geometry": st.fixed_dictionaries(
                {
                    "type": st.just("Polygon"),
                    "coordinates": st.lists(
                        st.lists(st.tuples(COORD, COORD), min_size=3, max_size=8),
                        min_size=1,
                        max_size=2,
                    ),
                }
            ),
        }
    ),
)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(geometry=GEOJSONISH)
def test_random_geojson_gives_a_region_or_a_clear_region_error(geometry):
    try:
        region = region_from_geojson(geometry)
    except RegionError as exc:
        assert str(exc).strip()
    else:
        # A region that is made is a valid polygon of positive area.
        assert region.polygon.is_valid and region.area_km2 > 0
