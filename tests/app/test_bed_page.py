"""The bed-topography page headless, with the map's drawing patched in."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "bed_topography.py")


def rectangle(lon0: float, lat0: float, lon1: float, lat1: float) -> dict:
    """What Leaflet.draw returns for a rectangle, as st_folium hands it back."""
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {
        "last_active_drawing": {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        },
        "all_drawings": [],
    }


def run_page(drawing: dict | None, monkeypatch, tmp_path) -> AppTest:
    """Run the page with st_folium returning ``drawing`` on every call."""
    monkeypatch.setenv("GREENBED_RUNS_DIR", str(tmp_path / "runs"))
    with mock.patch("streamlit_folium.st_folium", return_value=drawing):
        return AppTest.from_file(PAGE, default_timeout=60).run()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_whole_grid_is_summarised_without_a_drawing(
    helheim_grid_path, monkeypatch, tmp_path
):
    at = run_page(None, monkeypatch, tmp_path)
    assert not at.exception
    # 300 x 200 cells of 150 m: 1,350 km2; 634 radar picks fall inside.
    assert metrics(at)["Cells at 150 m"] == "60,000"
    assert metrics(at)["Area"] == "1,350 km²"
    assert metrics(at)["Radar picks inside"] == "634"


def test_drawn_rectangle_is_checked_and_summarised(
    helheim_grid_path, monkeypatch, tmp_path
):
    at = run_page(rectangle(-38.9, 66.4, -38.5, 66.6), monkeypatch, tmp_path)
    assert not at.exception
    assert not at.error
    # The same box through the engine's CLI gives 18,073 cells and 196 picks.
    assert metrics(at)["Cells at 150 m"] == "18,073"
    assert metrics(at)["Radar picks inside"] == "196"


@pytest.mark.parametrize(
    ("box", "words"),
    [
        ((-2.0, 50.0, 1.0, 53.0), "outside Greenland"),
        ((-56.5, 72.5, -53.0, 73.3), "outside the data's coverage"),
        ((-38.7, 66.5, -38.69, 66.51), "draw at least 16 x 16 cells"),
    ],
)
def test_a_region_the_data_cannot_serve_gets_the_engine_message(
    box, words, helheim_grid_path, monkeypatch, tmp_path
):
    at = run_page(rectangle(*box), monkeypatch, tmp_path)
    assert not at.exception
    assert any(words in e.value for e in at.error)
    # Nothing can be run on it.
    assert at.button(key="bed.run").disabled


def test_quick_run_on_a_drawn_rectangle_shows_the_results(
    helheim_grid_path, monkeypatch, tmp_path
):
    import time

    from engine.jobs import store

    # A small rectangle on the grid (about 9 x 11 km), then Run.
    drawing = rectangle(-38.9, 66.45, -38.7, 66.55)
    monkeypatch.setenv("GREENBED_RUNS_DIR", str(tmp_path / "runs"))
    with mock.patch("streamlit_folium.st_folium", return_value=drawing):
        at = AppTest.from_file(PAGE, default_timeout=120).run()
        at.button(key="bed.run").click().run()
        assert not at.exception

        # The run is a job outside the script run; wait for it to end.
        job_id = at.query_params["job"]
        job_id = job_id[0] if isinstance(job_id, list) else job_id
        deadline = time.monotonic() + 600
        while not store.read_state(job_id).is_final and time.monotonic() < deadline:
            time.sleep(1)
        assert store.read_state(job_id).state == "done", store.read_state(job_id).error

        # The results: scores, maps, a profile, the 3-D view, downloads.
        at.run()
        assert not at.exception, at.exception
        headings = [h.value for h in at.subheader]
        for heading in ("Scores on held-out radar", "Maps in EPSG:3413", "Profile",
                        "3-D view", "Downloads"):  # fmt: skip
            assert heading in headings
        table = at.dataframe[-2].value if len(at.dataframe) > 1 else None
        assert table is not None and "deeptoponet" in " ".join(map(str, table.index))


def test_a_second_tab_shows_the_running_job_not_a_new_one(
    helheim_grid_path, monkeypatch, tmp_path
):
    from engine.jobs import store

    # A job another session started, still running (no worker needed here).
    monkeypatch.setenv("GREENBED_RUNS_DIR", str(tmp_path / "runs"))
    job = store.create_job("bedtopo.experiment", {}, label="from another tab")
    state = store.read_state(job.job_id)
    state.state = "running"
    store.write_state(state)

    # A fresh page without ?job= finds it and names it in its URL.
    with mock.patch("streamlit_folium.st_folium", return_value=None):
        at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any(job.job_id in c.value for c in at.caption)
    assert at.query_params["job"] in (job.job_id, [job.job_id])
