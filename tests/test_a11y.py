"""Accessibility of every page of both apps, in real Chromium against real Gunicorns.

- the axe-core audit (WCAG 2.0, 2.1 and 2.2, levels A and AA) finds nothing, with JavaScript on
  (a separate browser context: axe is a script);
- no page scrolls sideways on a 360 px wide phone;
- every focusable element has a visible focus outline of at least 3:1 against what is behind it;
- the first Tab reaches a "Skip to content" link that leads into the main content.

The pages are walked once (tests/a11y.py, JavaScript off) and each check reopens the page it
needs from that walk's snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests import a11y
from tests.a11y import PAGES, Snapshot
from tests.fixtures_journalist import start_journalist
from tests.live import start_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("a11y")]
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
SKIP = {"source landing (es)": "Saltar al contenido"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = a11y.launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def pages(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Snapshot]]:
    """Every page of both apps, walked once for the module."""
    root = tmp_path_factory.mktemp("a11y")
    source = start_server(root / "source", root / "identity.txt", env=a11y.SOURCE_ENV)
    try:
        journalist = start_journalist(source, root / "journalist")
        try:
            yield a11y.walk(browser, source, journalist, root)
        finally:
            journalist.stop()
    finally:
        source.stop()


@pytest.mark.parametrize("name", PAGES)
def test_axe_finds_no_wcag_violation(browser: Any, pages: dict[str, Snapshot], name: str) -> None:
    context = browser.new_context(java_script_enabled=True, bypass_csp=True, viewport=DESKTOP)
    try:
        page = a11y.open_snapshot(context, pages[name])
        violations = a11y.axe_violations(page)
    finally:
        context.close()
    assert not violations, json.dumps(violations, indent=1)


@pytest.mark.parametrize("name", PAGES)
def test_no_sideways_scrolling_at_360_px(
    browser: Any, pages: dict[str, Snapshot], name: str
) -> None:
    context = a11y.no_js_context(browser, viewport=PHONE)
    try:
        page = a11y.open_snapshot(context, pages[name])
        width = page.evaluate("document.documentElement.scrollWidth")
    finally:
        context.close()
    assert width <= PHONE["width"]


@pytest.mark.parametrize("name", PAGES)
def test_focus_is_visible_at_3_to_1(browser: Any, pages: dict[str, Snapshot], name: str) -> None:
    context = a11y.no_js_context(browser, viewport=DESKTOP)
    try:
        page = a11y.open_snapshot(context, pages[name])
        stops = list(a11y.focus_stops(page))
    finally:
        context.close()
    assert stops
    weak = [
        (s["what"], s["style"], s["width"], round(a11y.contrast(s["colour"], s["background"]), 2))
        for s in stops
        if s["style"] in ("none", "auto")
        or s["width"] < 2
        or a11y.contrast(s["colour"], s["background"]) < 3
    ]
    assert weak == []


FIRST = "[document.activeElement.textContent.trim(), document.activeElement.getAttribute('href')]"
INSIDE = """() => {
    const main = document.getElementById("main");
    const focusable = "a[href], button, input:not([type=hidden]), textarea, select, summary";
    return [location.hash, !main.querySelector(focusable) || main.contains(document.activeElement)];
}"""


@pytest.mark.parametrize("name", PAGES)
def test_the_first_tab_offers_to_skip_to_the_content(
    browser: Any, pages: dict[str, Snapshot], name: str
) -> None:
    context = a11y.no_js_context(browser, viewport=DESKTOP)
    try:
        page = a11y.open_snapshot(context, pages[name])
        page.keyboard.press("Tab")
        first = page.evaluate(FIRST)
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        after = page.evaluate(INSIDE)
    finally:
        context.close()
    assert first == [SKIP.get(name, "Skip to content"), "#main"]
    assert after == ["#main", True]  # the next Tab is inside the main content


def test_the_audit_sees_a_violation_when_there_is_one(browser: Any) -> None:
    context = browser.new_context(java_script_enabled=True)
    try:
        page = context.new_page()
        page.set_content("<html><body><p><img src='x.png'></p></body></html>")
        found = {v["id"] for v in a11y.axe_violations(page)}
    finally:
        context.close()
    assert {"image-alt", "html-has-lang", "document-title"} <= found
