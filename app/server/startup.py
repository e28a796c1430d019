"""Start-up checks: a folder or file the apps cannot use is one sentence, not a traceback.

Both apps and ``tipbox user`` check, before they open the database (:func:`open_database`,
which then migrates it, :mod:`app.db`), that the data folder (and its ``items`` folder) can be
written, by creating and removing a file in it, and that the database file and its WAL
companions can be opened for writing: a read-only database (mode 0400, or a file owned by
another user) would otherwise let an app start and then fail every submission. A folder that
cannot be made, a read-only file system and a permission denied become a :class:`ConfigError`
naming the path and the reason; so does a database newer than the code.

Gunicorn prints a worker's start-up exception as a traceback, once per worker, and exits with
status 3. So the master builds the app once first, in a child process, before it forks any worker
(:func:`refuse_to_start_on_error`, called from deploy/gunicorn.conf.py): a :class:`TipboxError`
there is printed as ``tipbox: error: …`` (and ``tipbox: hint: …``) and the master exits with
status 1. The child keeps nothing the workers would share: it exits as soon as the app is built.
Once the app has built, the master logs one ``tipbox: warning: …`` line when the newsroom keys
are classical (:func:`key_warning`), so the journal says it at every start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from app.db import DATABASE, Database
from app.errors import ConfigError, TipboxError

_HINT = "the apps and 'tipbox user' must run as the user who owns the data folder"


def reason(exc: OSError) -> str:
    """What went wrong, in lower case (``permission denied``, ``read-only file system``)."""
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


def writable_folder(path: Path, what: str) -> None:
    """Make ``path`` (0700) if needed and check that a file can be created in it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the {what} {path}: {reason(exc)}", hint=_HINT) from None
    probe = path / f".tipbox-probe-{secrets.token_hex(8)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"the {what} {path} cannot be written: {reason(exc)}", hint=_HINT
        ) from None


def writable_files(*paths: Path) -> None:
    """Check that each of ``paths`` that exists can be opened for writing."""
    for path in paths:
        try:
            os.close(os.open(path, os.O_RDWR | os.O_NOFOLLOW))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"{path} cannot be written: {reason(exc)}", hint=_HINT) from None


def check_data(data_dir: Path) -> None:
    """The data folder, its items folder and the database can all be written."""
    writable_folder(data_dir, "data folder")
    if (data_dir / "items").exists():
        writable_folder(data_dir / "items", "items folder")
    database = data_dir / DATABASE
    writable_files(
        database, database.with_name(f"{DATABASE}-wal"), database.with_name(f"{DATABASE}-shm")
    )


@contextlib.contextmanager
def opening(data_dir: Path) -> Iterator[None]:
    """Turn a failure to open the store in ``data_dir`` into a :class:`ConfigError`."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or data_dir
        raise ConfigError(f"cannot open the store in {where}: {reason(exc)}", hint=_HINT) from None
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the database in {data_dir}: {exc}", hint=_HINT) from None


def open_database(database: Database) -> int:
    """Check the data folder and migrate the database, or say in one sentence why not; how
    many migrations were applied."""
    check_data(database.folder)
    with opening(database.folder):
        return database.migrate()


def _build(load: Callable[[], object]) -> str | None:
    """Build the app as a worker would; the error lines if it refuses, else ``None``."""
    try:
        load()
    except TipboxError as exc:
        lines = f"tipbox: error: {exc.message}\n"
        return lines + (f"tipbox: hint: {exc.hint}\n" if exc.hint else "")
    return None


def key_warning(env: Mapping[str, str]) -> str | None:
    """The start-up warning about the newsroom keys of the app configured by ``env``, if any
    of them is classical (the app already refused to start over a missing or mixed one)."""
    from app.config import load_config
    from app.server.newsroom import classical_warning, load_recipients

    try:
        return classical_warning(load_recipients(load_config(env).keys_dir))
    except TipboxError:
        return None


def refuse_to_start_on_error(load: Callable[[], object]) -> None:
    """In Gunicorn's master: ``load()`` the app in a child (Gunicorn's ``server.app.wsgi``); if
    it refuses to start, print its one sentence and exit with status 1.

    Anything but a :class:`TipboxError` (a bug) is left to the workers, which show it in full.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 2
        try:
            os.close(read)
            message = _build(load)
            if message is not None:
                os.write(write, message.encode("utf-8", "replace"))
            code = 0 if message is None else 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 1:
        sys.stderr.write(message)
        sys.stderr.flush()
        raise SystemExit(1)
