"""The audit log: which journalist downloaded or deleted what, by day, for admins to read.

Privacy-preserving by construction: a row is (day, journalist, action, source designation) with
a count, so the log holds no time of day, no order of events, no item ids or file names, and
nothing about sources the store does not already show. Rows older than the retention period
(``TIPBOX_RETENTION_DAYS``, or :data:`DEFAULT_DAYS` while retention is off) are deleted by the
daily ``tipbox retention run``, so the log never outlives what it describes for long. No Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from app.days import today
from app.db import Database

DEFAULT_DAYS = 90  # how long the log is kept when retention is off
MAX_ROWS = 1000  # the admin page shows the newest rows only
_RECORD = (
    "INSERT INTO audit VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, journalist, action, target) "
    "DO UPDATE SET count = count + excluded.count"
)


@dataclass(frozen=True)
class Entry:
    """What one journalist did to one thing on one day, and how many times."""

    day: str
    journalist: str
    action: str
    target: str
    count: int


def record(database: Database, journalist: str, action: str, target: str, count: int = 1) -> None:
    """Count ``action`` on ``target`` by ``journalist`` today."""
    if count > 0:
        with database.connect() as db:
            db.execute(_RECORD, (today(), journalist, action, target, count))


def entries(database: Database) -> list[Entry]:
    """The newest rows first (at most ``MAX_ROWS``)."""
    sql = "SELECT * FROM audit ORDER BY day DESC, journalist, action, target LIMIT ?"
    with database.connect() as db:
        return [Entry(*row) for row in db.execute(sql, (MAX_ROWS,))]


def purge(database: Database, days: int | None, on: date) -> int:
    """Delete the rows older than ``days`` (or :data:`DEFAULT_DAYS`) before ``on``; how many."""
    cutoff = (on - timedelta(days=days or DEFAULT_DAYS)).isoformat()
    with database.connect() as db:
        return db.execute("DELETE FROM audit WHERE day <= ?", (cutoff,)).rowcount
