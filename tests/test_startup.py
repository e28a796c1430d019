"""Start-up errors: folders and files the apps cannot use are one sentence and exit status 1.

Each case starts the real Gunicorn (deploy/gunicorn.conf.py, or the journalist app's config)
and the ``tipbox user`` command over a data, keys or secrets folder that is broken in one way.
The tests run as root, who may read and write anything: the commands run without the
capabilities that let root ignore file modes (``setpriv`` drops CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH), so a 0400 file is read-only and a 0500 folder cannot be written, even for
their owner, root. The read-only file system is a tmpfs mounted read-only.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.crypto import X25519Identity
from app.db import LATEST, migrated
from app.server.newsroom import load_recipients
from app.server.store import Store
from tests.fixtures_journalist import CHEAP_ENV, JOURNALIST_APP, JOURNALIST_CONF
from tests.gunicorn_launch import REPO, free_port, server_env, stop_process
from tests.helpers import assert_cli_error
from tests.live import make_newsroom_keys

WITHOUT_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
SOURCE_APP, SOURCE_CONF = "app.source:create_app()", REPO / "deploy" / "gunicorn.conf.py"
APPS = {"source": (SOURCE_APP, SOURCE_CONF), "journalist": (JOURNALIST_APP, JOURNALIST_CONF)}
WAIT = 60.0


@dataclass
class Folders:
    """The folders a server is given (all under ``root`` but the secrets, which may move)."""

    root: Path
    secrets: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    def env(self) -> dict[str, str]:
        return {
            **CHEAP_ENV,
            "TIPBOX_DATA_DIR": str(self.data),
            "TIPBOX_KEYS_DIR": str(self.keys),
            "TIPBOX_SECRETS_DIR": str(self.secrets),
        }


@contextlib.contextmanager
def _read_only_mount(path: Path) -> Iterator[None]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, timeout=30)


def _data_unwritable(f: Folders) -> None:
    f.data.mkdir(mode=0o500)


def _secrets_cannot_be_made(f: Folders) -> None:
    parent = f.root / "locked"
    parent.mkdir(mode=0o500)
    f.secrets = parent / "secrets"


def _keys_unreadable(f: Folders) -> None:
    f.keys.chmod(0o000)


def _database_read_only(f: Folders) -> None:
    Store(migrated(f.data), load_recipients(f.keys))
    (f.data / "store.sqlite3").chmod(0o400)


def _classical_key(f: Folders, name: str = "old.pub") -> None:
    (f.keys / name).write_text(f"{X25519Identity.generate().recipient}\n")


def _database_newer(f: Folders) -> None:
    database = migrated(f.data)
    with database.connect() as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")  # a newer release ran here


BREAKS: dict[str, tuple[Callable[[Folders], None], tuple[str, ...]]] = {
    "keys mix hybrid and classical": (_classical_key, ("mixes post-quantum", "classical")),
    "data folder not writable": (_data_unwritable, ("cannot be written", "permission denied")),
    "secrets folder cannot be made": (_secrets_cannot_be_made, ("secrets", "permission denied")),
    "keys folder unreadable": (_keys_unreadable, ("cannot read", "permission denied")),
    "database file 0400": (_database_read_only, ("store.sqlite3", "permission denied")),
    "database newer than the code": (_database_newer, ("store.sqlite3", "newer than this")),
}


@pytest.fixture
def folders(tmp_path: Path) -> Iterator[Folders]:
    found = Folders(tmp_path / "tipbox", tmp_path / "tipbox" / "secrets")
    found.root.mkdir(mode=0o700)
    for name in ("tmp", "home"):
        (found.root / name).mkdir(mode=0o700)
    make_newsroom_keys(tmp_path / "identity.txt", found.keys)
    try:
        yield found
    finally:  # a folder left at 0000 or 0500 is still root's to remove
        for path in (found.keys, found.data, found.root / "locked"):
            with contextlib.suppress(FileNotFoundError):
                path.chmod(0o700)


def _gunicorn(folders: Folders, app: str) -> tuple[int, str]:
    """Run the app's Gunicorn without root's file powers; its exit status and output."""
    target, conf = APPS[app]
    bind = f"127.0.0.1:{free_port()}"
    env = server_env(folders.root, bind, folders.env())
    env["TIPBOX_JOURNALIST_BIND"] = bind
    log = folders.root / "gunicorn.log"
    command = [*WITHOUT_DAC, sys.executable, "-m", "gunicorn", "-c", str(conf), target]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status = process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        stop_process(process)
        status = -1  # it started, and served, instead of refusing
    return status, log.read_text("utf-8", "replace")


def _assert_one_sentence(status: int, output: str, needles: tuple[str, ...]) -> None:
    assert status == 1, f"exit {status}:\n{output}"
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "tipbox: error: " in line]
    assert len(errors) == 1, output
    for needle in needles:
        assert needle in errors[0], output


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("case", BREAKS)
def test_the_apps_refuse_to_start_in_one_sentence(folders: Folders, app: str, case: str) -> None:
    breaking, needles = BREAKS[case]
    breaking(folders)
    _assert_one_sentence(*_gunicorn(folders, app), needles)


@pytest.mark.parametrize("app", APPS)
def test_a_read_only_file_system_is_one_sentence(folders: Folders, app: str) -> None:
    with _read_only_mount(folders.data):
        _assert_one_sentence(*_gunicorn(folders, app), ("read-only file system",))


def _tipbox_user(folders: Folders, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env.update(folders.env())
    return subprocess.run(
        [*WITHOUT_DAC, sys.executable, "-m", "app.cli", "user", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=WAIT,
        check=False,
    )


@pytest.mark.parametrize(
    "case", ["data folder not writable", "database file 0400", "database newer than the code"]
)
def test_tipbox_user_add_says_why_it_cannot_write(folders: Folders, case: str) -> None:
    breaking, needles = BREAKS[case]
    breaking(folders)
    assert_cli_error(_tipbox_user(folders, "add", "alice"), *needles)


def test_tipbox_user_add_on_a_read_only_file_system(folders: Folders) -> None:
    with _read_only_mount(folders.data):
        assert_cli_error(_tipbox_user(folders, "add", "alice"), "read-only file system")


def test_a_healthy_folder_still_starts_without_roots_powers(folders: Folders) -> None:
    """The checks refuse only what is broken: the same run, nothing broken, serves pages."""
    assert _serves(folders, folders.root / "gunicorn.log") == 200
    log = (folders.root / "gunicorn.log").read_text("utf-8", "replace")
    assert "classical" not in log  # tipbox keygen's key is post-quantum


@pytest.mark.parametrize("app", APPS)
def test_classical_newsroom_keys_are_named_at_start_up(folders: Folders, app: str) -> None:
    """A newsroom still on X25519 keys starts, and its log says plainly that they are classical."""
    (folders.keys / "newsroom.pub").unlink()
    _classical_key(folders, "newsroom.pub")
    assert _serves(folders, folders.root / "gunicorn.log", app) is not None
    log = (folders.root / "gunicorn.log").read_text("utf-8", "replace")
    [line] = [line for line in log.splitlines() if "tipbox: warning: " in line]
    assert "1 of 1 newsroom recipients are classical (X25519" in line


def _serves(folders: Folders, log: Path, app: str = "source") -> int | None:
    """Start the app's Gunicorn without root's powers until it answers; the status of ``/``."""
    target, conf = APPS[app]
    port = free_port()
    env = server_env(folders.root, f"127.0.0.1:{port}", folders.env())
    env["TIPBOX_JOURNALIST_BIND"] = f"127.0.0.1:{port}"
    command = [*WITHOUT_DAC, sys.executable, "-m", "gunicorn", "-c", str(conf), target]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status = None
        for _ in range(int(WAIT * 10)):
            if process.poll() is not None:
                break
            status = _status(port)
            if status is not None:
                break
            time.sleep(0.1)
    finally:
        stop_process(process)
    return status


def _status(port: int) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()
