"""The journalist app's doors: login, sessions, CSRF, admin pages, accounts, tokens, headers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.errors import ConfigError
from app.journalist import create_app
from app.journalist.config import JournalistConfig, load
from app.server.headers import HEADERS
from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_app import find, one
from tests.fixtures_journalist import (
    PASSWORD,
    Clock,
    add_user,
    code,
    csrf,
    logged_in,
    login,
    state_of,
)

config, translations_dir = fx.config, fx.translations_dir
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock

FAILED = "Login failed. Check your username, password and code"
PAGES = ["/", "/account", "/admin/users", "/sources/" + "a" * 64]


def _failure(response_text: str) -> bool:
    return FAILED in response_text


LOGIN_CASES = {
    "wrong password": {"password": PASSWORD + "x"},
    "wrong code": {"otp": "000000"},
    "malformed code": {"otp": "abcdef"},
    "unknown user": {"name": "mallory"},
    "empty password": {"password": ""},
}


@pytest.mark.parametrize("case", list(LOGIN_CASES))
def test_every_login_failure_reads_the_same(japp: Flask, jclient: FlaskClient, case: str) -> None:
    user = add_user(japp)
    change = LOGIN_CASES[case]
    if "name" in change:
        user = lj.User(change["name"], user.password, user.secret)
    response = login(jclient, japp, user, password=change.get("password"), otp=change.get("otp"))
    assert response.status_code == 200
    assert _failure(response.text)
    assert jclient.get("/").status_code == 303


def test_login_and_logout(japp: Flask, jclient: FlaskClient) -> None:
    logged_in(jclient, japp)
    assert jclient.get("/").status_code == 200
    cookie = jclient.get_cookie("tipbox_journalist")
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Strict"
    token = csrf(jclient, "/")
    response = jclient.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert jclient.get("/").status_code == 303
    # Replaying the old cookie does not bring the session back: it was ended server-side.
    replay = japp.test_client()
    replay.set_cookie("tipbox_journalist", cookie.value)
    assert replay.get("/").status_code == 303


def test_a_reused_code_is_refused(japp: Flask, jclient: FlaskClient, clock: Clock) -> None:
    user = add_user(japp)
    first = code(user, japp, steps=1)
    assert login(jclient, japp, user, otp=first).status_code == 303  # login moves 1 step on
    other = japp.test_client()
    response = login(other, japp, user, otp=first)
    assert _failure(response.text)


def test_sixth_try_in_a_minute_is_locked_with_the_same_message(
    japp: Flask, jclient: FlaskClient, clock: Clock
) -> None:
    user = add_user(japp)
    for _ in range(5):
        assert _failure(login(jclient, japp, user, password="not the password").text)
        clock.advance(-25)  # login() moves 30 s on: stay inside one minute
    response = login(jclient, japp, user)
    assert response.status_code == 200
    assert _failure(response.text)
    clock.advance(60)
    assert login(jclient, japp, user).status_code == 303


@pytest.mark.parametrize(("idle", "wait"), [(True, 30 * 60), (False, 8 * 60 * 60)])
def test_sessions_expire(
    japp: Flask, jclient: FlaskClient, clock: Clock, idle: bool, wait: int
) -> None:
    logged_in(jclient, japp)
    if not idle:
        for _ in range(wait // (20 * 60) - 1):  # busy all along, never idle
            clock.advance(20 * 60)
            assert jclient.get("/").status_code == 200
    clock.advance(wait if idle else 20 * 60)
    response = jclient.get("/")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert "Your session ended" in jclient.get("/login").text


@pytest.mark.parametrize(
    "url",
    [
        "/logout",
        "/bundle",
        "/account/tokens",
        "/admin/users",
        "/sources/" + "a" * 64 + "/delete",
    ],
)
def test_posts_without_csrf_are_refused(japp: Flask, jclient: FlaskClient, url: str) -> None:
    logged_in(jclient, japp, admin=True)
    response = jclient.post(url, data={"scope": "all", "name": "x", "username": "bob"})
    assert response.status_code == 400
    assert "open too long" in one(response.data, id="error-message").text
    assert state_of(japp).accounts.find("bob") is None


def test_login_without_csrf_is_refused(japp: Flask, jclient: FlaskClient) -> None:
    user = add_user(japp)
    response = jclient.post(
        "/login", data={"username": user.name, "password": PASSWORD, "code": code(user, japp)}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("url", PAGES)
def test_pages_need_a_session(jclient: FlaskClient, url: str) -> None:
    response = jclient.get(url)
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/admin/users"),
        ("post", "/admin/users"),
        ("post", "/admin/users/1/delete"),
        ("post", "/admin/users/1/reset-password"),
        ("post", "/admin/users/1/reset-totp"),
        ("get", "/admin/enrol.png"),
    ],
)
def test_non_admins_get_no_admin_page(
    japp: Flask, jclient: FlaskClient, method: str, url: str
) -> None:
    admin = add_user(japp, "root", admin=True)
    logged_in(jclient, japp)
    token = csrf(jclient, "/account")
    response = getattr(jclient, method)(url, data={"csrf_token": token, "username": "eve"})
    assert response.status_code == 403
    assert state_of(japp).accounts.find("root") is not None
    assert admin


def test_admin_enrols_a_journalist(japp: Flask, jclient: FlaskClient) -> None:
    logged_in(jclient, japp, "root", admin=True)
    page = jclient.get("/admin/users")
    suggestion = one(page.data, "input", id="password")["value"]
    assert len(suggestion.split()) == 7
    token = find(page.data, "input", name="csrf_token")[0]["value"]
    response = jclient.post(
        "/admin/users", data={"csrf_token": token, "username": "bob", "password": suggestion}
    )
    assert response.status_code == 200
    secret = one(response.data, id="secret").text
    assert one(response.data, "img", id="qr")["src"] == "/admin/enrol.png"
    png = jclient.get("/admin/enrol.png")
    assert png.status_code == 200
    assert png.mimetype == "image/png"
    assert png.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert png.headers["Cache-Control"] == "no-store"
    bob = lj.User("bob", suggestion, secret)
    assert login(japp.test_client(), japp, bob).status_code == 303


def test_admin_resets_and_deletes(japp: Flask, jclient: FlaskClient) -> None:
    logged_in(jclient, japp, "root", admin=True)
    bob = add_user(japp, "bob")
    bob_id = state_of(japp).accounts.find("bob").id  # type: ignore[union-attr]
    token = csrf(jclient, "/admin/users")
    yes = {"csrf_token": token, "confirm": "yes"}
    page = jclient.post(f"/admin/users/{bob_id}/reset-password", data=yes)
    password = one(page.data, id="password").text
    assert login(japp.test_client(), japp, bob).status_code == 200  # old password: refused
    assert login(japp.test_client(), japp, lj.User("bob", password, bob.secret)).status_code == 303
    page = jclient.post(f"/admin/users/{bob_id}/reset-totp", data=yes)
    secret = one(page.data, id="secret").text
    assert secret != bob.secret
    own = state_of(japp).accounts.find("root").id  # type: ignore[union-attr]
    jclient.post(f"/admin/users/{own}/delete", data=yes)
    assert state_of(japp).accounts.find("root") is not None
    jclient.post(f"/admin/users/{bob_id}/delete", data=yes)
    assert state_of(japp).accounts.find("bob") is None


def test_change_password(japp: Flask, jclient: FlaskClient) -> None:
    user = logged_in(jclient, japp)
    token = csrf(jclient, "/account")
    wrong = jclient.post(
        "/account/password", data={"csrf_token": token, "current": "nope", "new": "x" * 20}
    )
    assert wrong.status_code == 303
    assert wrong.headers["Location"] == "/account"
    short = jclient.post(
        "/account/password", data={"csrf_token": token, "current": PASSWORD, "new": "short"}
    )
    assert "at least 14" in jclient.get(short.headers["Location"]).text
    done = jclient.post(
        "/account/password", data={"csrf_token": token, "current": PASSWORD, "new": "y" * 20}
    )
    assert done.headers["Location"] == "/login"
    assert jclient.get("/").status_code == 303
    assert login(jclient, japp, lj.User(user.name, "y" * 20, user.secret)).status_code == 303


def test_api_tokens_are_shown_once_and_revocable(japp: Flask, jclient: FlaskClient) -> None:
    logged_in(jclient, japp)
    token = csrf(jclient, "/account")
    page = jclient.post("/account/tokens", data={"csrf_token": token, "name": "my script"})
    secret = one(page.data, id="token").text
    assert secret.startswith("tbx_")
    account = jclient.get("/account").text
    assert "my script" in account
    assert secret not in account
    assert jclient.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).json == {
        "username": "alice",
        "admin": False,
    }
    token_id = re.search(r"/account/tokens/(\d+)/revoke", account).group(1)  # type: ignore[union-attr]
    jclient.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": token, "confirm": "yes"})
    assert (
        jclient.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    )


@pytest.mark.parametrize("url", ["/login", "/", "/account", "/nowhere", "/static/journalist.css"])
def test_every_response_has_the_header_table(japp: Flask, jclient: FlaskClient, url: str) -> None:
    logged_in(jclient, japp)
    response = jclient.get(url)
    body = response.get_data()
    response.close()
    for name, value in HEADERS.items():
        if name == "Cache-Control" and url.startswith("/static/"):
            continue
        assert response.headers[name] == value, name
    assert b"http://" not in body
    assert b"https://" not in body


def test_wrong_host_gets_the_warning(jclient: FlaskClient) -> None:
    response = jclient.get("/login", headers={"Host": "journalists.example.com"})
    assert response.status_code == 421
    assert one(response.data, id="warning")


def test_config_from_env() -> None:
    loaded = load({"TIPBOX_JOURNALIST_IDLE_MINUTES": "5", "TIPBOX_PASSWORD_TIME_COST": "2"})
    assert (loaded.idle_seconds, loaded.password_cost.time_cost) == (300, 2)
    for bad in ({"TIPBOX_JOURNALIST_IDLE_MINUTES": "0"}, {"TIPBOX_PASSWORD_TIME_COST": "x"}):
        with pytest.raises(ConfigError):
            load(bad)


def test_refuses_to_start_without_a_newsroom_key(jconfig: JournalistConfig) -> None:
    for path in jconfig.base.keys_dir.iterdir():
        path.unlink()
    with pytest.raises(ConfigError, match="no newsroom recipient"):
        create_app(jconfig)


def test_importing_the_journalist_package_loads_no_web_stack() -> None:
    code = "import sys, app.journalist; print('flask' in sys.modules, 'sqlite3' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "False"]
