"""The newsroom's view of the store: pages of sources with counts, read marks, stars, bundles.

Two small tables join the store's, in the same SQLite file (:mod:`app.db` makes them all):

- ``read_marks``: per journalist and source, the highest item number (``seq``) the journalist
  has marked read or downloaded; a source is *unread* for them while it has a message or file
  numbered higher. No dates at all.
- ``stars``: sources starred by the newsroom (shared by every journalist).

Both go when their source goes (``ON DELETE CASCADE``), and read marks when their journalist
goes. A page of sources is one query: counts and the unread flag are correlated sub-queries
answered from the ``items_by_kind`` index, so a page costs the same with 10 or 100,000 sources.
No Flask here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.bundle import BundleItem, BundleSource
from app.db import Database

PER_PAGE = 50
FILTERS = ("all", "unread", "starred")
CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit
LAST_PAGE = 10**9  # any page number past the end means the last page
_LAST_SEQ = (
    "COALESCE((SELECT MAX(i.seq) FROM items i WHERE i.source_id = s.id "
    "AND i.kind IN ('message', 'file')), 0)"
)
_COUNT = "(SELECT COUNT(*) FROM items i WHERE i.source_id = s.id AND i.kind = '{}')"
_SEEN = (
    "COALESCE((SELECT r.seq FROM read_marks r WHERE r.journalist_id = ? AND r.source_id = s.id), 0)"
)
_UNREAD = f"{_LAST_SEQ} > {_SEEN}"
_STARRED = "EXISTS (SELECT 1 FROM stars t WHERE t.source_id = s.id)"
_SOURCES_IN = (
    "SELECT id, designation, reply_recipient, last_active_day FROM sources WHERE id IN ({})"
)
_ITEMS_IN = (
    "SELECT source_id, seq, id, kind, day, size, recipients FROM items "
    "WHERE source_id IN ({}) ORDER BY source_id, seq"
)
_ORDER = "ORDER BY s.last_active_day DESC, s.designation"
_COLUMNS = ", ".join(
    ["s.id", "s.designation", "s.last_active_day"]
    + [_COUNT.format(kind) for kind in ("message", "file", "reply")]
    + [_UNREAD, _STARRED]
)
_PAGE = f"SELECT {_COLUMNS} FROM sources s WHERE {{}} {_ORDER} {{}}"  # noqa: S608 - fixed text
_UNREAD_IDS = (
    "SELECT l.source_id FROM (SELECT source_id, MAX(seq) AS seq FROM items "
    "WHERE kind IN ('message', 'file') GROUP BY source_id) l "
    "LEFT JOIN read_marks r ON r.source_id = l.source_id AND r.journalist_id = ? "
    "WHERE l.seq > COALESCE(r.seq, 0)"
)


def page_number(text: str) -> int | None:
    """``?page=``'s value as a number; ``None`` unless it is ASCII digits.

    ``str.isdigit()`` is not the test: it accepts "²", which ``int()`` refuses (a 500), and
    ``int()`` itself takes Arabic-Indic or fullwidth digits, which no link of ours writes.
    Very long numbers (which ``int()`` refuses past 4300 digits) mean the last page.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) < len(str(LAST_PAGE)) else LAST_PAGE


@dataclass(frozen=True)
class SourceRow:
    """One line of the sources list."""

    id: str
    designation: str
    last_active_day: str
    messages: int
    files: int
    replies: int
    unread: bool
    starred: bool


@dataclass(frozen=True)
class Page:
    """A page of the sources list."""

    rows: list[SourceRow]
    number: int
    pages: int
    total: int


class Inbox:
    """Listing, marking and bundling the sources of the store in ``database``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def page(self, journalist_id: int, number: int = 1, show: str = "all") -> Page:
        """Sources most recently active first, ``PER_PAGE`` at a time (``show``: a filter)."""
        with self.database.connect() as db:
            unread = self._unread(db, journalist_id) if show == "unread" else []
            where = _STARRED if show == "starred" else "1"
            if show == "unread":
                total = len(unread)
            else:
                (total,) = db.execute(f"SELECT COUNT(*) FROM sources s WHERE {where}").fetchone()  # noqa: S608
            pages = max(1, -(-total // PER_PAGE))
            number = min(max(1, number), pages)
            offset = (number - 1) * PER_PAGE
            if show == "unread":
                part = unread[offset : offset + PER_PAGE]
                sql = _PAGE.format(f"s.id IN ({', '.join('?' * len(part))})", "")
                rows = db.execute(sql, (journalist_id, *part)).fetchall()
            else:
                sql = _PAGE.format(where, "LIMIT ? OFFSET ?")
                rows = db.execute(sql, (journalist_id, PER_PAGE, offset)).fetchall()
        return Page([_row(r) for r in rows], number, pages, total)

    @staticmethod
    def _unread(db: sqlite3.Connection, journalist_id: int) -> list[str]:
        """The ids of the sources unread by the journalist, in list order (one scan of each
        table's index, cheaper than asking the question once per source)."""
        unread = {row[0] for row in db.execute(_UNREAD_IDS, (journalist_id,))}
        return [sid for (sid,) in db.execute(f"SELECT id FROM sources s {_ORDER}") if sid in unread]  # noqa: S608

    def row(self, journalist_id: int, source_id: str) -> SourceRow | None:
        """One source's line (for its own page)."""
        with self.database.connect() as db:
            r = db.execute(_PAGE.format("s.id = ?", ""), (journalist_id, source_id)).fetchone()
        return _row(r) if r else None

    def mark_read(self, journalist_id: int, seqs: dict[str, int]) -> None:
        """Record that the journalist has read each source up to its item number."""
        with self.database.connect() as db:
            db.executemany(
                "INSERT INTO read_marks VALUES (?, ?, ?) ON CONFLICT DO UPDATE "
                "SET seq = MAX(seq, excluded.seq)",
                [(journalist_id, sid, seq) for sid, seq in seqs.items()],
            )

    def read_all_of(self, journalist_id: int, source_id: str) -> None:
        """Mark everything a source has sent so far as read."""
        with self.database.connect() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM items WHERE source_id = ?", (source_id,)
            ).fetchone()
        self.mark_read(journalist_id, {source_id: seq})

    def mark_unread(self, journalist_id: int, source_id: str) -> None:
        """Make a source unread again for the journalist."""
        with self.database.connect() as db:
            db.execute(
                "DELETE FROM read_marks WHERE journalist_id = ? AND source_id = ?",
                (journalist_id, source_id),
            )

    def star(self, source_id: str, on: bool) -> None:
        """Star or unstar a source for the whole newsroom."""
        with self.database.connect() as db:
            if on:
                db.execute("INSERT OR IGNORE INTO stars VALUES (?)", (source_id,))
            else:
                db.execute("DELETE FROM stars WHERE source_id = ?", (source_id,))

    def select(self, journalist_id: int, scope: str, ids: Iterable[str] = ()) -> list[str]:
        """The ids of the sources a bundle holds: ``unread``, ``all``, or the ``ids`` that exist."""
        with self.database.connect() as db:
            if scope == "unread":
                return self._unread(db, journalist_id)
            if scope == "all":
                return [r[0] for r in db.execute(f"SELECT s.id FROM sources s {_ORDER}")]  # noqa: S608
            wanted, rows = list(dict.fromkeys(ids)), []
            for start in range(0, len(wanted), CHUNK):
                part = wanted[start : start + CHUNK]
                marks = ", ".join("?" * len(part))
                sql = f"SELECT s.id FROM sources s WHERE s.id IN ({marks}) {_ORDER}"  # noqa: S608
                rows += db.execute(sql, part).fetchall()
        return [row[0] for row in rows]

    def bundle_sources(self, ids: Sequence[str]) -> tuple[list[BundleSource], dict[str, int]]:
        """The bundle entries of these sources (items oldest first), and each one's last seq."""
        entries: list[BundleSource] = []
        seqs: dict[str, int] = {}
        with self.database.connect() as db:
            for start in range(0, len(ids), CHUNK):
                part = list(ids[start : start + CHUNK])
                marks = ", ".join("?" * len(part))
                found = {r[0]: r[1:] for r in db.execute(_SOURCES_IN.format(marks), part)}
                items: dict[str, list[BundleItem]] = {sid: [] for sid in found}
                for sid, seq, *fields in db.execute(_ITEMS_IN.format(marks), part):
                    items[sid].append(_bundle_item(fields))
                    seqs[sid] = seq
                for sid in (sid for sid in part if sid in found):
                    designation, reply, day = found[sid]
                    entries.append(BundleSource(designation, reply, day, tuple(items[sid])))
        return entries, seqs


def _bundle_item(fields: Sequence[object]) -> BundleItem:
    item_id, kind, day, size, recipients = fields
    return BundleItem(
        str(item_id), str(kind), str(day), int(str(size)), tuple(json.loads(str(recipients)))
    )


def _row(r: Sequence[Any]) -> SourceRow:
    return SourceRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), bool(r[7]))
