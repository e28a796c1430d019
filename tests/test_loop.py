"""The whole loop with real processes: source -> journalist -> air gap -> journalist -> source.

A source sends a message and two files in real Chromium with JavaScript off (the source app in
its own Gunicorn); a journalist logs in to the journalist app (its own Gunicorn, the deploy
config) with a password and a TOTP code computed here, and downloads a bundle of unread sources;
``tipbox open`` (a subprocess, into a folder standing in for the air-gapped machine) restores
the exact bytes and names; ``tipbox reply`` writes a reply; the journalist uploads it; the source
logs in with its codename in Chromium and reads it.
"""

from __future__ import annotations

import http.cookiejar
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import expect
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from app.db import migrated
from app.journalist.accounts import Accounts
from tests import fixtures_journalist as lj
from tests.fixtures_app import find, one
from tests.fixtures_journalist import CHEAP, PASSWORD
from tests.gunicorn_launch import REPO
from tests.live import BrowserSession, LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]
journalist_server = lj.journalist_server

MESSAGE = "The harbour authority falsifies its inspection reports.\nAsk about pier 7."
FILES = {"inspection report (draft).pdf": os.urandom(70_000), "notes-ñ.txt": b"pier 7\n" * 500}
REPLY = "Thank you. Can you send the final report too? - The newsroom"
TIMEOUT = 120


class Journalist:
    """A cookie-keeping HTTP client for the journalist app, as a browser without JavaScript."""

    def __init__(self, base: str) -> None:
        self.base = base
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def get(self, path: str) -> tuple[str, bytes]:
        with self.opener.open(self.base + path, timeout=TIMEOUT) as response:
            return response.url, response.read()

    def post(self, path: str, fields: MultiDict[str, object]) -> tuple[str, bytes]:
        boundary, body = encode_multipart(fields)
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.base + path,
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with self.opener.open(request, timeout=TIMEOUT) as response:
            return response.url, response.read()

    def form(self, page: str, **fields: object) -> MultiDict[str, object]:
        """The fields, after the CSRF token of the page at ``page`` (forms put it first)."""
        token = find(self.get(page)[1], "input", name="csrf_token")[0]["value"]
        return MultiDict([("csrf_token", token), *fields.items()])


def _tipbox(*args: str | Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _source_submits(server: LiveServer, browser: BrowserSession, tmp_path: Path) -> str:
    page = browser.page
    uploads = []
    for name, data in FILES.items():
        path = tmp_path / "source" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        uploads.append(path)
    page.goto(f"{server.url}/")
    page.click("a#first-time")
    codename = " ".join(page.inner_text("#codename").split())
    page.click("a#continue")
    page.fill("textarea[name=message]", MESSAGE)
    page.set_input_files("input[name=files][type=file][multiple]", uploads)
    page.click("#send")
    expect(page.locator("#received li")).not_to_have_count(0)
    browser.shot("sent")
    page.click("form#logout [type=submit]")
    return codename


def test_the_whole_loop(
    live_server: Callable[..., LiveServer],
    journalist_server: Callable[[LiveServer], LiveServer],
    browser: BrowserSession,
    tmp_path: Path,
) -> None:
    source = live_server()
    newsroom = journalist_server(source)
    codename = _source_submits(source, browser, tmp_path)

    # The journalist logs in with a password and a TOTP code, and downloads the unread sources.
    _, secret = Accounts(migrated(source.data_dir), CHEAP).add("alice", PASSWORD)
    journalist = Journalist(newsroom.url)
    code = pyotp.TOTP(secret).now()
    fields = journalist.form("/login", username="alice", password=PASSWORD, code=code)
    url, page = journalist.post("/login", fields)
    assert url == f"{newsroom.url}/", page.decode()
    row = one(page, "tr", cls="unread")
    source_id = row.attrs["id"].removeprefix("source-")
    designation = one(page, "a", cls="designation").text
    _, bundle = journalist.post("/bundle", journalist.form("/", scope="unread"))
    (tmp_path / "bundle.tar").write_bytes(bundle)

    # The air-gapped machine opens it: the exact names and bytes come back.
    airgap = tmp_path / "airgap"
    _tipbox("open", tmp_path / "bundle.tar", "-i", source.identity_path, "--out", airgap)
    folder = airgap / "-".join(designation.split())
    assert (folder / "message-1.txt").read_text("utf-8") == MESSAGE
    restored = {p.name: p.read_bytes() for p in (folder / "files").iterdir()}
    assert restored == FILES
    reply = tmp_path / "reply.age"
    _tipbox("reply", airgap, "--source", designation, "--message", REPLY, "-o", reply)

    # The journalist uploads the reply; the source is now read.
    upload = FileStorage(reply.open("rb"), "reply.age", "reply", "application/octet-stream")
    with upload.stream:
        fields = journalist.form(f"/sources/{source_id}", reply=upload)
        _, page = journalist.post(f"/sources/{source_id}/reply", fields)
    assert b"The reply was stored" in page
    assert find(journalist.get("/?show=unread")[1], "tr", cls="source") == []

    # The source comes back with its codename and reads it.
    browser.page.goto(f"{source.url}/")
    browser.page.click("a#returning")
    browser.page.fill("input[name=codename]", codename)
    browser.page.click("#login")
    expect(browser.page.locator(".reply .reply-text")).to_have_text(REPLY)
    browser.shot("reply")
    assert browser.foreign_requests(source.origin) == []
