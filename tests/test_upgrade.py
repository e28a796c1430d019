"""A newsroom's data folder from an earlier release still works with the current code.

Each folder of tests/releases (see its README) is copied to a temporary folder and served by
the current apps, as after ``git pull && make deploy``: the sources' codenames log in and show
their replies, the journalists log in with password and TOTP, the API token works, a bundle
downloaded from the journalist app opens byte for byte with ``tipbox open`` and the release's
newsroom identity, and SQLite finds the database intact. Starting migrates the database to the
latest schema version (:mod:`app.db`); starting again changes nothing.
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask.testing import FlaskClient

from app.config import load_config
from app.db import DATABASE, LATEST, Database
from app.journalist import create_app as create_journalist_app
from app.journalist.config import load as load_journalist_config
from app.source import create_app
from tests.fixtures_app import find, login
from tests.gunicorn_launch import Gunicorn, start
from tests.helpers import tipbox

RELEASES = Path(__file__).resolve().parent / "releases"
COMMITS = sorted(p.name for p in RELEASES.iterdir() if (p / "fixture.json").is_file())


@dataclass(frozen=True)
class Release:
    """A copy of a release's folder, and what its fixture.json says."""

    root: Path
    fixture: dict[str, Any]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.fixture["env"],
            "TIPBOX_DATA_DIR": str(self.data),
            "TIPBOX_KEYS_DIR": str(self.root / "keys"),
        }


def _private(root: Path) -> None:
    """The modes the server had (git keeps none): folders 0700, files 0600."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)


@pytest.fixture(params=COMMITS)
def release(request: pytest.FixtureRequest, tmp_path: Path) -> Release:
    root = tmp_path / request.param
    shutil.copytree(RELEASES / request.param, root)
    _private(root / "data")
    return Release(root, json.loads((root / "fixture.json").read_text("utf-8")))


def _journalist_client(release: Release) -> FlaskClient:
    return create_journalist_app(load_journalist_config(release.env)).test_client()


def _log_in(client: FlaskClient, user: dict[str, str]) -> None:
    page = client.get("/login")
    token = find(page.data, "input", name="csrf_token")[0]["value"]
    form = {
        "csrf_token": token,
        "username": user["username"],
        "password": user["password"],
        "code": pyotp.TOTP(user["totp"]).now(),
    }
    response = client.post("/login", data=form)
    assert (response.status_code, response.headers.get("Location")) == (303, "/"), response.text


def test_old_codenames_log_in_and_read_their_replies(
    release: Release, translations_dir: Path
) -> None:
    config = replace(load_config(release.env), translations_dir=translations_dir)
    app = create_app(config)
    for source in release.fixture["sources"]:
        client = app.test_client()
        response = login(client, source["codename"])
        assert response.status_code == 303, response.text
        page = html.unescape(client.get("/en/lookup").get_data(as_text=True))
        assert source["reply"] in page
    # Each logged in once: the server now holds their post-quantum reply keys (issue 14).
    db = sqlite3.connect(release.data / "store.sqlite3")
    try:
        keys = [row[0] for row in db.execute("SELECT reply_recipient FROM sources")]
    finally:
        db.close()
    assert keys
    assert all(key.startswith("age1pq1") for key in keys)


@pytest.mark.parametrize("who", ["admin", "journalist"])
def test_journalists_log_in_with_password_and_totp(release: Release, who: str) -> None:
    client = _journalist_client(release)
    _log_in(client, release.fixture[who])
    assert client.get("/").status_code == 200


def test_the_api_token_works(release: Release) -> None:
    client = _journalist_client(release)
    auth = {"Authorization": f"Bearer {release.fixture['api_token']}"}
    response = client.get("/api/v1/me", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json == {"username": release.fixture["journalist"]["username"], "admin": False}


def test_a_bundle_opens_byte_for_byte(release: Release) -> None:
    client = _journalist_client(release)
    _log_in(client, release.fixture["journalist"])
    token = find(client.get("/").data, "input", name="csrf_token")[0]["value"]
    response = client.post("/bundle", data={"csrf_token": token, "scope": "all"})
    assert response.status_code == 200
    bundle = release.root / "bundle.tar"
    bundle.write_bytes(response.data)
    out = release.root / "opened"
    identity = release.root / "identity.txt"
    result = tipbox("open", bundle, "-i", identity, "--out", out, cwd=release.root)
    assert result.returncode == 0, result.stderr
    for source in release.fixture["sources"]:
        folder = out / "-".join(source["designation"].split())
        assert (folder / "0001 message.txt").read_text("utf-8") == source["message"]
        (reply,) = folder.glob("* reply.txt")  # numbered after the source's files
        assert reply.read_text("utf-8") == source["reply"]
        files = {
            p.name.split(" ", 4)[-1]: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.glob("* file with 0001 *")
        }
        assert files == source["files"]


def test_the_database_is_intact_after_both_apps_started(
    release: Release, translations_dir: Path
) -> None:
    create_app(replace(load_config(release.env), translations_dir=translations_dir))
    _journalist_client(release)
    db = sqlite3.connect(release.data / "store.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()


def test_typed_usernames_of_the_previous_release_are_gone(release: Release) -> None:
    _journalist_client(release)
    db = sqlite3.connect(release.data / "store.sqlite3")
    try:
        kinds = db.execute("SELECT DISTINCT typeof(username) FROM login_attempts").fetchall()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    assert kinds in ([], [("blob",)])
    typed = release.fixture["failed_login_username"].encode()
    assert typed not in (release.data / "store.sqlite3").read_bytes()


def test_a_logout_on_the_previous_release_database_ends_the_session(
    release: Release, translations_dir: Path
) -> None:
    app = create_app(replace(load_config(release.env), translations_dir=translations_dir))
    client = app.test_client()
    assert login(client, release.fixture["sources"][0]["codename"]).status_code == 303
    token = find(client.get("/en/lookup").data, "input", name="csrf_token")[0]["value"]
    cookie = client.get_cookie("tipbox")
    assert cookie is not None
    client.post("/en/logout", data={"csrf_token": token})
    thief = app.test_client()
    thief.set_cookie("tipbox", cookie.value)
    assert release.fixture["sources"][0]["reply"] not in thief.get("/en/lookup").text


def _start_both_apps(release: Release, translations_dir: Path) -> None:
    create_app(replace(load_config(release.env), translations_dir=translations_dir))
    _journalist_client(release)


def _dump(database: Database) -> list[str]:
    with database.connect() as db:
        return list(db.iterdump())


def test_starting_brings_the_database_to_the_latest_schema_version(
    release: Release, translations_dir: Path
) -> None:
    database = Database(release.data / DATABASE)
    assert database.version() == 0  # made before versions existed
    _start_both_apps(release, translations_dir)
    assert database.version() == LATEST


def test_a_second_start_changes_nothing(release: Release, translations_dir: Path) -> None:
    database = Database(release.data / DATABASE)
    _start_both_apps(release, translations_dir)
    before = _dump(database)
    _start_both_apps(release, translations_dir)
    assert database.migrate() == 0
    assert (database.version(), _dump(database)) == (LATEST, before)


@pytest.mark.slow
def test_gunicorn_and_its_workers_migrate_once_and_serve(release: Release) -> None:
    """The real server, as systemd starts it after ``git pull``: its master builds the app (and
    migrates) before forking three workers, which then find nothing to do."""
    env = {**release.env, "TIPBOX_SECRETS_DIR": str(release.data / "secrets")}
    server = start(
        Gunicorn,
        release.root,
        "app.source:create_app()",
        make_keys=lambda _: None,  # the release's own keys/
        env={**env, "TIPBOX_WORKERS": "3", "TIPBOX_THREADS": "4"},
        wait_for=3,
    )
    try:
        connection = server.connection()
        connection.request("GET", "/en/")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.stop()
    assert Database(release.data / DATABASE).version() == LATEST
    assert "Traceback" not in server.log(), server.log()
