"""Rate limits count only work done: a derivation or a stored submission (app/source/limits.py)."""

from __future__ import annotations

import os

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Config
from app.server import counters
from tests import fixtures_journalist as lj
from tests.fixtures_app import csrf_token, make_app, new_source, one, submit
from tests.fixtures_journalist import add_user, login

jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock

# What a flood can send without a session or a token: each is refused before any work.
CHEAP = [
    ("POST", "/en/login"),
    ("POST", "/en/submit"),
    ("POST", "/en/logout"),
    ("POST", "/en/replies/delete"),
    ("GET", "/"),
    ("GET", "/en/login"),
    ("GET", "/en/submit"),
]


@pytest.mark.parametrize(("method", "url"), CHEAP)
def test_refused_and_cheap_requests_cost_nothing_shared(config: Config, method: str, url: str):
    """Ten times the global limit of such requests, and a new source still gets a codename
    and submits."""
    app = make_app(config, rate_limit_global="3 per minute")
    flood = app.test_client()
    for _ in range(30):
        flood.open(url, method=method)
        flood.delete_cookie("tipbox")  # no session carries over
    source = app.test_client()
    new_source(source)
    assert submit(source, "a tip").status_code == 303


def test_a_session_without_a_valid_token_costs_nothing(config: Config) -> None:
    app = make_app(config, rate_limit_session="2 per minute", rate_limit_global="2 per minute")
    client = app.test_client()
    csrf_token(client, "/en/login")  # a real session, but the posts carry a wrong token
    for _ in range(10):
        assert (
            client.post("/en/login", data={"csrf_token": "x", "codename": "a"}).status_code == 400
        )
    new_source(client)
    assert submit(client, "a tip").status_code == 303


def test_derivations_and_submissions_count(config: Config) -> None:
    """A codename (one derivation) and a submission: two units; the third is refused."""
    app = make_app(config, rate_limit_session="2 per minute")
    client = app.test_client()
    new_source(client)
    assert submit(client, "one").status_code == 303
    response = submit(client, "two")
    assert response.status_code == 429
    assert one(response.data, id="error-message")


def test_a_refused_request_does_not_use_up_the_allowance(config: Config) -> None:
    """Requests refused with 429 are not counted: the global window still ends on time and a
    second session's allowance is untouched by the first one's refusals."""
    app = make_app(config, rate_limit_session="1 per minute", rate_limit_global="2 per minute")
    first, second = app.test_client(), app.test_client()
    new_source(first)
    # The codename page keeps its codename: only asking for another derives again.
    token = csrf_token(first, "/en/generate")
    again = [first.post("/en/generate", data={"csrf_token": token}) for _ in range(5)]
    assert [response.status_code for response in again] == [429] * 5
    new_source(second)
    third = app.test_client()
    assert third.get("/en/generate").status_code == 429


def test_journalist_logins_without_a_token_do_not_count(japp: Flask, jclient: FlaskClient):
    """A login post refused for its CSRF token never reaches the account's five attempts a
    minute, so a flood of them cannot lock a journalist out."""
    user = add_user(japp)
    for _ in range(20):
        form = {"username": user.name, "password": "wrong", "code": "000000"}
        assert jclient.post("/login", data=form).status_code == 400
    response = login(jclient, japp, user)
    assert (response.status_code, response.headers.get("Location")) == (303, "/")


def test_apps_of_one_server_count_together(config: Config, monkeypatch: pytest.MonkeyPatch):
    """Two apps (two workers) given the master's counters file count in it together; without
    the variable (the Flask test client) each counts alone."""
    alone = [make_app(config, rate_limit_global="3 per minute") for _ in range(2)]
    fd = counters.create()
    try:
        monkeypatch.setenv(counters.ENV, str(fd))
        shared = [make_app(config, rate_limit_global="3 per minute") for _ in range(2)]
        codes = [shared[n % 2].test_client().get("/en/generate").status_code for n in range(4)]
        assert codes == [200, 200, 200, 429]
    finally:
        os.close(fd)
    codes = [alone[n % 2].test_client().get("/en/generate").status_code for n in range(4)]
    assert codes == [200, 200, 200, 200]
