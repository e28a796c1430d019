"""The store: interop with age and tar, padding, no plaintext or metadata on disk, lifecycles."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import re
import secrets
import sqlite3
import tempfile
import threading
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from app.crypto import KdfCost, X25519Identity, X25519Recipient, derive_source_keys
from app.db import migrated
from app.errors import NoIdentityMatchError, StoreError
from app.padding import bucket
from app.server import store as store_module
from app.server.store import Item, PendingItem, Store
from tests.helpers import encrypt_bytes
from tests.store_helpers import (
    ITEM_NAME,
    TIMEOUT,
    age_into_tar,
    all_rows,
    decrypt_path,
    files_containing,
    identity_file,
    read_member,
    sparse_container,
    symlink_container,
    temp_files,
    tree,
)

DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
COLUMNS = {
    "sources": ["id", "designation", "reply_recipient", "created_day", "last_active_day"],
    "items": ["id", "source_id", "seq", "kind", "day", "size", "recipients", "hidden_from_source"],
}


@pytest.fixture
def store(tmp_path: Path, keypair: X25519Identity) -> Store:
    return Store(migrated(tmp_path / "store"), [keypair.recipient])


def put(store: Store, name: str, data: bytes, piece: int = 10007) -> PendingItem:
    writer = store.writer("file", name, "application/pdf")
    for start in range(0, len(data), piece):
        writer.write(data[start : start + piece])
    return writer.finish()


def new_source(store: Store, *pending: PendingItem) -> tuple[str, X25519Identity]:
    source_id, reply = secrets.token_hex(32), X25519Identity.generate()
    store.commit(source_id, str(reply.recipient), list(pending or [store.add_message("hi")]))
    return source_id, reply


@pytest.mark.parametrize(
    ("name", "safe", "size"),
    [
        (None, "message.txt", 0),
        ("Informe año 2024.pdf", "Informe año 2024.pdf", 200 * 1024),
        ("../../tmp/\x1b[0mleak 🔥.bin", "[0mleak 🔥.bin", (1 << 20) + 7),
    ],
)
def test_age_and_tar_restore_the_original(
    tmp_path: Path, store: Store, keypair: X25519Identity, name: str | None, safe: str, size: int
) -> None:
    if name is not None:
        data = os.urandom(size)
        pending = put(store, name, data)
    else:
        data = "Hola, esto es una pista: 🕵️ ñ\n".encode()
        pending = store.add_message(data.decode())
    (item,) = store.commit(secrets.token_hex(32), str(keypair.recipient), [pending])
    out = tmp_path / "out"
    out.mkdir()
    age_into_tar(store.path_of(item), identity_file(tmp_path, keypair), out)
    assert tree(out) == [safe]
    assert (out / safe).read_bytes() == data


SIZES = [0, 1, 100, 1000, 64000 - 1, 64000, 65536, 10**5, 200 * 1024, 1 << 20, (1 << 20) + 7]


@pytest.mark.parametrize(("bucket_min", "steps"), [(1024, 1), (1 << 16, 1), (1024, 4)])
@pytest.mark.parametrize("size", SIZES)
def test_stored_sizes_are_buckets(
    tmp_path: Path, keypair: X25519Identity, size: int, bucket_min: int, steps: int
) -> None:
    store = Store(
        migrated(tmp_path), [keypair.recipient], bucket_min=bucket_min, bucket_steps=steps
    )
    data = os.urandom(size)
    pending = put(store, "a.bin", data)
    assert pending.plain_size == size
    (item,) = store.commit(secrets.token_hex(32), str(keypair.recipient), [pending])
    stored = store.path_of(item).stat().st_size
    assert stored == item.size == pending.size
    assert stored >= bucket_min
    assert stored == bucket(stored, bucket_min, steps)  # a bucket's own size
    overhead = 4096 + 16 * (size // 65536 + 1)  # age header, tar blocks, chunk tags: < 4 KiB
    assert stored <= bucket(size + overhead, bucket_min, steps)  # and no bigger than needed
    if steps == 1:
        assert stored & (stored - 1) == 0, stored
    assert read_member(decrypt_path(store.path_of(item), keypair))[1] == data


@pytest.mark.parametrize(
    ("small", "large", "steps"),
    [(0, 300, 1), (70_000, 120_000, 1), (300_000, 500_000, 1), (330_000, 390_000, 4)],
)
def test_sizes_in_one_bucket_look_the_same(
    tmp_path: Path, keypair: X25519Identity, small: int, large: int, steps: int
) -> None:
    store = Store(migrated(tmp_path), [keypair.recipient], bucket_steps=steps)
    one, other = put(store, "a", bytes(small)), put(store, "much longer name.pdf", bytes(large))
    assert one.size == other.size
    assert os.path.getsize(one.path) == os.path.getsize(other.path)


def test_the_default_pads_big_files_by_less_than_a_quarter(store: Store) -> None:
    pending = put(store, "big.bin", bytes(5 << 20))  # 5 MiB + headers: the 6 MiB bucket
    assert pending.size == 6 << 20


def test_no_plaintext_on_disk(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"  # this process's tempfile.gettempdir() for the test
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert Path(tempfile.gettempdir()) == scratch
    canary = secrets.token_hex(16)
    needle = canary.encode()
    writer = store.writer("file", f"leak-{canary}.pdf", "application/pdf")
    block = (needle + os.urandom(1000)) * 64
    seen_in_progress = []
    for n in range(80):  # about 5 MiB, in uneven pieces
        writer.write(block[: len(block) - n])
        if n in (3, 40):
            assert files_containing(tmp_path, needle) == []
            seen_in_progress += temp_files(store)
    assert seen_in_progress  # the scan did look at the ciphertext being written
    pending = writer.finish()
    assert files_containing(tmp_path, needle) == []
    reply_id, _ = new_source(store, pending, store.add_message(f"message {canary}"))
    store.add_reply_text(reply_id, f"reply {canary}")
    assert files_containing(tmp_path, needle) == []
    names = os.listdir(store.items)
    assert len(names) == 3
    assert all(ITEM_NAME.fullmatch(n) and canary[:8] not in n for n in names), names


def test_metadata_holds_no_secret(tmp_path: Path, store: Store) -> None:
    codename = "quietly orbit velvet harbor sixteen lantern"
    keys = derive_source_keys(codename, b"p" * 32, KdfCost(opslimit=1, memlimit=8192))
    name, text = "Informe-secreto-ministerio.pdf", "La reunión fue el martes"
    pending = [put(store, name, b"%PDF-1.7 ..."), store.add_message(text)]
    store.commit(keys.source_id, str(keys.reply_identity.recipient), pending)
    store.add_reply_text(keys.source_id, "gracias por la pista")
    for path in store.items.iterdir():
        assert path.stat().st_mtime == 0
    rows = all_rows(store)
    # The store writes its two tables only (the others, app.db's too, belong to the journalists).
    assert {table for table, found in rows.items() if found} == set(COLUMNS)
    with contextlib.closing(sqlite3.connect(store.db_path)) as db:
        for table, columns in COLUMNS.items():
            assert [c[1] for c in db.execute(f"PRAGMA table_info({table})")] == columns
    assert len(rows["sources"]) == 1
    assert len(rows["items"]) == 3
    assert all(DAY.fullmatch(day) for row in rows["sources"] for day in row[3:5])
    assert all(DAY.fullmatch(row[4]) for row in rows["items"])
    values = [v for table in rows.values() for row in table for v in row]
    for secret in (name, "Informe", text, "reunión", "gracias", codename):
        assert not any(isinstance(v, str) and secret in v for v in values), secret
        assert files_containing(store.root, secret.encode()) == [], secret
    assert not any(isinstance(v, str) and re.search(r"\d:\d\d|T\d\d", v) for v in values)
    assert not any(isinstance(v, int) and 10**9 < v < 3 * 10**9 for v in values)


@pytest.mark.parametrize("existing", [False, True], ids=["new_source", "existing_source"])
@pytest.mark.parametrize("failure", ["missing_temp_file", "bad_kind", "same_item_twice"])
def test_commit_is_all_or_nothing(store: Store, failure: str, existing: bool) -> None:
    source_id = new_source(store)[0] if existing else secrets.token_hex(32)
    before, files_before = all_rows(store), tree(store.items)
    pending = [store.add_message(f"part {n}") for n in range(3)]
    if failure == "missing_temp_file":
        pending[1].path.unlink()
    elif failure == "bad_kind":
        pending[2] = dataclasses.replace(pending[2], kind="secret")
    else:
        pending.append(pending[0])
    with pytest.raises((OSError, sqlite3.Error)):
        store.commit(source_id, str(X25519Identity.generate().recipient), pending)
    assert all_rows(store) == before
    assert tree(store.items) == files_before
    assert temp_files(store) == []
    assert store.commit(source_id, "age1unused", [store.add_message("retry")])


def test_items_and_replies_newest_first(store: Store) -> None:
    other, _ = new_source(store)
    source_id, _ = new_source(store)
    f1, f2 = put(store, "1", b"1"), put(store, "2", b"2")
    ids = [i.id for i in store.commit(source_id, "unused", [f1, f2])]
    ids.append(store.add_reply_text(source_id, "r1").id)
    ids += [i.id for i in store.commit(source_id, "unused", [store.add_message("m2")])]
    ids.append(store.add_reply_text(source_id, "r2").id)
    listed = store.items_of(source_id)
    assert [i.id for i in listed[:-1]] == ids[::-1]
    assert [i.kind for i in listed] == ["reply", "message", "reply", "file", "file", "message"]
    assert [i.id for i in store.replies(source_id)] == [ids[4], ids[2]]
    assert store.replies(other) == []
    assert len(store.items_of(other)) == 1


@pytest.mark.parametrize("reader", ["reply", "newsroom", "second_newsroom", "stranger"])
def test_reply_readable_by_source_and_newsroom(
    tmp_path: Path, keypair: X25519Identity, reader: str
) -> None:
    second = X25519Identity.generate()
    store = Store(migrated(tmp_path), [keypair.recipient, second.recipient])
    source_id, reply = new_source(store)
    item = store.add_reply_text(source_id, "Gracias — ¿puede enviar más? 🙏")
    assert item.recipients == (str(reply.recipient), str(keypair.recipient), str(second.recipient))
    identity = {"reply": reply, "newsroom": keypair, "second_newsroom": second}.get(reader)
    if identity is None:
        with pytest.raises(NoIdentityMatchError):
            store.reply_text(item, X25519Identity.generate())
    else:
        assert store.reply_text(item, identity) == "Gracias — ¿puede enviar más? 🙏"
        assert store.read_member(item, identity)[0] == "reply.txt"


@pytest.mark.parametrize(
    "plain",
    [
        sparse_container("reply.txt", 64 << 20),
        b"not a tar file at all" * 100,
        symlink_container("reply.txt"),
    ],
    ids=["sparse", "not_tar", "symlink"],
)
def test_read_member_takes_a_regular_file_only(store: Store, plain: bytes) -> None:
    """A reply made elsewhere (a journalist uploads it) is read only if it holds a plain file."""
    source_id, reply = new_source(store)
    data = encrypt_bytes(plain, [reply.recipient])
    item = Item(secrets.token_hex(16), source_id, "reply", "2026-01-02", len(data), ("x",))
    store.path_of(item).write_bytes(data)
    with pytest.raises(StoreError, match="does not hold a regular file|container is damaged"):
        store.reply_text(item, reply)


def test_reply_to_unknown_source(store: Store) -> None:
    with pytest.raises(StoreError):
        store.add_reply_text(secrets.token_hex(32), "hello")
    assert tree(store.items) == []


def test_hiding_replies_touches_only_that_source(store: Store) -> None:
    a, _ = new_source(store)
    b, _ = new_source(store)
    a1, a2 = (store.add_reply_text(a, f"a{n}") for n in (1, 2))
    b1, b2 = (store.add_reply_text(b, f"b{n}") for n in (1, 2))
    a_message = store.items_of(a)[-1]
    assert not store.hide_reply(a, b1.id)
    assert not store.hide_reply(a, a_message.id)
    assert store.hide_reply(a, a1.id)
    assert not store.hide_reply(a, a1.id)
    assert store.replies(a) == [a2]
    assert store.replies(b) == [b2, b1]
    assert store.hide_all_replies(a) == 1
    assert store.hide_all_replies(a) == 0
    assert store.replies(a) == []
    assert store.replies(b) == [b2, b1]
    assert [i.id for i in store.items_of(a)] == [a2.id, a1.id, a_message.id]  # newsroom copy
    assert all(store.path_of(i).exists() for i in (a1, a2, b1, b2))


def test_delete_source_removes_rows_and_files(store: Store) -> None:
    a, _ = new_source(store, put(store, "x", b"x"), store.add_message("m"))
    store.add_reply_text(a, "r")
    b, _ = new_source(store)
    a_items, b_items = store.items_of(a), store.items_of(b)
    assert store.delete_source(a) == 3
    assert store.source(a) is None
    assert store.items_of(a) == []
    assert not any(store.path_of(i).exists() for i in a_items)
    assert a not in repr(all_rows(store))
    assert tree(store.items) == sorted(i.id for i in b_items)
    assert store.items_of(b) == b_items


def test_big_pieces_round_trip_and_abort_cleanly(store: Store, keypair: X25519Identity) -> None:
    """Pieces of 1 MiB go through the sealing pipeline (written on another thread): the item
    still decrypts, and an abort right after a write leaves nothing behind."""
    data = os.urandom((5 << 20) + 3)
    pending = put(store, "big.bin", data, piece=1 << 20)
    (item,) = store.commit(secrets.token_hex(32), str(keypair.recipient), [pending])
    assert read_member(decrypt_path(store.path_of(item), keypair))[1] == data
    writing = store.writer("file", "cut.bin", "")
    for _ in range(4):
        writing.write(bytes(1 << 20))
    writing.abort()
    assert temp_files(store) == []


@pytest.mark.parametrize(
    "steps", [("finish", "write"), ("abort", "write"), ("abort", "finish"), ("finish", "abort")]
)
def test_item_writer_lifecycle(store: Store, steps: tuple[str, str]) -> None:
    writer = store.writer("file", "a.txt", "text/plain")
    writer.write(b"data")
    first, then = steps
    getattr(writer, first)()
    if then == "abort":
        writer.abort()
        writer.abort()  # idempotent
    else:
        with pytest.raises(StoreError):
            getattr(writer, then)(*([b"more"] if then == "write" else []))
    if first == "finish" and then == "write":
        assert writer.finish() is writer.pending  # finish is idempotent
        assert temp_files(store) == [writer.pending.path.name]
    else:
        assert tree(store.items) == []


def test_unknown_kind_creates_nothing(store: Store) -> None:
    with pytest.raises(StoreError):
        store.writer("secret", "a", "text/plain")
    assert tree(store.items) == []


def test_store_needs_a_recipient(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(migrated(tmp_path), [])


_START: list[Barrier] = []  # in a racing worker: the barrier the six start at


def _keep_start(barrier: Barrier) -> None:
    _START.append(barrier)


def _open_store(root: str, recipient: str) -> str:
    try:
        _START[0].wait(TIMEOUT)  # all at the same instant
        Store(migrated(Path(root)), [X25519Recipient.parse(recipient)])
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        return repr(exc)
    return "ok"


def _race_to_open(root: Path, recipient: X25519Recipient) -> list[str]:
    """Six worker processes open the store at ``root`` at the same instant; what each says.

    Spawned, not forked. A forked child is a copy of the test process with every lock that its
    other threads hold at that instant held for ever, and pytest's process runs many threads:
    the journalist tests leave login-attempt purge timers that run SQLite every minute. One CI
    run hung so: a worker forked while a timer was in SQLite's allocator waited for its mutex
    inside ``migrate``, holding the folder lock that the other workers then waited for. Gunicorn
    forks its workers from a master without threads (test_worker.py checks it), so a fresh
    interpreter is the faithful worker. Spawned interpreters start seconds apart: a barrier
    starts the race.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(6, _keep_start, (context.Barrier(6),)) as pool:
        # Bounded: a pool whose worker dies or hangs never answers starmap.
        return pool.starmap_async(_open_store, [(str(root), str(recipient))] * 6).get(120)


def test_workers_creating_the_database_together(tmp_path: Path, keypair: X25519Identity) -> None:
    """Gunicorn's workers all open the store as they start, on an empty data folder."""
    assert _race_to_open(tmp_path / "store", keypair.recipient) == ["ok"] * 6
    with sqlite3.connect(tmp_path / "store" / "store.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_workers_race_while_a_thread_of_ours_is_in_the_store(
    tmp_path: Path, keypair: X25519Identity
) -> None:
    """A thread of the test process inside the store as the workers start does not stop them
    (forked workers inherited its lock, held for ever: they all hung)."""
    held, done = threading.Event(), threading.Event()

    def commit_in_flight() -> None:
        with store_module._COMMIT_LOCK:  # noqa: SLF001 - what a commit or a Store() holds
            held.set()
            done.wait(TIMEOUT)

    thread = threading.Thread(target=commit_in_flight)
    thread.start()
    try:
        assert held.wait(TIMEOUT)
        assert _race_to_open(tmp_path / "store", keypair.recipient) == ["ok"] * 6
    finally:
        done.set()
        thread.join(TIMEOUT)
