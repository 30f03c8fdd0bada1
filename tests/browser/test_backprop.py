"""The backpropagation page in a real browser: step through a small network."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser


def test_step_button_walks_the_chain_to_the_gradient(
    offline_page, app_url, screenshot_dir
):
    page = offline_page

    # Open the page from the navigation.
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_role("link", name="Backpropagation").first.click()
    page.get_by_text("2. Step through the chain").wait_for(timeout=90_000)

    # Read "Step i of n" and press Next until the last step.
    heading = page.get_by_text(re.compile(r"^Step \d+ of \d+"))
    heading.wait_for(timeout=30_000)
    total = int(re.search(r"of (\d+)", heading.inner_text()).group(1))
    assert total >= 4  # at least two layers forward and their Jacobians back
    next_button = page.get_by_role("button", name="Next", exact=True)
    for index in range(2, total + 1):
        next_button.click()
        page.get_by_text(re.compile(rf"^Step {index} of {total}")).wait_for(
            timeout=30_000
        )

    # At the end: the gradient beside autograd's, with their difference.
    page.get_by_text("Gradient: product of Jacobians vs torch.autograd").wait_for(
        timeout=30_000
    )
    assert page.get_by_text("max relative difference").count() >= 1
    page.screenshot(path=str(screenshot_dir / "backprop.png"), full_page=True)
    assert page.blocked_requests == []
