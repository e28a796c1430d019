"""The store under crashes and full disks: a worker killed mid-commit, a disk full at COMMIT.

Crashes are real: a forked child (as Gunicorn forks a worker) commits, and is killed with
SIGKILL at the chosen point. Full disks are real: a small tmpfs mounted for the test (root
only; the tests say so and skip otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.crypto import X25519Identity
from app.db import migrated
from app.server.store import Store
from tests.helpers import fork_child, wait_for_child
from tests.store_helpers import all_rows, temp_files, tree

TIMEOUT = 30


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted at ``where`` for the block."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root")
    where.mkdir(parents=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], timeout=TIMEOUT, check=True)


def fill(path: Path) -> None:
    """Write ``path`` until its file system has not one byte left."""
    with path.open("wb", buffering=0) as handle:
        size = 1 << 20
        while size:
            try:
                handle.write(bytes(size))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2


def killed_at_rename(store: Store, pending_count: int, kill_after: int) -> Callable[[], None]:
    """Work for a forked child: commit ``pending_count`` messages of a new source, and die of
    SIGKILL right after the ``kill_after``-th item has been renamed, before COMMIT."""

    def work() -> None:
        pending = [store.add_message(f"part {n}") for n in range(pending_count)]
        real_rename, renamed = os.rename, []

        def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            real_rename(src, dst)
            renamed.append(dst)
            if len(renamed) == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        os.rename = rename  # (only in this child)
        store.commit(secrets.token_hex(32), str(X25519Identity.generate().recipient), pending)

    return work


def test_a_crash_between_rename_and_commit_leaves_nothing_behind(
    tmp_path: Path, keypair: X25519Identity, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(migrated(tmp_path / "store"), [keypair.recipient])
    kept_id = store.commit(secrets.token_hex(32), "age1unused", [store.add_message("kept")])
    rows = all_rows(store)
    pid = fork_child(killed_at_rename(store, 3, 2))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    assert all_rows(store) == rows  # the transaction never committed
    assert len(tree(store.items)) == 1 + 2 + 1  # kept, two renamed, one temporary file
    with caplog.at_level(logging.INFO):
        Store(migrated(store.root), [keypair.recipient])  # the next worker to start
    assert tree(store.items) == [kept_id[0].id]
    assert store.reply_text(kept_id[0], keypair) == "kept"
    assert all_rows(store) == rows
    logged = [r.getMessage() for r in caplog.records]
    assert any("2 item file(s)" in m and "1 temporary file(s)" in m for m in logged), logged
    assert not any(kept_id[0].id in m for m in logged)


def test_start_up_spares_a_commit_in_flight(tmp_path: Path, keypair: X25519Identity) -> None:
    """A worker that starts while another one is between its renames and its COMMIT waits for
    that COMMIT, and keeps the items it made."""
    store = Store(migrated(tmp_path / "store"), [keypair.recipient])
    renamed_r, renamed_w = os.pipe()
    go_r, go_w = os.pipe()

    def work() -> None:
        pending = [store.add_message("in flight")]
        real_rename = os.rename

        def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            real_rename(src, dst)
            os.write(renamed_w, b"x")
            os.read(go_r, 1)  # the parent starts a store now

        os.rename = rename
        store.commit(secrets.token_hex(32), "age1unused", pending)

    pid = fork_child(work)
    assert os.read(renamed_r, 1) == b"x"
    opened = threading.Thread(target=Store, args=(store.database, [keypair.recipient]))
    opened.start()
    opened.join(timeout=1.0)  # it waits on the write lock; it must not have removed anything
    assert len(tree(store.items)) == 1
    os.write(go_w, b"x")
    wait_for_child(pid)
    opened.join(timeout=TIMEOUT)
    assert not opened.is_alive()
    (source,) = store.list_sources()
    (item,) = store.items_of(source.id)
    assert tree(store.items) == [item.id]
    assert store.reply_text(item, keypair) == "in flight"
    for fd in (renamed_r, renamed_w, go_r, go_w):
        os.close(fd)


def test_start_up_spares_live_temporary_files(tmp_path: Path, keypair: X25519Identity) -> None:
    """Uploads in flight (and items finished but not yet committed) in a live worker keep their
    temporary files; one whose worker died is removed at once, whatever its age."""
    store = Store(migrated(tmp_path / "store"), [keypair.recipient])
    writing = store.writer("file", "in progress", "")
    writing.write(b"x" * 100_000)
    finished = store.add_message("finished, not committed")
    pid = fork_child(lambda: (store.add_message("dead"), os.kill(os.getpid(), signal.SIGKILL)))
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    assert len(temp_files(store)) == 3
    Store(migrated(store.root), [keypair.recipient])
    assert sorted(temp_files(store)) == sorted([writing._path.name, finished.path.name])
    (item,) = store.commit(secrets.token_hex(32), "age1unused", [finished])
    assert store.reply_text(item, keypair) == "finished, not committed"
    writing.abort()
    assert temp_files(store) == []


# --- full disks -----------------------------------------------------------------------------


def test_disk_full_at_commit_leaves_no_orphan(tmp_path: Path, keypair: X25519Identity) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        store = Store(migrated(disk / "store"), [keypair.recipient])
        source_id = secrets.token_hex(32)
        store.commit(source_id, "age1unused", [store.add_message("before")])
        rows, files = all_rows(store), tree(store.items)
        pending = [store.add_message(f"part {n}" * 100) for n in range(40)]
        # Another worker's connection keeps the WAL and its index in place, as under Gunicorn.
        with contextlib.closing(sqlite3.connect(store.db_path)) as other:
            other.execute("SELECT COUNT(*) FROM items").fetchone()
            fill(disk / "filler")
            with pytest.raises(sqlite3.OperationalError, match="full"):
                store.commit(source_id, "age1unused", pending)
            assert tree(store.items) == files
            assert all_rows(store) == rows
            (disk / "filler").unlink()
        assert store.commit(source_id, "age1unused", [store.add_message("after")])


def test_abort_on_a_full_disk_removes_the_file(tmp_path: Path, keypair: X25519Identity) -> None:
    with tmpfs(tmp_path / "disk", "2m") as disk:
        store = Store(migrated(disk / "store"), [keypair.recipient])
        fill(disk / "filler")
        writer = store.writer("file", "big.bin", "")  # its header waits in a buffer
        with pytest.raises(OSError, match="space"):
            writer.write(bytes(1 << 20))
        writer.abort()
        assert temp_files(store) == []
        writer.abort()
