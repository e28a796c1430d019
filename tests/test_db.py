"""The database's owner: migrations in order, once each, all or nothing, under a lock.

Real SQLite files in ``tmp_path``, copies of the previous releases' databases (tests/releases),
and real processes (``os.fork``) racing for the lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.db import (
    DATABASE,
    LATEST,
    MIGRATIONS,
    Database,
    Migration,
    NewerDatabaseError,
    migrated,
    run_script,
)
from tests.helpers import fork_child, wait_for_child

RELEASES = Path(__file__).resolve().parent / "releases"
COMMITS = sorted(p.name for p in RELEASES.iterdir() if (p / "data" / DATABASE).is_file())
TABLES = {
    "sources",
    "items",
    "ended_sessions",
    "journalists",
    "login_attempts",
    "sessions",
    "api_tokens",
    "read_marks",
    "stars",
}


def _shape(database: Database) -> dict[str, object]:
    """What the schema is made of, whatever the text of its CREATE statements."""
    with database.connect() as db:
        tables = [
            r[0] for r in db.execute("SELECT name FROM pragma_table_list WHERE schema = 'main'")
        ]
        shape: dict[str, object] = {
            name: (
                db.execute(f"PRAGMA table_xinfo({name})").fetchall(),
                db.execute(f"PRAGMA foreign_key_list({name})").fetchall(),
                db.execute(f"SELECT type, wr, strict FROM pragma_table_list('{name}')").fetchall(),  # noqa: S608
            )
            for name in tables
            if not name.startswith("sqlite_")
        }
        indexes = db.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'")
        shape["indexes"] = sorted(indexes.fetchall(), key=str)
    return shape


def _release_copy(commit: str, tmp_path: Path) -> Database:
    folder = tmp_path / commit
    shutil.copytree(RELEASES / commit / "data", folder)
    return Database(folder / DATABASE)


def _recording(number: int, pause: float = 0.0) -> Migration:
    """A migration that says who applied it (no IF NOT EXISTS: applied twice, it fails)."""

    def migration(db: sqlite3.Connection) -> None:
        time.sleep(pause)
        if number == 1:
            db.execute("CREATE TABLE applied (number INTEGER PRIMARY KEY, pid INTEGER)")
        db.execute("INSERT INTO applied VALUES (?, ?)", (number, os.getpid()))

    return migration


def _applied(database: Database) -> list[tuple[int, int]]:
    with database.connect() as db:
        return db.execute("SELECT number, pid FROM applied ORDER BY number").fetchall()


def test_an_empty_folder_gets_every_table_at_the_latest_version(tmp_path: Path) -> None:
    database = migrated(tmp_path / "data")
    assert database.version() == LATEST == len(MIGRATIONS)
    assert {name for name in _shape(database) if name != "indexes"} == TABLES
    with database.connect() as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert db.execute("PRAGMA secure_delete").fetchone() == (1,)
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("commit", COMMITS)
def test_a_previous_release_gets_the_schema_of_a_new_database(commit: str, tmp_path: Path) -> None:
    old = _release_copy(commit, tmp_path)
    assert old.version() == 0
    assert old.migrate() == LATEST
    assert _shape(old) == _shape(migrated(tmp_path / "new"))


@pytest.mark.parametrize("commit", COMMITS)
def test_an_appended_migration_reaches_a_running_newsroom(commit: str, tmp_path: Path) -> None:
    """What CREATE TABLE IF NOT EXISTS never did: a changed table reaches an existing file."""
    old = _release_copy(commit, tmp_path)
    with old.connect() as db:
        sources = db.execute("SELECT id FROM sources ORDER BY id").fetchall()
    later = [*MIGRATIONS, "ALTER TABLE sources ADD COLUMN note TEXT NOT NULL DEFAULT '';"]
    assert old.migrate(later) == len(later)
    with old.connect() as db:
        assert db.execute("SELECT id, note FROM sources ORDER BY id").fetchall() == [
            (sid, "") for (sid,) in sources
        ]
    assert old.version() == len(later)


def test_migrations_run_in_order_each_once(tmp_path: Path) -> None:
    database = migrated(tmp_path)
    steps = [*MIGRATIONS, _recording(1), _recording(2), _recording(3)]
    assert database.migrate(steps[:-1]) == 2
    assert database.migrate(steps) == 1
    assert database.migrate(steps) == 0
    assert [number for number, _ in _applied(database)] == [1, 2, 3]
    assert database.version() == len(steps)


def test_a_second_migrate_changes_nothing(tmp_path: Path) -> None:
    database = migrated(tmp_path)
    with database.connect() as db:
        before = list(db.iterdump())
    assert database.migrate() == 0
    with database.connect() as db:
        assert list(db.iterdump()) == before


def _failing(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE half (x)")
    raise RuntimeError("the migration fails half-way")


def _orphaning(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO stars VALUES ('no such source')")


@pytest.mark.parametrize(
    ("migration", "error"), [(_failing, RuntimeError), (_orphaning, sqlite3.IntegrityError)]
)
def test_a_failed_migration_leaves_the_previous_version_whole(
    tmp_path: Path, migration: Migration, error: type[Exception]
) -> None:
    database = migrated(tmp_path)
    before = _shape(database)
    with pytest.raises(error):
        database.migrate([*MIGRATIONS, migration])
    assert (database.version(), _shape(database)) == (LATEST, before)
    with database.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM stars").fetchone() == (0,)


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    database = migrated(tmp_path)
    with database.connect() as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(NewerDatabaseError) as refused:
        database.migrate()
    assert refused.value.message == (
        f"the database {database.path} has schema version {LATEST + 1}, newer than this "
        f"Tipbox's {LATEST}: a newer release has run on it"
    )
    assert database.version() == LATEST + 1  # untouched


def _race(database: Database, steps: Sequence[Migration], count: int) -> None:
    """``count`` processes migrate at the same moment; each must succeed."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def work() -> None:
        os.write(ready_w, b"x")
        os.read(go_r, 1)
        database.migrate(steps)

    pids = [fork_child(work) for _ in range(count)]
    for _ in pids:
        os.read(ready_r, 1)
    os.write(go_w, b"x" * count)
    for pid in pids:
        wait_for_child(pid, timeout=60)
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)


def test_processes_racing_to_migrate_take_turns(tmp_path: Path) -> None:
    """One process migrates; the others wait for it, then find nothing to do (without the lock,
    a second process would apply migration 1 again and fail on its CREATE TABLE)."""
    database = Database(tmp_path / DATABASE)
    steps = [_recording(1, pause=0.3), _recording(2, pause=0.3)]
    _race(database, steps, count=3)
    applied = _applied(database)
    assert [number for number, _ in applied] == [1, 2]
    assert len({pid for _, pid in applied}) == 1  # both by the same process
    assert database.version() == 2


def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    """A process killed in the middle of a migration leaves neither the lock nor the change."""
    database = migrated(tmp_path)
    started_r, started_w = os.pipe()

    def stuck(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half (x)")
        os.write(started_w, b"x")
        time.sleep(60)

    pid = fork_child(lambda: database.migrate([*MIGRATIONS, stuck]))
    os.read(started_r, 1)
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    for fd in (started_r, started_w):
        os.close(fd)
    steps = [*MIGRATIONS, "CREATE TABLE whole (x);"]
    assert database.migrate(steps) == 1
    tables = _shape(database)
    assert "whole" in tables
    assert "half" not in tables


def test_a_script_runs_inside_the_callers_transaction(tmp_path: Path) -> None:
    """``executescript`` would COMMIT first: a migration must not be cut in two."""
    database = migrated(tmp_path)
    with database.connect() as db:
        db.execute("BEGIN")
        run_script(db, "CREATE TABLE a (x);\n-- a comment; with a semicolon\nCREATE TABLE b (y)")
        assert db.in_transaction
        db.execute("ROLLBACK")
    assert not {"a", "b"} & set(_shape(database))
