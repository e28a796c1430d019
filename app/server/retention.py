"""Retention: sources with no activity for ``TIPBOX_RETENTION_DAYS`` days are deleted, with
every item, reply and reply key of theirs, unless the newsroom starred them.

Activity is the store's ``sources.last_active_day``, the day of the source's last submission
(logging in to read replies leaves no date: the server keeps no more than it must). A source
last active on day D is deleted by the first daily run on or after D + days
(:func:`deletion_day`, which the journalist list shows).
Deleting goes through :meth:`Store.delete_source`, the same path as a journalist's "delete",
so the rows go with ``secure_delete`` on and the item files are unlinked; afterwards the
write-ahead log is checkpointed and truncated, so old page images do not linger in ``-wal``
(what a file system or an SSD may still keep is in the README, "What deleting removes").

The day is a parameter everywhere (``today``): tests set the clock, the daily job passes the
real one. No Flask here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta

from app.server.store import Store

MAX_DAYS = 3650
_EXPIRED = (
    "SELECT id FROM sources WHERE last_active_day <= ? "
    "AND NOT EXISTS (SELECT 1 FROM stars t WHERE t.source_id = sources.id) "
    "ORDER BY last_active_day, id"
)


@dataclass(frozen=True)
class Result:
    """What one run deleted."""

    sources: int
    items: int


def deletion_day(last_active_day: str, days: int) -> str:
    """The day a source last active on ``last_active_day`` is deleted, unless starred."""
    return (date.fromisoformat(last_active_day) + timedelta(days=days)).isoformat()


def expired(db: sqlite3.Connection, days: int, today: date) -> list[str]:
    """The ids of unstarred sources whose deletion day has come."""
    cutoff = (today - timedelta(days=days)).isoformat()
    return [row[0] for row in db.execute(_EXPIRED, (cutoff,))]


def run(store: Store, days: int, today: date) -> Result:
    """Delete every expired source (and all of theirs); then empty the write-ahead log."""
    with store.database.connect() as db:
        ids = expired(db, days, today)
    items = sum(store.delete_source(source_id) for source_id in ids)
    with store.database.connect() as db:
        # Best effort: a reader holding an old snapshot keeps its frames until it is done.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return Result(len(ids), items)
