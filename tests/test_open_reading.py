"""The reading view ``tipbox open`` writes (app/cli/reading.py): read as HTML, then rendered
from ``file://`` in headless Chromium and in Firefox at Tor Browser's Safest level."""

from __future__ import annotations

import html
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.cli.reading import CSP, STYLE, shown
from tests.firefox import StartFirefox
from tests.helpers import TIPBOX, run
from tests.live import BrowserSession
from tests.test_airgap import folder, open_bundle
from tests.test_bundle import Newsroom

HOSTILE = (
    '<script>alert(1)</script><img src=x onerror="alert(2)"><style>body{display:none}</style>'
    '<a href="http://example.com/x">click</a> <iframe src="https://example.com"></iframe>'
    "\u202eevil\u202c & done"
)
LONG_LINE = "x" * 5000
EVIL_NAME = "<img src=x onerror=alert(3)>.pdf"


@dataclass
class Opened:
    out: Path
    designation: str
    page: Path


@pytest.fixture
def opened(tmp_path: Path) -> Opened:
    """Two bundles opened into one folder: a hostile conversation, then a reply."""
    newsroom = Newsroom(tmp_path)
    source = newsroom.submit(HOSTILE, [(EVIL_NAME, b"%PDF-1.4"), ("long.txt", b"y")])
    newsroom.submit(LONG_LINE, source_id=source)
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    newsroom.store.add_reply_text(source, "we read it <b>not bold</b>")
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    name = folder(newsroom, source)
    out = tmp_path / "out"
    return Opened(out, newsroom.designation(source), out / name / "conversation.html")


def test_the_page_escapes_everything(opened: Opened) -> None:
    page = opened.page.read_text("utf-8")
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert CSP.startswith("default-src 'none'; style-src 'sha256-")
    assert page.count("<style>") == 1
    assert f"<style>{STYLE}</style>" in page
    for tag in ("<script", "<img", "<iframe", '<a href="http', 'onerror="'):
        assert tag not in page
    assert html.escape(shown(HOSTILE)) in page
    assert "\u202e" not in page
    assert "&lt;img src=x onerror=alert(3)&gt;.pdf" in page
    assert html.escape("we read it <b>not bold</b>") in page


def test_the_page_reads_in_order_and_marks_what_is_new(opened: Opened) -> None:
    page = opened.page.read_text("utf-8")
    assert [int(n) for n in re.findall(r'id="item-(\d+)"', page)] == [1, 2, 3, 4, 5]
    assert page.count('<span class="new">new</span>') == 1  # the reply of the second run
    assert page.count('<section class="sub') == 3  # message + 2 files, message, reply
    index = (opened.out / "index.html").read_text("utf-8")
    assert f">{opened.designation}</a>" in index
    assert '<span class="new">1 new</span>' in index
    assert "2 messages, 2 files, 1 reply" in index


def test_the_reply_command_on_the_page_works(opened: Opened, tmp_path: Path) -> None:
    page = opened.page.read_text("utf-8")
    command = html.unescape(page.split("then run:</p>\n<pre>")[1].split("</pre>")[0])
    argv = shlex.split(command)
    assert argv[:2] == ["tipbox", "reply"]
    assert argv[argv.index("--source") + 1] == opened.designation
    draft = tmp_path / argv[-1]
    draft.write_text("thank you, we will call\n", encoding="utf-8")
    proc = run([*TIPBOX, *argv[1:]], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b"upload it in the journalist app" in proc.stdout


def test_shown_text_is_printable() -> None:
    assert shown("a\tb\nc\x1b[31md\u202ee\x85") == "a\tb\nc\ufffd[31md\ufffde\ufffd"


# --- in real browsers --------------------------------------------------------------------------


def _uri(path: Path) -> str:
    return path.resolve().as_uri()


@pytest.mark.browser
@pytest.mark.slow
def test_chromium_renders_from_file(opened: Opened, browser: BrowserSession) -> None:
    page = browser.page
    page.goto(_uri(opened.out / "index.html"))
    page.get_by_text(opened.designation, exact=True).click()
    page.wait_for_url("**/conversation.html")
    titles = page.locator(".item h2").all_inner_texts()
    assert [t.split()[0] for t in titles] == ["#1", "#2", "#3", "#4", "#5"]
    assert "new" in titles[-1]
    first = page.locator(".item pre").first.inner_text()
    assert first.startswith("<script>alert(1)</script><img src=x")
    for tag in ("img", "script", "iframe", "a[href^='http']"):
        assert page.locator(tag).count() == 0
    assert page.locator("body").evaluate("e => getComputedStyle(e).maxWidth") == "736px"
    page.set_viewport_size({"width": 360, "height": 740})  # a phone
    for selector in ("pre", "a"):
        for box in (page.locator(selector).nth(n).bounding_box() for n in range(2)):
            assert box is not None
            assert box["x"] + box["width"] <= 360
    browser.shot("phone")
    pages = [_uri(opened.out / "index.html"), _uri(opened.page)]
    assert browser.requests == pages  # the two pages, and nothing else
    assert browser.blocked == []


@pytest.mark.firefox
@pytest.mark.slow
def test_firefox_safest_renders_from_file(opened: Opened, firefox: StartFirefox) -> None:
    browser = firefox(viewport=(390, 844))
    browser.go(_uri(opened.out / "index.html"))
    browser.click("a[href$='conversation.html']")
    browser.wait_for("the conversation", lambda: browser.url.endswith("conversation.html"))
    titles = [e.text for e in browser.find_all(".item h2")]
    assert [t.split()[0] for t in titles] == ["#1", "#2", "#3", "#4", "#5"]
    assert browser.find_all(".item pre")[0].text.startswith("<script>alert(1)</script>")
    for tag in ("img", "script", "iframe", "a[href^='http']"):
        assert browser.find_all(tag) == []
    assert browser.find("body").value_of_css_property("max-width") == "736px"  # CSP let it in
    for element in browser.find_all("pre"):
        rect = element.rect
        assert rect["x"] + rect["width"] <= 390
    browser.shot("phone")
    # Firefox names a file:// page's own entry "document"; any style, image or font it
    # fetched would be a resource entry of its own.
    assert browser.requests == ["document"]
    assert browser.sink.seen == []
