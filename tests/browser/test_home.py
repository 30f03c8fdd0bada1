"""The home page in a real browser, with no network."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_home_map_shows_demo_grid_and_radar_offline(
    offline_page, app_url, data_dir, screenshot_dir
):
    page = offline_page

    # Open the home page and time its first full load.
    start = time.monotonic()
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Where data is available").wait_for(timeout=90_000)
    frame = page.frame_locator('iframe[title="streamlit_folium.st_folium"]')
    frame.locator(".leaflet-container").wait_for(timeout=60_000)
    load_s = time.monotonic() - start
    print(f"home page first load: {load_s:.1f} s")

    # The Helheim grid outline and the radar lines are drawn as vector paths.
    paths = frame.locator("path.leaflet-interactive")
    paths.first.wait_for(timeout=30_000)
    assert paths.count() >= 5  # outline + grid + BedMachine + 2 radar sets + 79N

    # The layer control lists the demo grid and the flight lines.
    layers = frame.locator(".leaflet-control-layers")
    layers.hover()
    text = layers.inner_text()
    assert "Helheim demo grid" in text
    assert "Helheim radar flight lines" in text

    # Nothing was fetched from outside the machine.
    assert page.blocked_requests == []
    page.screenshot(path=str(screenshot_dir / "home.png"), full_page=True)

    # Zooming to the demo region redraws the map around the Helheim grid.
    # While the script reruns, the old map's iframe stays beside the new
    # one for a moment; look inside once one is left.
    page.get_by_text("Helheim demo", exact=True).click()
    maps = page.locator('iframe[title="streamlit_folium.st_folium"]')
    expect(maps).to_have_count(1, timeout=30_000)
    frame = maps.first.content_frame
    expect(frame.locator("path.leaflet-interactive").first).to_be_visible(
        timeout=30_000
    )
    page.wait_for_timeout(1500)
    page.screenshot(path=str(screenshot_dir / "home_helheim.png"), full_page=True)
    assert page.blocked_requests == []
