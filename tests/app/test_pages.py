"""Every page runs headless in Streamlit's AppTest without an exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The home page links to the others, which only works under the app's
# navigation: it is run through app.py; the feature pages run on their own.
PAGES = sorted(
    p.relative_to(REPO_ROOT).as_posix()
    for p in (REPO_ROOT / "pages").glob("*.py")
    if p.name != "home.py"
)


def run_home() -> AppTest:
    """The app's entry point, which opens on the home page."""
    return AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=60).run()


def test_app_entry_point_runs_home_page():
    # The first run imports torch and leafmap: allow a minute.
    at = run_home()
    assert not at.exception
    assert at.title[0].value.startswith("Greenland bed topography")


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_without_exception(page):
    at = AppTest.from_file(str(REPO_ROOT / page), default_timeout=60).run()
    assert not at.exception, at.exception


def test_home_lists_data_sets_with_provenance(data_dir):
    at = run_home()
    assert not at.exception

    # One row per registered data set, each with an origin and a licence.
    table = at.dataframe[0].value
    assert {"helheim", "narsap", "nioghalvfjerds_79n", "wfde5_uk_201701"} <= set(
        table["key"]
    )
    assert table["origin"].str.len().min() > 0
    assert table["licence"].str.len().min() > 0

    # With the data directory set, every demo file is found: no fetch hints.
    assert not at.info


def test_home_without_data_says_how_to_fetch(tmp_path, monkeypatch):
    # An empty data directory and cache: nothing to show, and the page says how.
    monkeypatch.setenv("GREENBED_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GREENBED_CACHE_DIR", str(tmp_path / "cache"))
    at = run_home()
    assert not at.exception
    assert at.info, "missing data must be reported"
    assert all("python -m engine data fetch" in i.value for i in at.info)
