"""Temporary files among the store's items: uploads on their way in, and what they leave.

An item is written under a temporary name (``.incoming-`` and 32 random hex digits) and renamed
only by :meth:`app.server.store.Store.commit`. Whoever writes one holds a :class:`Claim` on it, an
``flock`` the kernel drops when the process dies, however it dies: so a worker that starts can
tell a crash's leftover (unclaimed: deleted) from a live upload in another worker (claimed:
kept), whatever their ages, and a worker that is about to be killed at the end of its grace
period deletes its own (:func:`abandon_after`). No Flask and no SQLite here.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
from pathlib import Path

from app.errors import StoreError

TEMP_PREFIX = ".incoming-"
TEMP_TRIES = 10
# Gunicorn's error log, whose handlers redact request details (deploy/gunicorn.conf.py). Only
# counts are ever logged through it here, never a name.
LOG = logging.getLogger("gunicorn.error")


class Claim:
    """The lock (``flock``) that marks a temporary file as some live process's work in progress.

    A worker that starts removes every temporary file nobody holds a claim on
    (:func:`remove_unclaimed`): the kernel drops a claim when its process dies, however it dies.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = os.dup(fd)  # shares the lock; outlives the file's own descriptor
        self.path = path
        _CLAIMS.add(self)

    def release(self) -> None:
        """Let the file be taken for a crash's leftover; idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _CLAIMS.discard(self)


_CLAIMS: set[Claim] = set()  # this process's unreleased claims, for abandon_uploads()
_ABANDON: list[threading.Timer] = []


def abandon_uploads() -> int:
    """Delete this process's temporary files now; how many. For a worker about to be killed
    (see :func:`abandon_after`): its uploads can no longer finish, and must leave nothing."""
    count = 0
    for claim in list(_CLAIMS):
        with contextlib.suppress(FileNotFoundError):  # committed or aborted meanwhile
            claim.path.unlink()
            count += 1
    if count:
        LOG.warning("store: %d upload(s) still in flight at the end of the grace period", count)
    return count


def abandon_after(seconds: float) -> None:
    """Call :func:`abandon_uploads` in ``seconds`` (once per process, whatever the calls).

    Gunicorn's master kills a stopping worker when its graceful_timeout ends (SIGKILL: no
    clean-up possible); the worker calls this as it is told to stop, with a little less.
    """
    if not _ABANDON:
        timer = threading.Timer(seconds, abandon_uploads)
        timer.daemon = True
        _ABANDON.append(timer)
        timer.start()


def create_temp(items: Path) -> tuple[Path, int, Claim]:
    """A new temporary file in ``items``: its path, a read-write descriptor, and its claim.

    A starting worker may find the file between ``open`` and ``flock`` and take it for a
    leftover; it only removes a file while it holds the lock, so a file that still has a name
    once we hold the lock is ours.
    """
    for _ in range(TEMP_TRIES):
        path = items / f"{TEMP_PREFIX}{secrets.token_hex(16)}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                return path, fd, Claim(fd, path)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
    raise StoreError("could not create a temporary file")


def remove_unclaimed(items: Path) -> int:
    """Delete the temporary files in ``items`` that no live process holds a claim on (left by
    a worker that died, however it died); how many."""
    count = 0
    for path in items.glob(f"{TEMP_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile (or not a plain file: never ours)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()  # while locked: see create_temp()
            count += 1
        except (BlockingIOError, FileNotFoundError):  # a live upload, or just finished
            pass
        finally:
            os.close(fd)
    return count
