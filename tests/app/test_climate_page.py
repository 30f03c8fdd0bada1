"""The climate-clustering page headless: data summary, choices, bad files."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui import climate as ui

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "climate_clustering.py")


def run_page(monkeypatch, tmp_path) -> AppTest:
    monkeypatch.setenv("GREENBED_RUNS_DIR", str(tmp_path / "runs"))
    return AppTest.from_file(PAGE, default_timeout=90).run()


def test_demo_cube_is_summarised_before_anything_runs(wfde5_dir, monkeypatch, tmp_path):
    at = run_page(monkeypatch, tmp_path)
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}

    # WFDE5: 744 hourly steps on a 20 x 28 grid, six variables.
    assert metrics["Time steps"] == "744"
    assert metrics["Grid (lat x lon)"] == "20 x 28"
    table = at.dataframe[0].value
    assert sorted(table["variable"]) == sorted(
        ["Tair", "pr", "Qair", "LWdown", "SWdown", "Wind"]
    )
    # Sea cells are 55.4 % of the grid in every variable (README of the data).
    assert table["missing cells (%)"].between(55.0, 56.0).all()


def test_daily_steps_shrink_the_period_to_31_days(wfde5_dir, monkeypatch, tmp_path):
    at = run_page(monkeypatch, tmp_path)
    at.toggle(key=ui.DAILY).set_value(True).run()
    assert not at.exception
    # The summary shows the file; the daily cube is what a run receives.
    data = {"source": "wfde5", "resample": "1D"}
    assert ui.cube(data).sizes["time"] == 31


def test_a_file_that_is_not_netcdf_gets_a_message(monkeypatch, tmp_path):
    bad = tmp_path / "notes.nc"
    bad.write_text("this is not a NetCDF file")
    at = run_page(monkeypatch, tmp_path)
    at.radio(key=ui.SOURCE).set_value(ui.SOURCES[2]).run()
    at.text_input(key=ui.PATH).set_value(str(bad)).run()
    assert not at.exception
    assert any("cannot be used" in e.value for e in at.error)


def test_uploads_over_the_limit_are_refused_and_names_never_reach_the_disk(
    monkeypatch, tmp_path
):
    import pytest

    monkeypatch.setenv("GREENBED_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(ValueError, match="over the 100 MB limit"):
        ui.save_upload(b"0" * (ui.MAX_UPLOAD_MB * 1_000_000 + 1), "big.nc")

    # A hostile name is only a label: the stored name is the server's.
    path = ui.save_upload(b"CDF\x01", "../../etc/passwd")
    assert path.parent == tmp_path / "runs" / "uploads"
    assert path.suffix == ".nc" and "passwd" not in path.name


def wait_for_job(at: AppTest, timeout: float = 300.0) -> str:
    """The job the page started, once it has ended (done, failed, cancelled)."""
    import time

    from engine.jobs import store

    job_id = at.query_params["job"]
    job_id = job_id[0] if isinstance(job_id, list) else job_id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.read_state(job_id).is_final:
            return job_id
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")


def test_short_dsc_and_hedgtc_runs_render_every_view(
    wfde5_dir, monkeypatch, tmp_path
):
    from engine.jobs import store

    at = run_page(monkeypatch, tmp_path)
    at.toggle(key=ui.DAILY).set_value(True).run()
    at.multiselect(key=ui.VARIABLES).set_value(["Tair", "Wind"]).run()
    at.number_input(key=ui.K).set_value(3).run()
    for method, stages in (("DSC (CNN-LSTM autoencoder)", False),
                           ("HEDGTC (ensembles + graph attention)", True)):  # fmt: skip
        # Run the method on the 31 daily steps through the real job queue.
        at.selectbox(key=ui.METHOD).set_value(method).run()
        at.button(key=ui.RUN).click().run()
        job_id = wait_for_job(at)
        assert store.read_state(job_id).state == "done", store.read_state(job_id).error
        at.run()
        assert not at.exception, at.exception

        # Every view of a temporal run is there.
        headings = [h.value for h in at.subheader]
        for heading in ("Timeline", "Composites: each cluster's mean anomaly",
                        "Metrics (in the input space)", "Downloads"):  # fmt: skip
            assert heading in headings
        assert ("HEDGTC stages" in headings) == stages

        # Moving the time slider shows another day and its cluster.
        at.slider(key=ui.TIME).set_value(10).run()
        assert not at.exception
        assert any("2017-01-11" in m.value for m in at.markdown)


def test_longer_hedgtc_runs_deep_members_on_dask(wfde5_dir, monkeypatch, tmp_path):
    """The longer toggle adds DEC and DSC members, run on two workers."""
    from engine.clustering.runner import load_clustering
    from engine.jobs import store

    # HEDGTC on the 31 daily steps of two variables, longer training.
    at = run_page(monkeypatch, tmp_path)
    at.toggle(key=ui.DAILY).set_value(True).run()
    at.multiselect(key=ui.VARIABLES).set_value(["Tair", "Wind"]).run()
    at.number_input(key=ui.K).set_value(3).run()
    at.selectbox(key=ui.METHOD).set_value("HEDGTC (ensembles + graph attention)").run()
    at.toggle(key=ui.LONGER).set_value(True).run()
    at.button(key=ui.RUN).click().run()
    job_id = wait_for_job(at)
    assert store.read_state(job_id).state == "done", store.read_state(job_id).error

    # Every member's co-association is kept, the deep ones included.
    result = load_clustering(store.job_dir(job_id))
    assert result.config.quick is False
    assert set(result.stages["co_association"]) == {
        "kmeans", "gmm", "ward", "dec", "dsc"
    }  # fmt: skip
    at.run()
    assert not at.exception, at.exception
