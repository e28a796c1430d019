"""The encrypted session cookie: what it carries, what it hides, when it ends."""

from __future__ import annotations

import base64
import os
import threading
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Config
from app.errors import ConfigError
from app.server.session import (
    COOKIE_NAME,
    SECRET_SIZE,
    EncryptedSessionInterface,
    load_secret,
)
from tests.fixtures_app import (
    csrf_token,
    find,
    login,
    make_app,
    new_source,
    one,
    state_of,
    submit,
)


def interface(app: Flask) -> EncryptedSessionInterface:
    return cast(EncryptedSessionInterface, app.session_interface)


def cookie_value(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE_NAME)
    assert cookie is not None
    return cookie.value


def set_cookie_header(response: Any) -> SimpleCookie:
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(response.headers["Set-Cookie"])
    return parsed


def test_cookie_attributes(client: FlaskClient) -> None:
    response = client.get("/en/generate")
    header = response.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert attributes == {"httponly", "path", "samesite"}
    assert "SameSite=Strict" in header
    assert "Path=/" in header
    assert "Expires" not in header  # the cookie dies with the browser
    assert "Max-Age" not in header
    assert "Secure" not in header


def test_secure_cookie_is_a_config_option(config: Config) -> None:
    app = make_app(config, cookie_secure=True)
    header = app.test_client().get("/en/generate").headers["Set-Cookie"]
    assert "; Secure" in header


def test_cookie_hides_the_codename_and_the_source_id(app: Flask, client: FlaskClient) -> None:
    codename = new_source(client)
    submit(client, "hello")
    assert login(client, codename).status_code == 303
    value = cookie_value(client)
    source_id = state_of(app).store.list_sources()[0].id
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    for secret in (codename, source_id, *codename.split()):
        assert secret not in value
        assert secret.encode() not in raw
    assert bytes.fromhex(source_id) not in raw
    # It opens only with the instance key, and then holds the derived values, never the codename.
    opened = interface(app).unseal(value)
    assert opened is not None
    _issued, data = opened
    assert data["sid"] == source_id
    assert len(data["rk"]) == 32
    assert codename not in repr(data)
    assert len(value) < 600


def test_each_cookie_has_a_fresh_nonce(app: Flask) -> None:
    seal = interface(app).seal
    assert seal(1, {"a": 1}) != seal(1, {"a": 1})


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-2] + ("AA" if v[-2:] != "AA" else "BB"),
        lambda v: v[:20],
        lambda v: "",
        lambda v: "!!!not base64!!!",
        lambda v: "A" * 4050,
        lambda v: v + "A",
    ],
)
def test_tampered_cookie_is_a_new_empty_session(  # type: ignore[no-untyped-def]
    app: Flask, client: FlaskClient, tamper
) -> None:
    new_source(client)
    client.set_cookie(COOKIE_NAME, tamper(cookie_value(client)))
    response = client.get("/en/submit")
    assert response.status_code == 303  # no source in the session


def test_a_cookie_from_another_instance_does_not_open(app: Flask, config: Config, tmp_path: Path):
    other = make_app(config, secrets_dir=tmp_path / "other-secrets")
    value = interface(other).seal(interface(other).now(), {"sid": "x"})
    assert interface(app).unseal(value) is None


def test_payload_must_be_a_session_object(app: Flask) -> None:
    ours = interface(app)
    # Authentic but malformed payloads (a bug or an old format) are treated as no session.
    for bad in ([1, 2], {"i": "1", "d": {}}, {"i": 1, "d": []}, {"d": {}}):
        nonce = os.urandom(12)
        sealed = nonce + ours._aead.encrypt(
            nonce, ours.serializer.dumps(bad).encode(), b"TIPBOX_SESSION_V1"
        )
        token = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        assert ours.unseal(token) is None


@pytest.mark.parametrize(
    ("age", "expired"),
    [(0, False), (7199, False), (7200, True), (100_000, True), (-299, False), (-301, True)],
)
def test_lifetime_is_enforced_from_the_sealed_issue_time(
    app: Flask, client: FlaskClient, age: int, expired: bool
) -> None:
    ours = interface(app)
    now = ours.now()
    ours.clock = lambda: now
    new_source(client)
    ours.clock = lambda: now + age
    response = client.get("/en/lookup")
    if expired:
        assert response.status_code == 200
        assert one(response.data, id="new-identity-advice")
        assert f"{COOKIE_NAME}=;" in response.headers["Set-Cookie"]  # deleted
        assert client.get("/en/lookup").status_code == 303  # and gone
    else:
        assert response.status_code == 200
        assert one(response.data, id="no-replies")


def test_expired_session_on_a_post_gives_the_advice_not_a_csrf_error(
    app: Flask, client: FlaskClient
) -> None:
    new_source(client)
    token = csrf_token(client, "/en/submit")
    ours = interface(app)
    later = ours.now() + 2 * 3600
    ours.clock = lambda: later
    response = submit(client, "too late", [(b"x", "a.txt")], token=token)
    assert response.status_code == 400
    assert one(response.data, id="lost-advice")  # the message back, and the ways on
    assert not state_of(app).store.list_sources()


def test_expired_session_on_the_landing_page_just_starts_over(app: Flask, client: FlaskClient):
    new_source(client)
    ours = interface(app)
    later = ours.now() + 3 * 3600
    ours.clock = lambda: later
    response = client.get("/")
    assert one(response.data, "a", id="first-time")
    assert f"{COOKIE_NAME}=;" in response.headers["Set-Cookie"]


def test_session_lifetime_is_config(config: Config) -> None:
    app = make_app(config, session_minutes=1)
    client = app.test_client()
    new_source(client)
    ours = interface(app)
    later = ours.now() + 61
    ours.clock = lambda: later
    assert one(client.get("/en/lookup").data, id="new-identity-advice")
    assert app.config["WTF_CSRF_TIME_LIMIT"] == 60


def test_signing_in_restarts_the_lifetime(app: Flask, client: FlaskClient) -> None:
    codename = new_source(client)
    submit(client, "hello")
    ours = interface(app)
    start = ours.now()
    ours.clock = lambda: start + 3000
    assert login(client, codename).status_code == 303
    issued, _ = cast(tuple[int, dict[str, Any]], ours.unseal(cookie_value(client)))
    assert issued == start + 3000


def test_csrf_token_lives_in_the_session(app: Flask, client: FlaskClient) -> None:
    csrf_token(client, "/en/login")
    opened = interface(app).unseal(cookie_value(client))
    assert opened is not None
    assert set(opened[1]) == {"csrf_token"}


def test_secrets_are_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "x.key"
    first = load_secret(path)
    assert len(first) == SECRET_SIZE
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert load_secret(path) == first


def test_secrets_race_to_one_value(tmp_path: Path) -> None:
    path = tmp_path / "race.key"
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(load_secret(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["race.key"]


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (b"short", 0o600, "32-byte"),
        (b"x" * 33, 0o600, "32-byte"),
        (b"x" * 32, 0o644, "other users"),
    ],
)
def test_bad_secret_files_refuse_to_start(
    tmp_path: Path, content: bytes, mode: int, message: str
) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=message):
        load_secret(path)


def test_pepper_and_instance_key_survive_a_restart(config: Config) -> None:
    first = make_app(config)
    client = first.test_client()
    codename = new_source(client)
    submit(client, "hello")
    value = cookie_value(client)
    second = make_app(config)
    assert interface(second).unseal(value) is not None
    assert login(second.test_client(), codename).status_code == 303


def _logged_in_with_a_reply(app: Flask, client: FlaskClient) -> tuple[str, str]:
    """A source that sent something and got a reply; its cookie and CSRF token."""
    new_source(client)
    submit(client, "hello")
    store = state_of(app).store
    store.add_reply_text(store.list_sources()[0].id, "the reply only this source may read")
    token = csrf_token(client, "/en/submit")
    return cookie_value(client), token


def test_a_cookie_captured_before_logout_is_refused_after_it(
    app: Flask, client: FlaskClient
) -> None:
    captured, token = _logged_in_with_a_reply(app, client)
    assert client.post("/en/logout", data={"csrf_token": token}).status_code in (200, 303)
    thief = app.test_client()
    thief.set_cookie(COOKIE_NAME, captured)
    page = thief.get("/en/lookup")
    assert b"the reply only this source may read" not in page.data
    assert one(page.data, id="new-identity-advice")
    thief.set_cookie(COOKIE_NAME, captured)
    submit(thief, "sent after the logout", token=token)
    assert len(state_of(app).store.items_of(state_of(app).store.list_sources()[0].id)) == 2


def test_an_ended_session_stays_ended_in_another_worker_and_after_a_restart(
    app: Flask, client: FlaskClient, config: Config
) -> None:
    captured, token = _logged_in_with_a_reply(app, client)
    client.post("/en/logout", data={"csrf_token": token})
    restarted = make_app(config).test_client()  # same data folder and secrets, new process state
    restarted.set_cookie(COOKIE_NAME, captured)
    assert one(restarted.get("/en/lookup").data, id="new-identity-advice")


def test_signing_in_again_ends_the_session_it_replaces(app: Flask, client: FlaskClient) -> None:
    captured, _ = _logged_in_with_a_reply(app, client)
    # Another codename in the same browser ("give me a different codename"): the old keys go.
    client.post("/en/generate", data={"csrf_token": csrf_token(client, "/en/generate")})
    thief = app.test_client()
    thief.set_cookie(COOKIE_NAME, captured)
    assert b"the reply only this source may read" not in thief.get("/en/lookup").data


def test_ended_sessions_are_kept_only_as_keyed_digests_until_they_would_expire(
    app: Flask, client: FlaskClient
) -> None:
    import sqlite3

    captured, token = _logged_in_with_a_reply(app, client)
    client.post("/en/logout", data={"csrf_token": token})
    ours = interface(app)
    opened = ours.open_token(captured)
    assert opened is not None
    issued, session_id, _ = opened
    db = sqlite3.connect(state_of(app).store.db_path)
    rows = db.execute("SELECT * FROM ended_sessions").fetchall()
    db.close()
    assert len(rows) == 1
    digest, until = rows[0]
    assert session_id not in digest
    assert len(digest) == 16
    assert issued + ours.lifetime <= until <= issued + ours.lifetime + 3600 + 300
    later = until + 1
    ours.clock = lambda: later
    assert ours.ended is not None
    ours.ended.add(os.urandom(16), later + 60, later)  # each addition drops what has expired
    db = sqlite3.connect(state_of(app).store.db_path)
    assert digest not in [r[0] for r in db.execute("SELECT digest FROM ended_sessions")]
    db.close()


@pytest.mark.usefixtures("live_server")
def test_a_logout_holds_in_every_worker_of_a_real_server(live_server: Any) -> None:
    server = live_server()

    def get(path: str, cookie: str) -> tuple[int, str, str]:
        connection = server.connection()
        try:
            connection.request("GET", path, headers={"Cookie": cookie})
            response = connection.getresponse()
            return response.status, response.read().decode(), response.getheader("Set-Cookie", "")
        finally:
            connection.close()

    _, _, set_cookie = get("/en/generate", "")
    captured = set_cookie.split(";")[0]
    status, page, set_cookie = get("/en/submit", captured)
    assert status == 200
    captured = set_cookie.split(";")[0] or captured  # now with the CSRF token in it
    token = find(page, "input", name="csrf_token")[0]["value"]
    connection = server.connection()
    body = f"csrf_token={token}"
    headers = {"Cookie": captured, "Content-Type": "application/x-www-form-urlencoded"}
    connection.request("POST", "/en/logout", body=body, headers=headers)
    assert connection.getresponse().status in (200, 303)
    connection.close()
    for _ in range(12):  # the kernel hands connections to the three workers as it likes
        status, page, _ = get("/en/submit", captured)
        assert 'id="new-identity-advice"' in page
