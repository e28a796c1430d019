"""Every page of both apps, for the accessibility tests (tests/test_a11y.py).

:func:`walk` visits them once in Chromium with JavaScript off, as a source and a journalist
would (real Gunicorns, real forms: the confirmation pages, the 413 and 429 pages and the
enrolment are reached by posting), and keeps each page's HTML as a :class:`Snapshot`.
:func:`open_snapshot` serves a snapshot again, unchanged, at its own URL in any browser context
(its stylesheet and images still come from the server), so that each check gets the page it
needs: the axe-core audit with JavaScript on, the width and focus checks without.

axe-core is the npm package pinned in tests/node/package.json (``npm ci --prefix tests/node``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyotp

from app.db import migrated
from app.journalist.accounts import Accounts
from tests.fixtures_journalist import CHEAP, PASSWORD
from tests.gunicorn_launch import REPO
from tests.live import CHROMIUM, CHROMIUM_ARGS, LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Response, Route

AXE = REPO / "tests" / "node" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
MAX_SUBMISSION = 4096
RATE_LIMIT = 15  # per session and minute: the walk's own session stays under it
SOURCE_ENV = {
    "TIPBOX_MAX_SUBMISSION_BYTES": str(MAX_SUBMISSION),
    "TIPBOX_RATE_LIMIT_SESSION": f"{RATE_LIMIT} per minute",
}
REPLY = "Thank you. Which office keeps the originals? Please tell us more. — The newsroom"

SOURCE_PAGES = [
    "landing",
    "landing (es)",
    "generate",
    "submit",
    "submit refused",
    "received",
    "413",
    "logged out",
    "login",
    "login failed",
    "lookup with replies",
    "confirm delete reply",
    "confirm delete all replies",
    "session lost",
    "404",
    "429",
    "warning",
]
JOURNALIST_PAGES = [
    "login",
    "login failed",
    "sources",
    "source",
    "source after reply",
    "confirm delete items",
    "confirm delete source",
    "journalists",
    "enrolment",
    "confirm delete journalist",
    "confirm new TOTP",
    "account",
    "token",
    "confirm revoke token",
    "tokens of a journalist",
    "404",
]
PAGES = [f"source {n}" for n in SOURCE_PAGES] + [f"journalist {n}" for n in JOURNALIST_PAGES]


@dataclass(frozen=True)
class Snapshot:
    """One page as the server sent it."""

    name: str
    url: str
    status: int
    html: str


class Walker:
    """A JavaScript-free page that keeps a snapshot of each page it is told to."""

    def __init__(self, context: BrowserContext, prefix: str, kept: dict[str, Snapshot]) -> None:
        self.page = context.new_page()
        self.prefix, self.kept, self.status = prefix, kept, 0
        self.page.on("response", self._seen)

    def _seen(self, response: Response) -> None:
        if response.request.resource_type == "document":
            self.status = response.status

    def keep(self, name: str, status: int = 200) -> None:
        full = f"{self.prefix} {name}"
        self.page.wait_for_load_state("load")  # a click returns once the next page has begun
        assert self.status == status, (full, self.status, self.page.url)
        self.kept[full] = Snapshot(full, self.page.url, self.status, self.page.content())


def launch(playwright: Any) -> Browser:
    """Debian's Chromium, as in tests/live.py."""
    browser: Browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    return browser


def no_js_context(browser: Browser, **options: Any) -> BrowserContext:
    """A context like a source's Tor Browser at Safest: no JavaScript, English."""
    return browser.new_context(java_script_enabled=False, locale="en-US", **options)


def walk(
    browser: Browser, source: LiveServer, journalist: LiveServer, tmp: Path
) -> dict[str, Snapshot]:
    """Visit every page of :data:`PAGES`; their snapshots by name."""
    kept: dict[str, Snapshot] = {}
    context = no_js_context(browser)
    try:
        walker = Walker(context, "source", kept)
        codename = _source_sends(walker, source.url, tmp)
        _journalist_works(Walker(context, "journalist", kept), journalist.url, source)
        _source_returns(walker, source.url, codename)
    finally:
        context.close()
    _rate_limited(browser, source.url, kept)
    _warned(browser, source.url, kept)
    missing = [name for name in PAGES if name not in kept]
    assert not missing, missing
    for snapshot in kept.values():  # to look at when a check fails
        (tmp / f"{snapshot.name}.html").write_text(snapshot.html, "utf-8")
    return kept


def _source_sends(walker: Walker, base: str, tmp: Path) -> str:
    page = walker.page
    page.goto(f"{base}/")
    walker.keep("landing")
    page.goto(f"{base}/es/")
    walker.keep("landing (es)")
    page.goto(f"{base}/")
    page.click("#first-time")
    walker.keep("generate")
    codename = " ".join(page.inner_text("#codename").split())
    page.click("#continue")
    walker.keep("submit")
    page.click("#send")
    walker.keep("submit refused")
    small, large = tmp / "notes.txt", tmp / "scan.bin"
    small.write_bytes(b"invoice 17\n" * 40)
    large.write_bytes(b"\0" * (MAX_SUBMISSION * 2))
    page.fill("#message", "The mayor's office shreds invoices every Friday.")
    page.set_input_files("#files", [small])
    page.click("#send")
    walker.keep("received")
    page.click("#send-more")
    page.set_input_files("#files", [large])
    page.click("#send")
    walker.keep("413", 413)
    page.goto(f"{base}/en/submit")
    page.click("form#logout button")
    walker.keep("logged out")
    return codename


def _journalist_works(walker: Walker, base: str, source: LiveServer) -> None:
    page = walker.page
    accounts = Accounts(migrated(source.data_dir), CHEAP)
    _, secret = accounts.add("ada", PASSWORD, admin=True)
    page.goto(f"{base}/login")
    walker.keep("login")
    _log_in(page, PASSWORD + "!", "000000")
    walker.keep("login failed")
    _log_in(page, PASSWORD, pyotp.TOTP(secret).now())
    page.click("a.designation")
    walker.keep("source")
    page.click("button[value=star]")
    page.click("details summary")
    page.fill("#text", REPLY)
    page.click("#reply-text-form button")
    walker.keep("source after reply")
    page.check("input[name=item] >> nth=0")
    page.click("#items-form button.danger")
    walker.keep("confirm delete items")
    page.click("#cancel")
    page.click("#delete-source button")
    walker.keep("confirm delete source")
    page.click("#cancel")
    page.goto(f"{base}/")
    walker.keep("sources")
    _admin_pages(walker, base)


def _log_in(page: Page, password: str, code: str) -> None:
    page.fill("#username", "ada")
    page.fill("#password", password)
    page.fill("#code", code)
    page.click("#login")


def _admin_pages(walker: Walker, base: str) -> None:
    page = walker.page
    page.goto(f"{base}/admin/users")
    walker.keep("journalists")
    page.fill("#username", "bob")
    page.click("#add-user button[type=submit]")
    walker.keep("enrolment")
    page.goto(f"{base}/admin/users")
    page.click("#user-bob button:has-text('Delete')")
    walker.keep("confirm delete journalist")
    page.goto(f"{base}/admin/users")
    page.click("#user-bob button:has-text('New TOTP')")
    walker.keep("confirm new TOTP")
    page.goto(f"{base}/account")
    page.fill("#name", "nightly export")
    page.click("form:has(#name) button")
    walker.keep("token")
    page.goto(f"{base}/account")
    walker.keep("account")
    page.click("#tokens button")
    walker.keep("confirm revoke token")
    page.goto(f"{base}/admin/users")
    page.click("#user-ada a:has-text('API tokens')")
    walker.keep("tokens of a journalist")
    page.goto(f"{base}/nowhere")
    walker.keep("404", 404)


def _source_returns(walker: Walker, base: str, codename: str) -> None:
    page = walker.page
    page.goto(f"{base}/en/login")
    walker.keep("login")
    page.fill("#codename", "not my codename at all")
    page.click("#login")
    walker.keep("login failed")
    page.fill("#codename", codename)
    page.click("#login")
    walker.keep("lookup with replies")
    page.click("a.delete-reply >> nth=0")
    walker.keep("confirm delete reply")
    page.click("#cancel")
    page.click("#delete-all")
    walker.keep("confirm delete all replies")
    page.goto(f"{base}/en/submit")
    page.fill("#message", "Typed while the session ran out.")
    page.context.clear_cookies()  # the browser was restarted, or the session ended
    page.click("#send")
    walker.keep("session lost", 400)
    page.goto(f"{base}/en/nowhere")
    walker.keep("404", 404)


def _rate_limited(browser: Browser, base: str, kept: dict[str, Snapshot]) -> None:
    """A fresh session asks for codenames until it is refused (bounded)."""
    context = no_js_context(browser)
    try:
        walker = Walker(context, "source", kept)
        walker.page.goto(f"{base}/en/generate")  # one derivation; a reload keeps the codename
        for _ in range(RATE_LIMIT + 2):
            walker.page.click("#another")  # each new codename is another derivation
            if walker.status == 429:
                break
        walker.keep("429", 429)
    finally:
        context.close()


def _warned(browser: Browser, base: str, kept: dict[str, Snapshot]) -> None:
    """The page a tor2web proxy gets."""
    context = no_js_context(browser, extra_http_headers={"X-Tor2web": "1"})
    try:
        walker = Walker(context, "source", kept)
        walker.page.goto(f"{base}/")
        walker.keep("warning", 403)
    finally:
        context.close()


def open_snapshot(context: BrowserContext, snapshot: Snapshot) -> Page:
    """A new page showing ``snapshot`` at its URL (nothing else is faked)."""
    page = context.new_page()

    def serve(route: Route) -> None:
        route.fulfill(
            status=snapshot.status,
            content_type="text/html; charset=utf-8",
            body=snapshot.html,
        )

    page.route(lambda url: url == snapshot.url, serve)
    page.goto(snapshot.url)
    return page


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.0/2.1/2.2 A and AA violations on ``page`` (JavaScript must be on)."""
    assert AXE.is_file(), "axe-core is missing: npm ci --prefix tests/node (make test does it)"
    page.evaluate(AXE.read_text("utf-8"))
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {
                runOnly: {type: "tag", values: tags}, resultTypes: ["violations"],
            });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
            }));
        }""",
        WCAG_TAGS,
    )
    return found


# --- focus ----------------------------------------------------------------------------------

FOCUSED = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const style = getComputedStyle(el);
    let node = el.parentElement, background = "rgb(255, 255, 255)";
    while (node) {
        const colour = getComputedStyle(node).backgroundColor;
        if (!/^rgba\\(.*, 0\\)$/.test(colour) && colour !== "transparent") {
            background = colour;
            break;
        }
        node = node.parentElement;
    }
    return {
        what: el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
            + " " + (el.textContent || el.getAttribute("aria-label") || "").trim().slice(0, 40),
        style: style.outlineStyle, width: parseFloat(style.outlineWidth),
        colour: style.outlineColor, background: background,
    };
}"""
_RGB = re.compile(r"rgba?\(([\d.]+), ([\d.]+), ([\d.]+)(?:, ([\d.]+))?\)")


def focus_stops(page: Page, limit: int = 80) -> Iterator[dict[str, Any]]:
    """What each Tab press focuses (outline and the background behind it), in order."""
    first = None
    for _ in range(limit):
        page.keyboard.press("Tab")
        stop = page.evaluate(FOCUSED)
        if stop is None or stop == first:
            return
        first = first or stop
        yield stop


def rgb(colour: str) -> tuple[float, float, float]:
    """A computed CSS colour (``rgb(…)`` or ``rgba(…)``) as 0–255 channels."""
    match = _RGB.fullmatch(colour)
    assert match is not None, colour
    return float(match[1]), float(match[2]), float(match[3])


def contrast(one: str, other: str) -> float:
    """WCAG 2 contrast ratio of two computed colours."""
    lighter, darker = sorted((_luminance(rgb(one)), _luminance(rgb(other))), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _luminance(channels: tuple[float, float, float]) -> float:
    def linear(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
