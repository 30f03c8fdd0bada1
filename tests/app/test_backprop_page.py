"""The backpropagation page, driven headless through streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import backprop as ui

PAGE = Path(__file__).resolve().parents[2] / "pages" / "backprop.py"

COMPARISON = "Gradient: product of Jacobians vs torch.autograd"


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_next_steps_to_the_end_and_shows_the_comparison(app: AppTest) -> None:
    last = int(app.slider(key=ui.STEP).max)
    assert last >= 5
    assert COMPARISON not in [h.value for h in app.subheader]

    # One click per step, each moving the slider by one
    for expected in range(1, last + 1):
        app.button(key=ui.NEXT).click().run()
        assert not app.exception, [e.value for e in app.exception]
        assert app.slider(key=ui.STEP).value == expected
    assert app.subheader[0].value.startswith(f"Step {last + 1} of {last + 1}")

    # Clicking on at the end stays at the end
    app.button(key=ui.NEXT).click().run()
    assert app.slider(key=ui.STEP).value == last

    # The gradient beside autograd's, equal up to float64 rounding (the
    # engine's own tests hold it to 1e-10 relative)
    assert COMPARISON in [h.value for h in app.subheader]
    metrics = {m.label: float(m.value) for m in app.metric}
    assert metrics["max relative difference"] <= 1e-10
    assert metrics["max abs difference"] <= 1e-10

    # Previous goes back one, Reset to the start
    app.button(key=ui.PREVIOUS).click().run()
    assert app.slider(key=ui.STEP).value == last - 1
    app.button(key=ui.RESET).click().run()
    assert app.slider(key=ui.STEP).value == 0
    assert COMPARISON not in [h.value for h in app.subheader]


def test_bad_csv_shows_the_engine_message_without_a_traceback(app: AppTest) -> None:
    app.radio(key=ui.SOURCE).set_value("CSV upload").run()
    assert not app.exception
    app.file_uploader(key=ui.CSV_FILE).set_value(
        ("bad.csv", b"x1,x2,y\n1,2,a\n3,4,b\n", "text/csv")
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    messages = [e.value for e in app.error]
    assert len(messages) == 1
    assert "no column named 'label'" in messages[0]
    assert "'x1', 'x2', 'y'" in messages[0]

    # Text in a numeric column: the line and column are named
    app.file_uploader(key=ui.CSV_FILE).set_value(
        ("text.csv", b"x1,x2,label\n1,2,a\n3,four,b\n", "text/csv")
    ).run()
    assert not app.exception
    assert "line 3, column 'x2'" in app.error[0].value

    # A good file clears the error and the trace appears
    app.file_uploader(key=ui.CSV_FILE).set_value(
        ("good.csv", b"x1,x2,label\n1,2,a\n3,4,b\n0,1,a\n2,2,b\n", "text/csv")
    ).run()
    assert not app.exception and not app.error
    assert app.slider(key=ui.STEP).max >= 5


def test_custom_network_training_and_large_fonts(app: AppTest) -> None:
    app.toggle(key=ui.LARGE_FONTS).set_value(True).run()
    app.selectbox(key=ui.PRESET).set_value(ui.CUSTOM).run()
    app.slider(key=ui.HIDDEN_LAYERS).set_value(2).run()
    app.slider(key=ui.width_key(0)).set_value(6).run()
    app.checkbox(key=ui.CONV).check().run()
    assert not app.exception and not app.error

    # An impossible convolution is an error message, not a crash
    app.slider(key=ui.CONV_KERNEL).set_value(5)
    app.slider(key=ui.width_key(0)).set_value(3)
    app.run()
    assert not app.exception
    assert "kernel_size 5" in app.error[0].value
    app.slider(key=ui.width_key(0)).set_value(8).run()
    assert not app.error

    # Training shows its summary with the accuracy before and after
    app.slider(key=ui.TRAIN_STEPS).set_value(30).run()
    app.button(key=ui.TRAIN).click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Full-batch gradient descent" in c.value for c in app.caption)
    # The order-of-multiplication sentence gives both counts
    assert any("Reverse order takes" in m.value for m in app.markdown)


def test_bed_topography_cells_are_an_input(app: AppTest, helheim_grid_path) -> None:
    # Cells of the Helheim grid in place of a toy set; the chain still runs.
    app.radio(key=ui.SOURCE).set_value(ui.SOURCES[2]).run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert int(app.slider(key=ui.STEP).max) >= 5


def test_bed_topography_cells_missing_say_how_to_fetch(
    app: AppTest, tmp_path, monkeypatch
) -> None:
    # No data directory and an empty cache: a message, not a traceback.
    monkeypatch.setenv("GREENBED_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("GREENBED_CACHE_DIR", str(tmp_path / "cache"))
    ui.bed_data.clear()  # an earlier test may have cached the cells
    app.radio(key=ui.SOURCE).set_value(ui.SOURCES[2]).run()
    assert not app.exception
    assert any("python -m engine data fetch" in e.value for e in app.error)
