"""The climate-clustering page in a real browser, offline."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_quick_run_then_the_time_slider_changes_the_map(
    offline_page, app_url, wfde5_dir, screenshot_dir
):
    page = offline_page

    # Open the page; the demo cube is summarised.
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("link", name="Climate clustering").first.click()
    page.get_by_text("Time steps").first.wait_for(timeout=90_000)

    # The quick setting: daily means, k-means, run.
    page.get_by_text("Daily means instead of the file's steps").click()
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Timeline").wait_for(timeout=300_000)

    # Move the time slider with the keyboard: the date and map title change.
    heading = page.get_by_text("2017-01-01 00:00", exact=False).first
    heading.wait_for(timeout=30_000)
    slider = page.get_by_role("slider", name="Time step")
    slider.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.get_by_text("2017-01-06 00:00", exact=False).first.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshot_dir / "climate.png"), full_page=True)
    assert page.blocked_requests == []
