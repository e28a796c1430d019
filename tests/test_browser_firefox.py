"""A source's whole visit in Debian's Firefox ESR at Tor Browser's Safest level (tests/firefox.py),
against the real app in a real Gunicorn process: English and Spanish, on a laptop's viewport
(1280 x 800) and on a phone's (390 x 844).

landing -> language -> first time -> codename -> continue -> message and two files -> send ->
confirmation -> no replies yet -> log out; the newsroom replies (written to the store by the
test); landing -> returning -> codename -> the reply. Every step leaves a screenshot under the
test's tmp dir; no page script runs, and nothing is asked of any origin but the server.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from app.crypto.keyfile import load_identities
from tests.firefox import Firefox, StartFirefox
from tests.live import LiveServer, StartServer

pytestmark = [pytest.mark.firefox, pytest.mark.slow]

SIZES = {"laptop": (1280, 800), "phone": (390, 844)}
TEXT = {
    "en": {
        "message": "The harbour master signs the manifests before the ships arrive.",
        "files": ("manifests-2024.txt", "photo of the ledger.jpg"),
        "reply": "Thank you. Which berth? — The newsroom",
    },
    "es": {
        "message": "El capitán del puerto firma los manifiestos antes de que lleguen los barcos.",
        "files": ("manifiestos-año-2024.txt", "foto del libro de registro.jpg"),
        "reply": "Gracias. ¿Qué muelle? — La redacción",
    },
}


def _at(browser: Firefox, lang: str, page: str) -> bool:
    return re.fullmatch(rf"http://127\.0\.0\.1:\d+/{lang}/{page}", browser.url) is not None


def _no_script_ran(browser: Firefox) -> None:
    """The page's one script (static/banner.js) would mark <html> with the class ``js``."""
    assert "js" not in (browser.find("html").get_attribute("class") or "").split()
    assert not browser.find(".js-banner").is_displayed()


def _uploads(tmp_path: Path, lang: str) -> list[Path]:
    text = TEXT[lang]
    uploads = [tmp_path / name for name in text["files"]]
    uploads[0].write_text(f"{text['message']}\n" * 50, encoding="utf-8")
    uploads[1].write_bytes(os.urandom(300 * 1024))
    return uploads


def _newsroom_replies(server: LiveServer, lang: str) -> None:
    """The newsroom finds the message and both files under their names, and replies."""
    store = server.store()
    sources = store.list_sources()
    assert len(sources) == 1
    identity = load_identities(server.identity_path.read_bytes())[0]
    names = sorted(store.read_member(item, identity)[0] for item in store.items_of(sources[0].id))
    assert names == sorted(["message.txt", *TEXT[lang]["files"]])
    store.add_reply_text(sources[0].id, TEXT[lang]["reply"])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("lang", ["en", "es"])
def test_source_journey_in_firefox(
    lang: str, size: str, live_server: StartServer, firefox: StartFirefox, tmp_path: Path
) -> None:
    server = live_server()
    browser = firefox(viewport=SIZES[size])
    text = TEXT[lang]

    browser.go(f"{server.url}/")
    _no_script_ran(browser)
    browser.shot("landing")
    browser.click(f"a[hreflang={lang}]")
    assert browser.find("html").get_attribute("lang") == lang
    browser.shot(f"landing-{lang}")

    browser.click("a#first-time")
    assert _at(browser, lang, "generate")
    codename = browser.text("#codename")
    assert len(codename.split()) >= 5, codename
    browser.shot("codename")

    browser.click("a#continue")
    assert _at(browser, lang, "submit")
    browser.type("textarea[name=message]", text["message"])
    browser.choose_files("input[name=files][type=file][multiple]", _uploads(tmp_path, lang))
    browser.shot("submit-filled")
    browser.click("#send")
    received = browser.find_all("#received li")
    assert len(received) == 2  # the message, and "2 files (…)"
    assert "2 " in received[1].text
    _no_script_ran(browser)
    browser.shot("received")

    browser.go(f"{server.url}/{lang}/lookup")
    assert browser.find("#no-replies").is_displayed()
    browser.click("form#logout [type=submit]")
    assert browser.find_all("form#logout") == []
    browser.shot("logged-out")

    _newsroom_replies(server, lang)
    browser.go(f"{server.url}/{lang}/")
    browser.click("a#returning")
    assert _at(browser, lang, "login")
    browser.type("input[name=codename]", codename)
    browser.shot("login")
    browser.click("#login")
    assert _at(browser, lang, "lookup")
    replies = browser.find_all(".reply .reply-text")
    assert [r.text for r in replies] == [text["reply"]]
    _no_script_ran(browser)
    browser.shot("reply")

    assert browser.requests, "no page load was recorded"
    assert browser.foreign_requests(server.origin) == []
