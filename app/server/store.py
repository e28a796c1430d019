"""Ciphertext and metadata on disk: one SQLite file (WAL) and one folder of age files.

What a seized server shows: per source a random lookup id (derived from the codename, which is
never stored), a random two-word designation for journalists, the source's reply recipient and
two dates at day granularity; per item its kind, day, padded size and recipients. Item files
have random names, mtimes set to the epoch, and sizes padded up to a size bucket
(:mod:`app.item`), so neither a name nor a size nor a time fingerprints a document. No
plaintext ever touches the disk: uploads are encrypted as they stream in (see
:class:`ItemWriter`), into a temporary file (:mod:`app.server.incoming`) that becomes an item only
when :meth:`Store.commit` records the whole submission; whatever a crash leaves is deleted by
the next worker to start (:meth:`Store.reconcile`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app import crypto, words
from app.crypto.hybrid import RECIPIENT_PREFIX as HYBRID_PREFIX
from app.crypto.keyfile import KeyRecipient, parse_recipient
from app.crypto.recipients import Identity, Recipient
from app.days import today
from app.db import Database
from app.errors import ItemError, StoreError
from app.item import Padding, Writer, reading
from app.reply import reply_recipients
from app.server.incoming import LOG, Claim, TempFile, remove_unclaimed
from app.server.pools import seal_pool
from app.server.writeback import EarlyWriteback

KINDS = ("message", "file", "reply")
MESSAGE_NAME = "message.txt"
REPLY_NAME = "reply.txt"
TEXT_TYPE = "text/plain"
MAX_REPLY_BYTES = 1 << 20
_ITEM_NAME = re.compile(r"[0-9a-f]{32}")
_COMMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Source:
    """A source as the server knows it."""

    id: str
    designation: str
    reply_recipient: str
    created_day: str
    last_active_day: str


@dataclass(frozen=True)
class Item:
    """One stored age file."""

    id: str
    source_id: str
    kind: str
    day: str
    size: int
    recipients: tuple[str, ...]

    @property
    def post_quantum(self) -> bool:
        """Whether every key that opens it is hybrid (a reply to a source whose reply key is
        still X25519 is not: it stays readable to whoever breaks that key)."""
        return all(r.startswith(HYBRID_PREFIX) for r in self.recipients)


@dataclass(frozen=True)
class PendingItem:
    """An encrypted item in a temporary file, not yet part of the store."""

    path: Path
    kind: str
    plain_size: int
    size: int
    recipients: tuple[str, ...]
    claim: Claim | None = field(default=None, compare=False, repr=False)

    def release(self) -> None:
        """Drop the claim on the temporary file (once it is committed or deleted)."""
        if self.claim is not None:
            self.claim.release()


@functools.cache
def _settle_malloc() -> None:
    """Once per process, allocate and free 8 MiB, so that glibc's malloc serves the upload
    path's 1 MiB buffers from its heap instead of a fresh mapping each.

    glibc maps anything above its mmap threshold (128 KiB at first) afresh, and raises the
    threshold to the size of each mapped block that is freed. The writer before the one
    ``Writer`` copied every upload into a growing buffer, and so raised it by accident; without
    it the parser's 1 MiB reads were mapped, faulted in and unmapped one by one: the request
    thread took 2.1 s of CPU per GiB instead of 1.2-1.4 (perf: clear_page, page faults).
    """
    bytearray(8 << 20)


class ItemWriter:
    """A new item of the store: an :class:`app.item.Writer` into a temporary file."""

    def __init__(
        self,
        store: Store,
        kind: str,
        name: str,
        content_type: str,
        recipients: Sequence[Recipient],
    ) -> None:
        if kind not in KINDS:
            raise StoreError(f"unknown item kind {kind!r}")
        self.kind = kind
        self.recipients = tuple(str(r) for r in recipients)
        self.pending: PendingItem | None = None
        _settle_malloc()
        self._temp = TempFile(store.items)
        try:
            self._sink = EarlyWriteback(self._temp.file)
            self._item = Writer(
                self._sink, recipients, name, content_type, padding=store.padding, pool=seal_pool()
            )
        except BaseException:
            self.abort()
            raise
        self.filename = self._item.name

    @property
    def plain_size(self) -> int:
        """Bytes received so far."""
        return self._item.size

    @property
    def path(self) -> Path:
        """The temporary file the item is written into."""
        return self._temp.path

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt more of the item."""
        if self._temp.file.closed:
            raise StoreError("write to a finished item")
        return self._item.write(data)

    def finish(self) -> PendingItem:
        """Seal the item, padded to its size bucket, on the disk; idempotent."""
        if self.pending is not None:
            return self.pending
        if self._temp.file.closed:
            raise StoreError("the item was aborted")
        total = self._item.finish()
        self._sink.fsync()
        self._temp.close()
        temp, size = self._temp, self._item.size
        self.pending = PendingItem(temp.path, self.kind, size, total, self.recipients, temp.claim)
        return self.pending

    def abort(self) -> None:
        """Forget the item and delete its ciphertext; safe to call at any time, even twice."""
        writer = getattr(self, "_item", None)  # (absent if __init__ failed early)
        if writer is not None:
            with contextlib.suppress(Exception):  # a failed write: the file goes anyway
                writer.wait()  # no write of ours may still be on its way to the file
        self._temp.discard()
        self.pending = None


class Store:
    """The data folder: its database (tables ``sources`` and ``items``) and ``items/``."""

    def __init__(
        self,
        database: Database,
        recipients: Sequence[KeyRecipient],
        bucket_min: int = 1024,
        bucket_steps: int = 4,
    ) -> None:
        if not recipients:
            raise StoreError("the store needs at least one newsroom recipient")
        self.database = database
        self.root, self.items = database.folder, database.folder / "items"
        self.recipients = list(recipients)
        self.bucket_min, self.bucket_steps = bucket_min, bucket_steps
        self.padding = Padding(bucket_min, bucket_steps)
        self.items.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db_path = database.path
        self.reconcile()

    def reconcile(self) -> tuple[int, int]:
        """Remove what a crash left in ``items/``; how many temporary and item files went.

        Two kinds of leftover, both invisible to everyone (no row lists them):

        - temporary files (``.incoming-*``) of uploads whose worker died: any that no live
          process holds a :class:`Claim` on, whatever its age;
        - item files without a row: a worker died between renaming its items and its COMMIT.

        They are deleted, not quarantined: the source is only told "received" after COMMIT,
        so such a file was never acknowledged; it is not a lost tip, and the source, who got no
        answer, sends again. Keeping it would keep a document that nobody can see, attribute or
        answer, against the rule that ciphertext lives exactly as long as its row.
        """
        temps = remove_unclaimed(self.items)
        items = self._remove_items_without_row()
        if temps or items:
            LOG.warning(
                "store: removed %d temporary file(s) and %d item file(s) left by a crash",
                temps,
                items,
            )
        return temps, items

    def _remove_items_without_row(self) -> int:
        """Under SQLite's write lock, which a commit holds from before its first rename to its
        COMMIT: no live commit can be half-way, in this process or any other."""
        count = 0
        with _COMMIT_LOCK, self.database.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                known = {row[0] for row in db.execute("SELECT id FROM items")}
                for path in self.items.iterdir():
                    if _ITEM_NAME.fullmatch(path.name) and path.name not in known:
                        path.unlink(missing_ok=True)
                        count += 1
            finally:
                db.execute("ROLLBACK")
        return count

    def free_space(self) -> int:
        """Bytes free for us on the file system of the items (and, normally, the database)."""
        stats = os.statvfs(self.items)
        return stats.f_bavail * stats.f_frsize

    def writer(self, kind: str, name: str, content_type: str) -> ItemWriter:
        """A new item, encrypted to the newsroom recipients as it is written."""
        return ItemWriter(self, kind, name, content_type, self.recipients)

    def _text_item(
        self, kind: str, name: str, text: str, extra: Sequence[KeyRecipient] = ()
    ) -> PendingItem:
        item = ItemWriter(self, kind, name, TEXT_TYPE, reply_recipients([*extra, *self.recipients]))
        try:
            item.write(text.encode("utf-8"))
            return item.finish()
        except BaseException:
            item.abort()
            raise

    def add_message(self, text: str) -> PendingItem:
        """Encrypt a source's message."""
        return self._text_item("message", MESSAGE_NAME, text)

    def source(self, source_id: str) -> Source | None:
        """The source with this id, if it ever submitted anything."""
        with self.database.connect() as db:
            row = db.execute("SELECT * FROM sources WHERE id = ?", (source_id,)).fetchone()
        return Source(*row) if row else None

    def list_sources(self) -> list[Source]:
        """Every source, most recently active first."""
        with self.database.connect() as db:
            rows = db.execute("SELECT * FROM sources ORDER BY last_active_day DESC, designation")
            return [Source(*row) for row in rows.fetchall()]

    def _new_designation(self, db: sqlite3.Connection) -> str:
        for _ in range(100):
            name = " ".join(secrets.choice(words.wordlist("en")) for _ in range(2))
            if not db.execute("SELECT 1 FROM sources WHERE designation = ?", (name,)).fetchone():
                return name
        raise StoreError("could not find a free designation")

    def commit(
        self, source_id: str, reply_recipient: str, pending: Sequence[PendingItem]
    ) -> list[Item]:
        """Record ``pending`` items for a source (created if new): all or nothing."""
        day = today()
        items: list[Item] = []
        moved: list[Path] = []
        # One commit at a time per process: threads queueing on SQLite's write lock with
        # BEGIN IMMEDIATE spin and sleep (seen with py-spy under 200 uploads); a lock is fair.
        with _COMMIT_LOCK, self.database.connect() as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                seq = self._touch_source(db, source_id, reply_recipient, day)
                for number, entry in enumerate(pending, start=seq + 1):
                    item = Item(
                        secrets.token_hex(16),
                        source_id,
                        entry.kind,
                        day,
                        entry.size,
                        entry.recipients,
                    )
                    db.execute(
                        "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                        (
                            item.id,
                            source_id,
                            number,
                            item.kind,
                            day,
                            item.size,
                            json.dumps(item.recipients),
                        ),
                    )
                    target = self.items / item.id
                    os.rename(entry.path, target)
                    moved.append(target)
                    items.append(item)
                db.execute("COMMIT")
            except BaseException:
                _undo(db, [*moved, *(entry.path for entry in pending)])
                raise
            finally:
                for entry in pending:
                    entry.release()
        os.utime(self.items, (0, 0))
        return items

    def _touch_source(
        self, db: sqlite3.Connection, source_id: str, reply_recipient: str, day: str
    ) -> int:
        """Create the source or mark it active today; its highest item number so far."""
        if db.execute("SELECT 1 FROM sources WHERE id = ?", (source_id,)).fetchone():
            db.execute("UPDATE sources SET last_active_day = ? WHERE id = ?", (day, source_id))
        else:
            db.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?)",
                (source_id, self._new_designation(db), reply_recipient, day, day),
            )
        (seq,) = db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM items WHERE source_id = ?", (source_id,)
        ).fetchone()
        return int(seq)

    def _items(self, where: str, args: tuple[object, ...]) -> list[Item]:
        columns = "id, source_id, kind, day, size, recipients"
        sql = f"SELECT {columns} FROM items WHERE {where} ORDER BY seq DESC"  # noqa: S608 - fixed
        with self.database.connect() as db:
            rows = db.execute(sql, args).fetchall()
        return [Item(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5]))) for r in rows]

    def items_of(self, source_id: str) -> list[Item]:
        """Every item of a source, newest first."""
        return self._items("source_id = ?", (source_id,))

    def item(self, source_id: str, item_id: str) -> Item | None:
        """One item of a source, if both exist."""
        found = self._items("source_id = ? AND id = ?", (source_id, item_id))
        return found[0] if found else None

    def replies(self, source_id: str) -> list[Item]:
        """The replies a source can still see, newest first."""
        return self._items(
            "source_id = ? AND kind = 'reply' AND hidden_from_source = 0", (source_id,)
        )

    def path_of(self, item: Item) -> Path:
        """Where an item's ciphertext lives."""
        return self.items / item.id

    def read_member(
        self, item: Item, identities: Identity | Sequence[Identity], limit: int = MAX_REPLY_BYTES
    ) -> tuple[str, bytes]:
        """Decrypt a small item in memory with one or more identities: its member's name and
        (first ``limit``) bytes."""
        keys = identities if isinstance(identities, Sequence) else [identities]
        with open(self.path_of(item), "rb") as handle:  # noqa: PTH123
            try:  # a reply is made elsewhere: its container is checked like any other
                chunks = crypto.open_payload(handle, keys)
                with reading(chunks, limit=limit + (1 << 20)) as member:
                    return member.name, member.read(limit)
            except ItemError as exc:
                raise StoreError(exc.message) from None

    def reply_text(self, item: Item, identities: Identity | Sequence[Identity]) -> str:
        """A reply's text, decrypted in memory with the source's reply identities."""
        return self.read_member(item, identities)[1].decode("utf-8", errors="replace")

    def add_reply_text(self, source_id: str, text: str) -> Item:
        """Encrypt a reply to the source's reply key and the newsroom keys, and store it."""
        source = self.source(source_id)
        if source is None:
            raise StoreError("no such source")
        reply = parse_recipient(source.reply_recipient)
        pending = self._text_item("reply", REPLY_NAME, text, extra=[reply])
        return self.commit(source_id, source.reply_recipient, [pending])[0]

    def upgrade_reply_recipient(self, source_id: str, recipient: str) -> bool:
        """Store a source's post-quantum reply recipient in place of its classical one (at
        login, where the codename gives both); whether anything changed. Replies written before
        stay encrypted to the old key, which the source's session still holds."""
        if not recipient.startswith(HYBRID_PREFIX):
            raise StoreError("only a post-quantum reply recipient replaces another")
        with self.database.connect() as db:
            cursor = db.execute(
                "UPDATE sources SET reply_recipient = ? "
                "WHERE id = ? AND reply_recipient NOT LIKE ?",
                (recipient, source_id, HYBRID_PREFIX + "%"),
            )
            return cursor.rowcount > 0

    def hide_reply(self, source_id: str, item_id: str) -> bool:
        """Hide one reply from its source (the newsroom's copy stays); whether it existed."""
        with self.database.connect() as db:
            cursor = db.execute(
                "UPDATE items SET hidden_from_source = 1 WHERE id = ? AND source_id = ? "
                "AND kind = 'reply' AND hidden_from_source = 0",
                (item_id, source_id),
            )
            return cursor.rowcount == 1

    def hide_all_replies(self, source_id: str) -> int:
        """Hide every reply from its source; how many were hidden."""
        with self.database.connect() as db:
            cursor = db.execute(
                "UPDATE items SET hidden_from_source = 1 WHERE source_id = ? "
                "AND kind = 'reply' AND hidden_from_source = 0",
                (source_id,),
            )
            return cursor.rowcount

    def delete_item(self, item: Item) -> None:
        """Remove an item's row and its file."""
        with self.database.connect() as db:
            db.execute("DELETE FROM items WHERE id = ?", (item.id,))
        self.path_of(item).unlink(missing_ok=True)

    def delete_source(self, source_id: str) -> int:
        """Remove a source, every item and file of it, and its reply key; how many items."""
        items = self.items_of(source_id)
        with self.database.connect() as db:
            db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
        for item in items:
            self.path_of(item).unlink(missing_ok=True)
        return len(items)


def _undo(db: sqlite3.Connection, paths: Sequence[Path]) -> None:
    """After a failed commit: roll back if SQLite has not already, and delete every file.

    A COMMIT that fails for lack of space has already rolled back: an explicit ROLLBACK would
    raise in its turn, hide the first error and skip the clean-up (seen on a full disk).
    """
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
