"""The newsroom's own settings, changed by an admin in the journalist app and read by the source
portal: the newsroom's name, a short landing text per language, whether messages and files are
accepted, a minimum message length, and the logo.

Stored in the ``settings`` table (name -> value, migration 2 of :mod:`app.db`), so both apps see
a change at once without a restart or a template edit. A setting never saved keeps today's
behaviour: the name from ``TIPBOX_NEWSROOM_NAME``, the templates' own landing text, messages and
files both accepted, no minimum, the logo from ``TIPBOX_LOGO`` or the packaged one. Every value
is checked here, on the way in, so the source portal can trust what it reads. No Flask here.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
from dataclasses import dataclass, field

from app.config import MAX_NAME_LENGTH
from app.db import Database
from app.errors import TipboxError

MAX_LANDING_CHARS = 1000
MAX_MIN_LENGTH = 10_000
MAX_LOGO_BYTES = 256 * 1024
MAX_LOGO_SIDE = 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class SettingsError(TipboxError):
    """a setting an admin typed is not acceptable"""


@dataclass(frozen=True)
class Settings:
    """What an admin has set; ``None`` or empty: the default."""

    newsroom_name: str | None = None
    landing: dict[str, str] = field(default_factory=dict)  # language -> text
    accept_messages: bool = True
    accept_files: bool = True
    min_message_length: int = 0
    has_logo: bool = False  # the image itself: load_logo (pages need not carry it)


def load(database: Database) -> Settings:
    """The saved settings (defaults for whatever was never saved)."""
    with database.connect() as db:
        return _read(db)


class Reader:
    """The settings as the source portal reads them for every page: through one kept
    connection per process, read again only after another connection has committed (SQLite's
    ``PRAGMA data_version``), so an admin's change still shows at the next page.

    Opening the database for every page was a third of the landing page's time (bench year:
    2.3 ms of 6.7). One connection, not one per thread: a worker has 96 threads, and the check
    takes microseconds under the lock. A process forked after the first read (a test's child)
    opens its own and never touches the parent's, as SQLite requires.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self._version: int | None = None
        self._settings = Settings()

    def get(self) -> Settings:
        """The current settings."""
        with self._lock:
            if self._db is None or self._pid != os.getpid():
                if self._db is not None:
                    _INHERITED.append(self._db)  # the parent's: never used, never closed here
                self._db, self._pid, self._version = self._database.kept(), os.getpid(), None
            try:
                (version,) = self._db.execute("PRAGMA data_version").fetchone()
                if version != self._version:
                    self._settings, self._version = _read(self._db), version
            except sqlite3.Error:
                self._db.close()  # the next page opens the database again
                self._db = None
                raise
            return self._settings


_INHERITED: list[sqlite3.Connection] = []


def _read(db: sqlite3.Connection) -> Settings:
    rows = dict(db.execute("SELECT name, value FROM settings WHERE name != 'logo'").fetchall())
    has_logo = db.execute("SELECT 1 FROM settings WHERE name = 'logo'").fetchone() is not None
    text = {k: v.decode() for k, v in rows.items() if isinstance(v, bytes)}
    return Settings(
        newsroom_name=text.get("newsroom_name") or None,
        landing={k[8:]: v for k, v in text.items() if k.startswith("landing_") and v},
        accept_messages=text.get("accept_messages", "1") == "1",
        accept_files=text.get("accept_files", "1") == "1",
        min_message_length=int(text.get("min_message_length", "0")),
        has_logo=has_logo,
    )


def load_logo(database: Database) -> bytes | None:
    """The admin's logo, if one was saved."""
    with database.connect() as db:
        row = db.execute("SELECT value FROM settings WHERE name = 'logo'").fetchone()
    return bytes(row[0]) if row else None


def check_name(name: str) -> str | None:
    """The newsroom name with its spaces tidied, ``None`` for the default."""
    tidy = " ".join(name.split())
    if len(tidy) > MAX_NAME_LENGTH or not tidy.isprintable():
        raise SettingsError(f"The name must be at most {MAX_NAME_LENGTH} printable characters.")
    return tidy or None


def check_landing(text: str) -> str:
    """A landing text: plain text (escaped on the page), line breaks kept, at most 1,000."""
    tidy = "\n".join(line.rstrip() for line in text.strip().replace("\r\n", "\n").split("\n"))
    if len(tidy) > MAX_LANDING_CHARS or any(not c.isprintable() and c != "\n" for c in tidy):
        raise SettingsError(f"A landing text must be at most {MAX_LANDING_CHARS} characters.")
    return tidy


def check_min_length(raw: str) -> int:
    """A minimum message length, from 0 (none) to 10,000 characters."""
    value = raw.strip() or "0"
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_MIN_LENGTH:
        raise SettingsError(f"The minimum length must be a number from 0 to {MAX_MIN_LENGTH}.")
    return int(value)


def check_logo(data: bytes) -> bytes:
    """A PNG of at most 256 KiB and 1024 pixels a side (the portal serves it as it is)."""
    if len(data) > MAX_LOGO_BYTES:
        raise SettingsError("The logo must be at most 256 KiB.")
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        raise SettingsError("The logo must be a PNG image.")
    width, height = struct.unpack(">II", data[16:24])
    if not (0 < width <= MAX_LOGO_SIDE and 0 < height <= MAX_LOGO_SIDE):
        raise SettingsError(f"The logo must be at most {MAX_LOGO_SIDE} pixels wide and high.")
    return data


def save(database: Database, settings: Settings) -> None:
    """Store every setting at once (checked values only: see the ``check_*`` functions)."""
    if not (settings.accept_messages or settings.accept_files):
        raise SettingsError("Accept messages, files, or both: a tip box must accept something.")
    values: dict[str, bytes] = {
        "newsroom_name": (settings.newsroom_name or "").encode(),
        "accept_messages": b"1" if settings.accept_messages else b"0",
        "accept_files": b"1" if settings.accept_files else b"0",
        "min_message_length": str(settings.min_message_length).encode(),
    }
    values |= {f"landing_{lang}": text.encode() for lang, text in settings.landing.items()}
    with database.connect() as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM settings WHERE name != 'logo'")
        db.executemany("INSERT INTO settings VALUES (?, ?)", values.items())
        db.execute("COMMIT")


def save_logo(database: Database, logo: bytes | None) -> None:
    """Store a checked logo, or forget it (``None``: back to the configured one)."""
    with database.connect() as db:
        db.execute("DELETE FROM settings WHERE name = 'logo'")
        if logo:
            db.execute("INSERT INTO settings VALUES ('logo', ?)", (logo,))
