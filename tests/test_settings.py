"""The newsroom's own settings (app/server/settings.py): an admin changes them in the journalist
app (app/journalist/settings.py) and the source portal uses them at once; defaults stay as
before. Both apps are real, over one real database."""

from __future__ import annotations

import sqlite3
import struct
import zlib
from io import BytesIO
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import migrated
from app.server import settings
from app.server.settings import Settings, SettingsError
from app.source.state import DEFAULT_LOGO
from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_app import find, new_source, one, submit
from tests.fixtures_journalist import csrf, logged_in

config, translations_dir, app, client = fx.config, fx.translations_dir, fx.app, fx.client
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock


def png(width: int = 16, height: int = 16, padding: int = 0) -> bytes:
    """A real PNG (grey, ``width`` x ``height``), optionally padded with a text chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    text = chunk(b"tEXt", b"c\x00" + b"x" * padding) if padding else b""
    return (
        settings.PNG_SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + text
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --- the module -----------------------------------------------------------------------------


def test_defaults_then_a_round_trip(tmp_path: Path) -> None:
    database = migrated(tmp_path)
    assert settings.load(database) == Settings()
    chosen = Settings("Daily Bugle", {"es": "Hola\nadiós"}, True, False, 20)
    settings.save(database, chosen)
    settings.save_logo(database, png())
    assert settings.load(database) == Settings(
        "Daily Bugle", {"es": "Hola\nadiós"}, True, False, 20, has_logo=True
    )
    assert settings.load_logo(database) == png()
    settings.save(database, Settings())  # the logo is saved on its own
    assert settings.load_logo(database) == png()
    settings.save_logo(database, None)
    assert settings.load(database) == Settings()
    assert settings.load_logo(database) is None


@pytest.mark.parametrize(
    ("check", "value", "needle"),
    [
        (settings.check_name, "x" * 101, "at most 100"),
        (settings.check_name, "bad\x00name", "printable"),
        (settings.check_landing, "x" * 1001, "at most 1000"),
        (settings.check_landing, "tab\there", "at most 1000"),
        (settings.check_min_length, "-1", "from 0 to 10000"),
        (settings.check_min_length, "10001", "from 0 to 10000"),
        (settings.check_min_length, "２０", "from 0 to 10000"),
        (settings.check_logo, b"GIF89a" + bytes(100), "PNG"),
        (settings.check_logo, png(2000, 10), "1024 pixels"),
        (settings.check_logo, png(padding=300_000), "256 KiB"),
    ],
)
def test_bad_values_are_refused(check: object, value: object, needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        check(value)  # type: ignore[operator]


def test_a_box_must_accept_something(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="must accept something"):
        settings.save(migrated(tmp_path), Settings(accept_messages=False, accept_files=False))


def test_good_values_are_tidied() -> None:
    assert settings.check_name("  Daily   Bugle ") == "Daily Bugle"
    assert settings.check_name("   ") is None
    assert settings.check_landing(" one  \r\ntwo \n") == "one\ntwo"
    assert settings.check_min_length("") == 0
    assert settings.check_logo(DEFAULT_LOGO.read_bytes()) == DEFAULT_LOGO.read_bytes()


# --- the admin's page, and the source portal -------------------------------------------------


def _save(jclient: FlaskClient, **fields: str) -> str:
    data = {"csrf_token": csrf(jclient, "/admin/settings"), **fields}
    response = jclient.post("/admin/settings", data=data, follow_redirects=True)
    assert response.status_code == 200
    return " ".join(p.text for p in find(response.data, "p", cls="flash"))


def test_only_admins_see_the_instance_pages(japp: Flask, jclient: FlaskClient) -> None:
    logged_in(jclient, japp, "bob")
    for url in ("/admin/settings", "/admin/audit"):
        assert jclient.get(url).status_code == 403
    assert jclient.post("/admin/settings", data={}).status_code in (400, 403)


def test_the_portal_uses_what_the_admin_saved(
    japp: Flask, jclient: FlaskClient, client: FlaskClient
) -> None:
    landing = client.get("/").data.decode()
    assert "Send Test Newsroom a tip" in landing  # the default, as before
    assert 'id="landing-text"' not in landing
    logged_in(jclient, japp, admin=True)
    saved = _save(
        jclient,
        newsroom_name="Daily Bugle",
        landing_es="Escríbanos.\n<b>sin etiquetas</b>",
        accept_messages="yes",
        min_message_length="20",
    )
    assert "Settings saved" in saved
    assert "Send Daily Bugle a tip" in client.get("/").data.decode()
    assert 'id="landing-text"' not in client.get("/").data.decode()  # none in English
    spanish = client.get("/es/")
    assert one(spanish.data, "p", id="landing-text").text == "Escríbanos.\n<b>sin etiquetas</b>"
    assert b"<b>sin" not in spanish.data  # escaped: plain text only

    new_source(client, "es")
    form = client.get("/es/submit")
    assert find(form.data, "input", id="files") == []  # no files accepted
    assert "archivos" not in form.data.decode()  # nor a word about them
    assert "20" in one(form.data, "p", id="message-minimum").text
    short = submit(client, "demasiado corto", lang="es")
    assert "Su mensaje es demasiado corto" in short.data.decode()
    refused = submit(client, "x" * 30, [(b"%PDF", "a.pdf")], lang="es")
    assert "solo mensajes" in refused.data.decode()
    sent = submit(client, "un mensaje de más de veinte caracteres", lang="es")
    assert sent.status_code == 303


@pytest.mark.parametrize(
    ("fields", "lead", "metadata_step"),
    [
        ({"accept_messages": "yes", "accept_files": "yes"}, "a message and files", True),
        ({"accept_messages": "yes"}, "a message without", False),
        ({"accept_files": "yes"}, "files without", True),
    ],
)
def test_the_landing_page_promises_what_the_box_accepts(
    japp: Flask,
    jclient: FlaskClient,
    client: FlaskClient,
    fields: dict[str, str],
    lead: str,
    metadata_step: bool,
) -> None:
    """A box that takes no files neither offers them nor warns about their metadata."""
    logged_in(jclient, japp, admin=True)
    assert "Settings saved" in _save(jclient, **fields)
    for lang in ("en", "es"):
        page = client.get(f"/{lang}/")
        assert page.status_code == 200
        text = one(page.data, "p", cls="lead").text
        if lang == "en":
            assert lead in text
        assert ("files" in text or "archivos" in text) == ("accept_files" in fields)
        steps = " ".join(li.text for li in find(page.data, "li"))
        assert ("hidden details" in steps or "datos ocultos" in steps) == metadata_step


def test_pages_read_the_settings_without_opening_the_database_each_time(
    japp: Flask, jclient: FlaskClient, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the database was a third of the landing page's time (bench year); a change still
    shows at the next page."""
    logged_in(jclient, japp, admin=True)
    _save(jclient, newsroom_name="Daily Bugle", accept_messages="yes", accept_files="yes")
    assert "Send Daily Bugle a tip" in client.get("/").data.decode()
    opened: list[object] = []
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: opened.append(a) or real(*a, **k))
    for _ in range(20):
        assert "Send Daily Bugle a tip" in client.get("/en/").data.decode()
    assert opened == []
    monkeypatch.undo()
    _save(jclient, newsroom_name="Daily Planet", accept_messages="yes", accept_files="yes")
    assert "Send Daily Planet a tip" in client.get("/en/").data.decode()


def test_files_only(japp: Flask, jclient: FlaskClient, client: FlaskClient) -> None:
    logged_in(jclient, japp, admin=True)
    _save(jclient, accept_files="yes")
    new_source(client)
    form = client.get("/en/submit")
    assert find(form.data, "textarea", id="message") == []
    assert one(form.data, "h1").text == "Send files"
    assert "accepts files only" in submit(client, "hello", [(b"%PDF", "a.pdf")]).data.decode()
    assert submit(client, "", [(b"%PDF", "a.pdf")]).status_code == 303


def test_a_bad_field_saves_nothing(japp: Flask, jclient: FlaskClient, client: FlaskClient) -> None:
    logged_in(jclient, japp, admin=True)
    said = _save(jclient, newsroom_name="Daily Bugle", accept_files="yes", min_message_length="x")
    assert "The minimum length must be a number" in said
    assert "Send Test Newsroom a tip" in client.get("/").data.decode()
    assert "must accept something" in _save(jclient, newsroom_name="Daily Bugle")


def _upload(jclient: FlaskClient, data: bytes, action: str = "upload") -> int:
    token = csrf(jclient, "/admin/settings")
    response = jclient.post(
        "/admin/settings/logo",
        data={"csrf_token": token, "action": action, "logo": (BytesIO(data), "logo.png")},
        content_type="multipart/form-data",
    )
    return response.status_code


def _logo(client: FlaskClient) -> bytes:
    response = client.get("/logo.png")
    try:
        return response.data
    finally:
        response.close()


def test_the_logo(japp: Flask, jclient: FlaskClient, client: FlaskClient) -> None:
    logged_in(jclient, japp, admin=True)
    assert _logo(client) == DEFAULT_LOGO.read_bytes()
    assert _upload(jclient, png(32, 32)) == 303
    assert _logo(client) == png(32, 32)
    assert _upload(jclient, png(padding=400_000)) == 413  # refused as it arrives
    assert _upload(jclient, b"not a png") == 303  # a flashed reason, nothing saved
    assert _logo(client) == png(32, 32)
    assert _upload(jclient, b"", "remove") == 303
    assert _logo(client) == DEFAULT_LOGO.read_bytes()
