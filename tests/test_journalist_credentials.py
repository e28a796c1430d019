"""Journalists' sessions and API tokens: when they end, and who may end them."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests import fixtures_app as fx
from tests import live_journalist as lj
from tests.live_journalist import csrf, logged_in

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
