"""The database: every table, the one way to connect, the schema version and its migrations.

Both apps and ``tipbox user`` share one SQLite file in the data folder, :data:`DATABASE`. This
module is its only owner: the other modules (the store, accounts, inbox, sessions) are given a
:class:`Database` and run their queries through :meth:`Database.connect`, which applies the
same settings to every connection (autocommit, a 30-second busy timeout, foreign keys, secure
delete); the file itself is in WAL mode, set once by :meth:`Database.migrate`.

The schema version is ``PRAGMA user_version``: the number of :data:`MIGRATIONS` applied. A
migration is a SQL script or a function of a connection; migration *n* takes a database at
version *n - 1* to *n* in one transaction together with the new version number, so a crash
leaves the previous version whole. A released migration is never edited: a schema change is a
new entry at the end of the list (a running newsroom's database has the old ones already).

Migration 1 adopts the databases of the releases before versions existed (tests/releases: user
version 0, each table made by its own module with ``CREATE TABLE IF NOT EXISTS``, so a table
added later, such as ``ended_sessions``, may be missing) and creates everything on an empty
file; it is the only place ``IF NOT EXISTS`` belongs.

Every process that opens the database migrates it first (:meth:`Database.migrate`): both apps
as they are built (Gunicorn's master builds each app once before it forks, see
app/server/startup.py), ``make deploy``'s first load of the apps, and ``tipbox user``. They take
turns under an exclusive ``flock`` on the data folder itself: one migrates, the others wait and
then find nothing to do; the kernel drops the lock if its holder dies, and there is no lock file
to own, back up or leave behind. A database newer than this code (a newer release ran on it) is
refused with one sentence: this code cannot know what the newer tables mean.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from app.errors import ConfigError

DATABASE = "store.sqlite3"  # in the data folder
BUSY_SECONDS = 30  # how long a connection waits for another's write lock

Migration = str | Callable[[sqlite3.Connection], None]


class NewerDatabaseError(ConfigError):
    """the database was made by a newer Tipbox"""

    hint = "deploy that newer release again, or restore the backup made before it"


_BASELINE = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    designation TEXT NOT NULL UNIQUE,
    reply_recipient TEXT NOT NULL,
    created_day TEXT NOT NULL,
    last_active_day TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'file', 'reply')),
    day TEXT NOT NULL,
    size INTEGER NOT NULL,
    recipients TEXT NOT NULL,
    hidden_from_source INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source_id, seq)
) WITHOUT ROWID;
-- The journalist app lists sources newest first and counts their items by kind, per page.
CREATE INDEX IF NOT EXISTS sources_by_activity ON sources (last_active_day DESC, designation);
CREATE INDEX IF NOT EXISTS items_by_kind ON items (source_id, kind, seq);
-- Source sessions ended before their time (app.server.session.EndedSessions).
CREATE TABLE IF NOT EXISTS ended_sessions (
    digest BLOB PRIMARY KEY,
    until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journalists (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret TEXT NOT NULL,
    totp_step INTEGER NOT NULL DEFAULT 0,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_day TEXT NOT NULL
);
-- username: a keyed hash (BLOB) of what was typed, never the text (app.journalist.attempts).
CREATE TABLE IF NOT EXISTS login_attempts (username TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS login_attempts_by_name ON login_attempts (username, at);
-- Release 2b4c233 kept the typed names themselves: none may stay.
DELETE FROM login_attempts WHERE typeof(username) != 'blob';
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    journalist_id INTEGER NOT NULL REFERENCES journalists(id) ON DELETE CASCADE,
    created REAL NOT NULL,
    seen REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    journalist_id INTEGER NOT NULL REFERENCES journalists(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_day TEXT NOT NULL
);
-- The journalist app's inbox (app.journalist.inbox).
CREATE TABLE IF NOT EXISTS read_marks (
    journalist_id INTEGER NOT NULL REFERENCES journalists(id) ON DELETE CASCADE,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    PRIMARY KEY (journalist_id, source_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS read_marks_by_source ON read_marks (source_id);
CREATE TABLE IF NOT EXISTS stars (
    source_id TEXT PRIMARY KEY REFERENCES sources(id) ON DELETE CASCADE
) WITHOUT ROWID;
"""

# 2: the newsroom's own settings (app.server.settings: name, landing texts, what is accepted,
# minimum message length, logo) and the journalists' audit log (app.journalist.audit: who
# deleted or downloaded what, by day, as counts; kept no longer than retention).
_SETTINGS_AND_AUDIT = """
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE audit (
    day TEXT NOT NULL,
    journalist TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (day, journalist, action, target)
) WITHOUT ROWID;
"""

# In order, never edited once released: append a new entry to change the schema.
MIGRATIONS: tuple[Migration, ...] = (
    _BASELINE,  # 1: adopt a database of the releases before versions, or create one
    _SETTINGS_AND_AUDIT,  # 2: settings and audit
)
LATEST = len(MIGRATIONS)


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``script`` one statement at a time, inside the current transaction.

    ``executescript`` would COMMIT first, cutting a migration in two.
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    db.execute(statement)  # a last statement without its ';' (or only comments: a no-op)


class Database:
    """The SQLite file at ``path``: connections with their settings, version and migration."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def folder(self) -> Path:
        """The data folder the file lives in."""
        return self.path.parent

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (transactions are explicit), closed on exit."""
        db = self.kept()
        try:
            yield db
        finally:
            db.close()

    def kept(self) -> sqlite3.Connection:
        """A connection as :meth:`connect` gives, that the caller closes: one kept open may be
        shared between threads under the caller's own lock (``check_same_thread`` off)."""
        db = sqlite3.connect(
            self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left behind
        except sqlite3.Error:
            db.close()
            raise
        return db

    def version(self) -> int:
        """The schema version of the file (0: made before versions, or empty)."""
        with self.connect() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, migrations: Sequence[Migration] = MIGRATIONS) -> int:
        """Apply the migrations the file lacks, under the data folder's lock; how many.

        :raises NewerDatabaseError: if the file has more migrations than ``migrations``.
        """
        with _folder_lock(self.folder), self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # not inside a transaction; kept by the file
            # Off while migrating, as SQLite's ALTER TABLE guide says: rebuilding a table (new
            # table, copy, DROP the old) would otherwise cascade the DROP to every child row.
            # Each migration is checked before it commits instead.
            db.execute("PRAGMA foreign_keys=OFF")
            found = int(db.execute("PRAGMA user_version").fetchone()[0])
            if found > len(migrations):
                raise NewerDatabaseError(
                    f"the database {self.path} has schema version {found}, newer than this "
                    f"Tipbox's {len(migrations)}: a newer release has run on it"
                )
            for number in range(found + 1, len(migrations) + 1):
                _apply(db, migrations[number - 1], number)
        return max(0, len(migrations) - found)


def _apply(db: sqlite3.Connection, migration: Migration, number: int) -> None:
    """Migration ``number`` and the version that records it, all or nothing."""
    db.execute("BEGIN IMMEDIATE")
    try:
        broken = _broken_links(db)
        if isinstance(migration, str):
            run_script(db, migration)
        else:
            migration(db)
        if _broken_links(db) > broken:  # (a link broken before is not the migration's doing)
            raise sqlite3.IntegrityError(f"migration {number} breaks a foreign key")
        db.execute(f"PRAGMA user_version = {int(number)}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _broken_links(db: sqlite3.Connection) -> int:
    """How many rows point to a row that does not exist (foreign keys are off while migrating)."""
    return len(db.execute("PRAGMA foreign_key_check").fetchall())


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder``, waited for, released on exit (or at death)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def migrated(folder: Path) -> Database:
    """The database in ``folder`` (the folder made 0700 if needed), migrated to this code."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = Database(folder / DATABASE)
    database.migrate()
    return database
