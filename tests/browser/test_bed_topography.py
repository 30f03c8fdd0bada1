"""The bed-topography page in a real browser: draw, run, see, download."""

from __future__ import annotations

import time

import pytest
import xarray as xr

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_draw_run_quick_and_download_the_prediction(
    offline_page, app_url, helheim_grid_path, screenshot_dir, tmp_path
):
    page = offline_page

    # Open the page from the navigation; the map shows the Helheim grid.
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("link", name="Bed topography").first.click()
    page.get_by_text("1. Region").wait_for(timeout=90_000)
    frame_el = page.locator('iframe[title="streamlit_folium.st_folium"]').first
    frame_el.wait_for(timeout=60_000)
    frame = page.frame_locator('iframe[title="streamlit_folium.st_folium"]').first
    frame.locator("path.leaflet-interactive").first.wait_for(timeout=60_000)

    # Draw a rectangle with the mouse in the middle of the grid.
    frame.locator("a.leaflet-draw-draw-rectangle").click()
    box = frame_el.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 100, cy - 100)
    page.mouse.down()
    page.mouse.move(cx, cy, steps=5)
    page.mouse.move(cx + 100, cy + 100, steps=5)
    page.mouse.up()

    # The region is checked and summarised: fewer cells than the whole grid.
    page.wait_for_timeout(1500)
    cells = page.locator('[data-testid="stMetric"]', has_text="Cells at 150 m")
    cells.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => !document.body.innerText.includes('60,000')", timeout=30_000
    )
    page.screenshot(path=str(screenshot_dir / "bed_region.png"), full_page=True)

    # Start a quick run: progress first, then the results.
    start = time.monotonic()
    page.get_by_role("button", name="Run DeepTopoNet").click()
    page.get_by_text("Job ", exact=False).first.wait_for(timeout=60_000)
    page.get_by_text("3. Results").wait_for(timeout=600_000)
    seconds = time.monotonic() - start
    print(f"bed page: click to results {seconds:.0f} s")
    page.get_by_text("Scores on held-out radar").wait_for(timeout=60_000)
    maps = page.locator('iframe[title="streamlit_folium.st_folium"]')
    assert maps.count() == 2  # the region map and the result map
    result_map = page.frame_locator('iframe[title="streamlit_folium.st_folium"]').nth(1)
    result_map.locator("img.leaflet-image-layer").first.wait_for(timeout=60_000)
    maps.nth(1).evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(screenshot_dir / "bed_result_map.png"))

    # A profile along a flight line is drawn.
    page.get_by_text("Profile", exact=True).scroll_into_view_if_needed()
    profile = page.locator(".js-plotly-plot").filter(has_text="distance (km)").first
    profile.wait_for(timeout=60_000)
    assert "DeepTopoNet" in profile.inner_text()
    page.screenshot(path=str(screenshot_dir / "bed_results.png"), full_page=True)

    # Download the prediction and open it with xarray.
    with page.expect_download(timeout=60_000) as download_info:
        page.get_by_role("button", name="prediction (NetCDF)").click()
    target = tmp_path / "prediction.nc"
    download_info.value.save_as(target)
    with xr.open_dataset(target) as prediction:
        assert "bed" in prediction
        assert prediction.rio.crs.to_epsg() == 3413
    assert page.blocked_requests == []
