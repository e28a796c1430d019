"""A source's whole visit in real Chromium with JavaScript off (Tor Browser's Safest level),
against the real app in a real Gunicorn process, in English and in Spanish.

landing -> first time -> codename -> the other language and back (the same codename) ->
continue -> message and three files -> send: too large (the limit is lowered to 512 KiB), the
form comes back with the message -> two files -> send -> confirmation, reloaded (nothing more
is stored) -> no replies yet -> log out; a journalist replies (written to the store by the
test); landing -> returning -> codename -> the reply -> delete it, confirmed -> the session
lost while typing: the message comes back. Each language at 1280x800 (a laptop) and at
390x844 (a phone). Every step leaves a screenshot under the test's tmp dir, and the browser
never asks anything of any origin but the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from app.crypto.keyfile import load_identities
from tests.live import BrowserSession, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEXT = {
    "en": {
        "message": "The mayor's office shreds invoices every Friday.",
        "files": ("invoices-2024.txt", "photo of the shredder.jpg"),
        "reply": "Thank you. Could you tell us which floor? — The newsroom",
    },
    "es": {
        "message": "La alcaldía destruye las facturas cada viernes. ¿Les interesa?",
        "files": ("facturas-año-2024.txt", "foto de la trituradora.jpg"),
        "reply": "Gracias. ¿Nos puede decir en qué piso? — La redacción",
    },
}


LIMIT = 512 * 1024
VIEWPORTS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
OTHER = {"en": "es", "es": "en"}


def _path(lang: str, page: str) -> re.Pattern[str]:
    return re.compile(rf"^http://127\.0\.0\.1:\d+/{lang}/{page}$")


def _items(server: LiveServer) -> int:
    store = server.store()
    return sum(len(store.items_of(source.id)) for source in store.list_sources())


@pytest.mark.parametrize("size", VIEWPORTS)
@pytest.mark.parametrize("lang", ["en", "es"])
def test_source_journey_without_javascript(
    lang: str,
    size: str,
    live_server: Callable[..., LiveServer],
    browser: BrowserSession,
    tmp_path: Path,
) -> None:
    text = TEXT[lang]
    server = live_server(env={"TIPBOX_MAX_SUBMISSION_BYTES": str(LIMIT)})
    page = browser.page
    page.set_viewport_size(VIEWPORTS[size])
    uploads = [tmp_path / name for name in text["files"]]
    uploads[0].write_text(f"{text['message']}\n" * 50, encoding="utf-8")
    uploads[1].write_bytes(os.urandom(300 * 1024))
    too_big = tmp_path / "too-big.bin"
    too_big.write_bytes(os.urandom(LIMIT))

    page.goto(f"{server.url}/")
    expect(page.locator("html")).not_to_have_class(re.compile(r"\bjs\b"))
    expect(page.locator(".js-banner")).to_be_hidden()
    browser.shot("landing")
    page.click(f"a[hreflang={lang}]")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    browser.shot(f"landing-{lang}")

    page.click("a#first-time")
    expect(page).to_have_url(_path(lang, "generate"))
    codename = " ".join(page.inner_text("#codename").split())
    assert len(codename.split()) >= 5, codename
    browser.shot("codename")
    # The language switch, a reload and going back all show the same codename.
    page.click(f"a[hreflang={OTHER[lang]}]")
    expect(page).to_have_url(_path(OTHER[lang], "generate"))
    assert " ".join(page.inner_text("#codename").split()) == codename
    browser.shot("codename-other-language")
    page.go_back()
    page.reload()
    expect(page).to_have_url(_path(lang, "generate"))
    assert " ".join(page.inner_text("#codename").split()) == codename

    page.click("a#continue")
    expect(page).to_have_url(_path(lang, "submit"))
    page.fill("textarea[name=message]", text["message"])
    page.set_input_files("input[name=files][type=file][multiple]", [*uploads, too_big])
    browser.shot("submit-too-large")
    page.click("#send")
    # Refused: the form again, with the message, the reason, and the same session.
    expect(page.locator(".flash-error")).to_contain_text("512 KiB")
    expect(page.locator("textarea[name=message]")).to_have_value(text["message"])
    browser.shot("refused-too-large")
    assert server.store().list_sources() == []

    page.set_input_files("input[name=files][type=file][multiple]", uploads)
    browser.shot("submit-filled")
    page.click("#send")
    expect(page).to_have_url(_path(lang, "received"))
    received = page.locator("#received li")
    expect(received).to_have_count(2)  # the message, and "2 files (…)"
    expect(received.nth(1)).to_contain_text("2 ")
    browser.shot("received")
    assert _items(server) == 3
    page.reload()  # a GET: shows the same summary, stores nothing more
    expect(received).to_have_count(2)
    assert _items(server) == 3

    page.goto(f"{server.url}/{lang}/lookup")
    expect(page.locator("#no-replies")).to_be_visible()
    expect(page.locator(".reply")).to_have_count(0)
    browser.shot("no-replies")

    page.click("form#logout [type=submit]")
    expect(page.locator("form#logout")).to_have_count(0)
    browser.shot("logged-out")
    page.goto(f"{server.url}/{lang}/lookup")
    expect(page).not_to_have_url(_path(lang, "lookup"))  # the session is gone
    browser.shot("lookup-after-logout")

    # The newsroom: the store holds the message and both files, under their names; it replies.
    store = server.store()
    sources = store.list_sources()
    assert len(sources) == 1
    identity = load_identities(server.identity_path.read_bytes())[0]
    names = sorted(store.read_member(item, identity)[0] for item in store.items_of(sources[0].id))
    assert names == sorted(["message.txt", *text["files"]])
    store.add_reply_text(sources[0].id, text["reply"])

    page.goto(f"{server.url}/{lang}/" if lang != "en" else f"{server.url}/")
    page.click("a#returning")
    expect(page).to_have_url(_path(lang, "login"))
    page.fill("input[name=codename]", codename)
    browser.shot("login")
    page.click("#login")
    expect(page).to_have_url(_path(lang, "lookup"))
    expect(page.locator(".reply")).to_have_count(1)
    expect(page.locator(".reply .reply-text")).to_have_text(text["reply"])
    expect(page.locator("#no-replies")).to_have_count(0)
    browser.shot("reply")

    # Deleting asks first, with a plain form.
    page.click("a.delete-reply")
    expect(page.locator("form#confirm-delete")).to_be_visible()
    browser.shot("confirm-delete")
    page.click("#confirm")
    expect(page).to_have_url(_path(lang, "lookup"))
    expect(page.locator("#no-replies")).to_be_visible()
    browser.shot("reply-deleted")

    # The session is lost (Tor Browser restarted, say) while the source types: the message comes
    # back to copy, with the ways forward.
    page.click("a#submit-more")
    page.fill("textarea[name=message]", text["message"])
    before = _items(server)
    browser.context.clear_cookies()
    page.click("#send")
    expect(page.locator("textarea#lost-message")).to_have_value(text["message"])
    expect(page.locator("a#start-again")).to_have_attribute("href", f"/{lang}/generate")
    browser.shot("session-lost")
    assert _items(server) == before

    assert browser.requests, "no request was recorded"
    assert browser.foreign_requests(server.origin) == []
