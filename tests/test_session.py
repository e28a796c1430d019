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
from app.session import (
    COOKIE_NAME,
    SECRET_SIZE,
    EncryptedSessionInterface,
    load_secret,
)
from tests.fixtures_app import (
    csrf_token,
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
