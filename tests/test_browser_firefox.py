"""A source's whole visit in Debian's Firefox ESR at Tor Browser's Safest level (tests/firefox.py),
against the real app in a real Gunicorn process: English and Spanish, each on a laptop's
viewport (1280 x 800) and on a phone's (390 x 844).

landing -> language -> first time -> codename -> the other language (the same codename), back,
reload (the same again) -> continue -> message and three files -> send: too large (the limit is
lowered to 512 KiB), the form comes back with the message -> the two smaller files -> send ->
confirmation, reloaded (nothing more is stored) -> no replies yet -> log out; the newsroom
replies (written to the store by the test); landing -> returning -> codename -> the reply ->
delete it, confirmed -> the session lost while typing: the message comes back. Every step
leaves a screenshot under the test's tmp dir; no page script ever runs, and nothing is asked of
any origin but the server.
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

LIMIT = 512 * 1024
SIZES = {"laptop": (1280, 800), "phone": (390, 844)}
OTHER = {"en": "es", "es": "en"}
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


def _items(server: LiveServer) -> int:
    """How many items the store holds, all sources together."""
    store = server.store()
    return sum(len(store.items_of(source.id)) for source in store.list_sources())


def _uploads(tmp_path: Path, lang: str) -> list[Path]:
    """The two files to send, and a third that takes the total over the limit."""
    text = TEXT[lang]
    uploads = [tmp_path / name for name in (*text["files"], "too-big.bin")]
    uploads[0].write_text(f"{text['message']}\n" * 50, encoding="utf-8")
    uploads[1].write_bytes(os.urandom(300 * 1024))
    uploads[2].write_bytes(os.urandom(LIMIT))
    return uploads


def _codename_holds(browser: Firefox, lang: str) -> str:
    """First time: the codename survives the other language, going back and a reload."""
    browser.click("a#first-time")
    assert _at(browser, lang, "generate")
    codename = browser.text("#codename")
    assert len(codename.split()) >= 5, codename
    browser.shot("codename")
    browser.click(f"a[hreflang={OTHER[lang]}]")
    assert _at(browser, OTHER[lang], "generate")
    assert browser.find("html").get_attribute("lang") == OTHER[lang]
    assert browser.text("#codename") == codename
    browser.shot("codename-other-language")
    browser.marionette.go_back()
    assert _at(browser, lang, "generate")
    assert browser.text("#codename") == codename
    browser.marionette.refresh()
    assert browser.text("#codename") == codename
    return codename


def _refused_then_sent(browser: Firefox, server: LiveServer, lang: str, files: list[Path]) -> None:
    """Too large: the form comes back with the message; the retry, in the same session, is sent
    and confirmed, and a reload of the confirmation stores nothing more."""
    message = TEXT[lang]["message"]
    browser.click("a#continue")
    assert _at(browser, lang, "submit")
    browser.type("textarea[name=message]", message)
    browser.choose_files("input[name=files][type=file][multiple]", files)
    browser.shot("submit-too-large")
    browser.click("#send")
    assert "512 KiB" in browser.text(".flash-error")
    assert browser.find("textarea[name=message]").get_property("value") == message
    _no_script_ran(browser)
    browser.shot("refused-too-large")
    assert server.store().list_sources() == []

    browser.choose_files("input[name=files][type=file][multiple]", files[:2])
    browser.shot("submit-filled")
    browser.click("#send")
    assert _at(browser, lang, "received")
    received = browser.find_all("#received li")
    assert len(received) == 2  # the message, and "2 files (…)"
    assert "2 " in received[1].text
    browser.shot("received")
    assert _items(server) == 3
    browser.marionette.refresh()  # a GET: the same summary, nothing stored again
    assert len(browser.find_all("#received li")) == 2
    browser.shot("received-reloaded")
    assert _items(server) == 3


def _newsroom_replies(server: LiveServer, lang: str) -> None:
    """The newsroom finds the message and both files under their names, and replies."""
    store = server.store()
    sources = store.list_sources()
    assert len(sources) == 1
    identity = load_identities(server.identity_path.read_bytes())[0]
    names = sorted(store.read_member(item, identity)[0] for item in store.items_of(sources[0].id))
    assert names == sorted(["message.txt", *TEXT[lang]["files"]])
    store.add_reply_text(sources[0].id, TEXT[lang]["reply"])


def _back_for_the_reply(browser: Firefox, server: LiveServer, lang: str, codename: str) -> None:
    """Log in with the codename, read the reply, delete it (asked first)."""
    browser.go(f"{server.url}/{lang}/")
    browser.click("a#returning")
    assert _at(browser, lang, "login")
    browser.type("input[name=codename]", codename)
    browser.shot("login")
    browser.click("#login")
    assert _at(browser, lang, "lookup")
    assert [r.text for r in browser.find_all(".reply .reply-text")] == [TEXT[lang]["reply"]]
    _no_script_ran(browser)
    browser.shot("reply")
    browser.click("a.delete-reply")
    assert browser.find("form#confirm-delete").is_displayed()
    browser.shot("confirm-delete")
    browser.click("#confirm")
    assert _at(browser, lang, "lookup")
    assert browser.find("#no-replies").is_displayed()
    browser.shot("reply-deleted")


def _session_lost_while_typing(browser: Firefox, server: LiveServer, lang: str) -> None:
    """The session ends (Tor Browser restarted, say) while the source types: the message comes
    back to copy, with the ways forward, and nothing is stored."""
    message = TEXT[lang]["message"]
    browser.click("a#submit-more")
    browser.type("textarea[name=message]", message)
    before = _items(server)
    browser.marionette.delete_all_cookies()
    browser.click("#send")
    assert browser.find("textarea#lost-message").get_property("value") == message
    assert browser.find("a#start-again").get_attribute("href") == f"/{lang}/generate"
    _no_script_ran(browser)
    browser.shot("session-lost")
    assert _items(server) == before


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("lang", ["en", "es"])
def test_source_journey_in_firefox(
    lang: str, size: str, live_server: StartServer, firefox: StartFirefox, tmp_path: Path
) -> None:
    server = live_server(env={"TIPBOX_MAX_SUBMISSION_BYTES": str(LIMIT)})
    browser = firefox(viewport=SIZES[size])

    browser.go(f"{server.url}/")
    _no_script_ran(browser)
    browser.shot("landing")
    browser.click(f"a[hreflang={lang}]")
    assert browser.find("html").get_attribute("lang") == lang
    browser.shot(f"landing-{lang}")

    codename = _codename_holds(browser, lang)
    _refused_then_sent(browser, server, lang, _uploads(tmp_path, lang))

    browser.go(f"{server.url}/{lang}/lookup")
    assert browser.find("#no-replies").is_displayed()
    browser.click("form#logout [type=submit]")
    assert browser.find_all("form#logout") == []
    browser.shot("logged-out")
    browser.go(f"{server.url}/{lang}/lookup")
    assert not _at(browser, lang, "lookup")  # the session is gone

    _newsroom_replies(server, lang)
    _back_for_the_reply(browser, server, lang, codename)
    _session_lost_while_typing(browser, server, lang)

    assert browser.requests, "no page load was recorded"
    assert browser.foreign_requests(server.origin) == []
