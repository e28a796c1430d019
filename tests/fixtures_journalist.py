"""Fixtures and helpers for the journalist app (pull them into a test module or conftest.py).

In process: ``jconfig`` (the source app's test config plus the cheapest Argon2id), ``japp`` (the
real journalist app on a fake clock, so TOTP codes and session expiry are under the test's
control) and ``jclient``. Helpers add journalists, log in with a real TOTP code, add sources
with real encrypted items, and read CSRF tokens.

Real processes: ``journalist_server(source)`` starts the journalist app in its own Gunicorn,
with ``deploy/gunicorn-journalist.conf.py``, over the same data, keys and secrets as a running
source server from ``tests.live.live_server``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.config import Config
from app.crypto import X25519Identity
from app.journalist import create_app
from app.journalist.accounts import PasswordCost
from app.journalist.config import JournalistConfig
from app.journalist.state import State, get_state
from app.server.store import Item
from tests.fixtures_app import find
from tests.gunicorn_launch import (
    HOST,
    REPO,
    ServerError,
    free_port,
    server_env,
    spawn,
    wait_until_ready,
)
from tests.live import LiveServer

CHEAP = PasswordCost(time_cost=1, memory_kib=8, parallelism=1)
PASSWORD = "correct horse battery staple"
JOURNALIST_CONF = REPO / "deploy" / "gunicorn-journalist.conf.py"
JOURNALIST_APP = "app.journalist:create_app()"
# Cheap Argon2id for the real server too (a login's cost is measured in bench/journalist.py).
CHEAP_ENV = {
    "TIPBOX_PASSWORD_TIME_COST": "1",
    "TIPBOX_PASSWORD_MEMORY_KIB": "8",
    "TIPBOX_PASSWORD_PARALLELISM": "1",
}


class Clock:
    """A settable clock (seconds), for TOTP steps, throttling windows and session expiry."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class User:
    """A journalist made by a test: what they would type."""

    name: str
    password: str
    secret: str


@pytest.fixture
def jconfig(config: Config) -> JournalistConfig:
    """The source app's test config, with the cheapest Argon2id for passwords."""
    return JournalistConfig(base=config, password_cost=CHEAP)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def japp(jconfig: JournalistConfig, clock: Clock) -> Iterator[Flask]:
    """The real journalist app, its accounts and sessions on ``clock``; its purge timer stopped
    after the test."""
    app = create_app(jconfig)
    state = state_of(app)
    state.accounts.clock = clock
    state.sessions.clock = clock
    yield app
    state.accounts.attempts.stop()


@pytest.fixture
def jclient(japp: Flask) -> FlaskClient:
    return japp.test_client()


def state_of(app: Flask) -> State:
    with app.app_context():
        return get_state()


def add_user(app: Flask, name: str = "alice", admin: bool = False) -> User:
    """A journalist with :data:`PASSWORD`."""
    _, secret = state_of(app).accounts.add(name, PASSWORD, admin=admin)
    return User(name, PASSWORD, secret)


def code(user: User, app: Flask, steps: int = 0) -> str:
    """The user's TOTP code at the app's clock, ``steps`` time steps away."""
    now = state_of(app).accounts.clock()
    return pyotp.TOTP(user.secret).at(now + 30 * steps)


def csrf(client: FlaskClient, url: str = "/login") -> str:
    """The CSRF token of the first form on the page at ``url``."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return find(response.data, "input", name="csrf_token")[0]["value"]


def login(
    client: FlaskClient, app: Flask, user: User, password: str | None = None, otp: str | None = None
) -> TestResponse:
    """Post the login form (after moving the clock to a fresh TOTP step)."""
    state_of(app).accounts.clock.advance(30)  # type: ignore[attr-defined]
    token = csrf(client)
    return client.post(
        "/login",
        data={
            "csrf_token": token,
            "username": user.name,
            "password": user.password if password is None else password,
            "code": code(user, app) if otp is None else otp,
        },
    )


def logged_in(client: FlaskClient, app: Flask, name: str = "alice", admin: bool = False) -> User:
    """A new journalist, logged in with ``client``."""
    user = add_user(app, name, admin)
    response = login(client, app, user)
    assert (response.status_code, response.headers.get("Location")) == (303, "/"), response.text
    return user


def add_source(
    app: Flask,
    messages: Sequence[str] = ("hello",),
    files: Sequence[tuple[str, bytes]] = (),
    reply_identity: X25519Identity | None = None,
) -> tuple[str, list[Item]]:
    """A source with real encrypted items, as the source app would store them."""
    store = state_of(app).store
    pending = [store.add_message(text) for text in messages]
    for name, data in files:
        writer = store.writer("file", name, "application/octet-stream")
        writer.write(data)
        pending.append(writer.finish())
    source_id = os.urandom(32).hex()
    identity = reply_identity or X25519Identity.generate()
    return source_id, store.commit(source_id, str(identity.recipient), pending)


# --- a real journalist server ---------------------------------------------------------------


def start_journalist(source: LiveServer, root: Path) -> LiveServer:
    """Gunicorn with the journalist config, over ``source``'s data, keys and secrets."""
    for folder in ("tmp", "home"):
        (root / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    port = free_port()
    bind = f"{HOST}:{port}"
    env = server_env(root, bind, CHEAP_ENV)
    env.update(
        TIPBOX_DATA_DIR=str(source.data_dir),
        TIPBOX_KEYS_DIR=str(source.keys_dir),
        TIPBOX_SECRETS_DIR=str(source.secrets_dir),
        TIPBOX_JOURNALIST_BIND=bind,
    )
    process = spawn(root, JOURNALIST_APP, env, conf=JOURNALIST_CONF)
    server = LiveServer(root=root, identity_path=source.identity_path, port=port, process=process)
    try:
        if not wait_until_ready(server):
            raise ServerError(f"the journalist app did not start:\n{server.log()}")
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def journalist_server(tmp_path: Path) -> Iterator[Callable[[LiveServer], LiveServer]]:
    """Factory: ``journalist_server(source_server)``; stopped at teardown."""
    started: list[LiveServer] = []

    def start(source: LiveServer) -> LiveServer:
        server = start_journalist(source, tmp_path / f"journalist{len(started)}")
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
