"""Journalists' sessions and API tokens: when they end, and who may end them."""

from __future__ import annotations

import contextlib
import io

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import cli
from app.journalist.config import JournalistConfig
from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_app import one, parse
from tests.fixtures_journalist import CHEAP_ENV, PASSWORD, add_user, csrf, logged_in, state_of
from tests.test_journalist_confirm import confirm_form, send

config, translations_dir = fx.config, fx.translations_dir
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock
COOKIE = "tipbox_journalist"


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def test_a_cookie_captured_before_logout_is_refused_after_it(
    japp: Flask, jclient: FlaskClient
) -> None:
    logged_in(jclient, japp)
    token = csrf(jclient, "/account")
    captured = _cookie(jclient)
    assert jclient.post("/logout", data={"csrf_token": token}).status_code == 303
    thief = japp.test_client()
    thief.set_cookie(COOKIE, captured)
    response = thief.get("/account")
    assert (response.status_code, response.headers["Location"]) == (303, "/login")
    thief.set_cookie(COOKIE, captured)
    response = thief.post("/account/tokens", data={"csrf_token": token, "name": "stolen"})
    assert (response.status_code, response.headers["Location"]) == (303, "/login")


def _token_for(app: Flask, name: str) -> tuple[int, str]:
    """A new journalist ``name`` with an API token; their id and the token."""
    user = add_user(app, name)
    journalist = state_of(app).accounts.find(user.name)
    assert journalist is not None
    return journalist.id, state_of(app).tokens.create(journalist, "script")


def _works(app: Flask, token: str) -> bool:
    response = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 200


@pytest.mark.parametrize("reset", ["reset-password", "reset-totp"])
def test_an_admin_reset_revokes_the_api_tokens(
    japp: Flask, jclient: FlaskClient, reset: str
) -> None:
    logged_in(jclient, japp, "boss", admin=True)
    user_id, token = _token_for(japp, "alice")
    assert _works(japp, token)
    response = jclient.post(
        f"/admin/users/{user_id}/{reset}",
        data={"csrf_token": csrf(jclient, "/admin/users"), "confirm": "yes"},
    )
    assert response.status_code == 200
    assert not _works(japp, token)


def test_changing_ones_own_password_revokes_ones_api_tokens(
    japp: Flask, jclient: FlaskClient
) -> None:
    user = logged_in(jclient, japp)
    journalist = state_of(japp).accounts.find(user.name)
    assert journalist is not None
    token = state_of(japp).tokens.create(journalist, "script")
    form = {"csrf_token": csrf(jclient, "/account"), "current": PASSWORD, "new": "x" * 20}
    assert jclient.post("/account/password", data=form).status_code == 303
    assert not _works(japp, token)


@pytest.mark.parametrize("command", ["reset-password", "reset-totp"])
def test_a_reset_on_the_command_line_revokes_the_api_tokens(
    japp: Flask, jconfig: JournalistConfig, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    _, token = _token_for(japp, "alice")
    monkeypatch.setenv("TIPBOX_DATA_DIR", str(jconfig.base.data_dir))
    for name, value in CHEAP_ENV.items():
        monkeypatch.setenv(name, value)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli.main(["user", command, "alice"]) == 0
    assert "API tokens" in out.getvalue()
    assert not _works(japp, token)


def test_an_admin_lists_and_revokes_another_journalists_token_after_confirming(
    japp: Flask, jclient: FlaskClient
) -> None:
    logged_in(jclient, japp, "boss", admin=True)
    user_id, token = _token_for(japp, "alice")
    listing = jclient.get(f"/admin/users/{user_id}/tokens")
    assert listing.status_code == 200
    assert one(listing.data, "li", cls="token").text.strip().startswith("script")
    form = next(e for e in parse(listing.data) if e.tag == "form" and "/revoke" in e["action"])
    ask = jclient.post(form["action"], data={"csrf_token": csrf(jclient, listing.request.path)})
    assert ask.status_code == 200
    assert _works(japp, token)  # asking is not doing
    response = send(jclient, *confirm_form(ask))
    assert (response.status_code, response.headers["Location"]) == (
        303,
        f"/admin/users/{user_id}/tokens",
    )
    assert not _works(japp, token)
    assert b"No tokens." in jclient.get(f"/admin/users/{user_id}/tokens").data


def test_only_admins_see_or_revoke_other_journalists_tokens(
    japp: Flask, jclient: FlaskClient
) -> None:
    logged_in(jclient, japp, "bob")
    user_id, token = _token_for(japp, "alice")
    assert jclient.get(f"/admin/users/{user_id}/tokens").status_code == 403
    response = jclient.post(
        f"/admin/users/{user_id}/tokens/1/revoke", data={"csrf_token": csrf(jclient, "/account")}
    )
    assert response.status_code == 403
    assert _works(japp, token)
