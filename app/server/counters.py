"""Rate-limit counters shared by every worker of one server, kept in memory only.

Counters in a worker's own memory would let a session make three times its allowance with three
workers, and the instance three times the global limit, since the kernel hands each new
connection to whichever worker accepts it first. These counters live instead in one anonymous
memory file (``memfd_create``) that the Gunicorn master makes before it forks (:func:`create`,
called from deploy/gunicorn.conf.py) and names to the workers in ``TIPBOX_LIMITS_FD``
(:func:`app.source.limits.init_app` opens it). They never reach a disk and vanish when the server
stops. Without ``TIPBOX_LIMITS_FD`` (the Flask test client, one process) each app gets counters
of its own.

Layout: a header (magic, a random salt, the number of slots: :data:`SLOTS`) and slots of 32
bytes, each the keyed BLAKE2b digest of a limiter key (the key itself, which holds a session's
random rate-limit value, is never stored), the end of its window (``time.time()``) and its
count. A key lives in the first of :data:`PROBE` slots from its digest's position; a slot whose
window has ended is free. When all of them hold running windows, the one with the lowest count
is taken over (of equals, the one whose window ends first): under a flood of new sessions, one
of theirs, which loses at most what it had used, rather than the global counter, which every
costly request raises.

Locking: a thread lock for the threads of one worker, then ``lockf`` on the memory file for
the workers. The kernel drops a process's ``lockf`` when it dies, so a worker killed in the
middle of an update cannot wedge the others (a semaphore would stay taken for ever).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence

ENV = "TIPBOX_LIMITS_FD"
SCHEME = "tipbox-shared"
MEMFD_NAME = "tipbox-limits"  # /proc/PID/fd shows "/memfd:tipbox-limits (deleted)"
SLOTS = 16384  # 512 KiB; two keys per session with costly requests in the last hour
PROBE = 32
_MAGIC = b"tipbox-counters2"
_HEADER = struct.Struct("=16s16sI4x")  # magic, salt, number of slots
_SLOT = struct.Struct("=16sdI4x")  # key digest, window end, count
_EMPTY = bytes(_SLOT.size)
_MAX_COUNT = 2**32 - 1


def size_of(slots: int) -> int:
    """Bytes of a counters file with ``slots`` slots."""
    return _HEADER.size + slots * _SLOT.size


def create(slots: int = SLOTS) -> int:
    """A new, empty memory file for the counters; its descriptor (inherited across fork)."""
    if slots < PROBE:
        raise ValueError(f"at least {PROBE} slots")
    fd = os.memfd_create(MEMFD_NAME)
    try:
        os.ftruncate(fd, size_of(slots))
        with mmap.mmap(fd, size_of(slots)) as memory:
            _HEADER.pack_into(memory, 0, _MAGIC, secrets.token_bytes(16), slots)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Counters:
    """Fixed-window counters in the memory file ``fd`` (a new private one if ``None``)."""

    def __init__(self, fd: int | None = None, clock: Callable[[], float] = time.time) -> None:
        owned = fd is None
        self._fd = create() if fd is None else fd
        if owned:
            weakref.finalize(self, os.close, self._fd)
        self._clock = clock
        size = os.fstat(self._fd).st_size
        magic = b""
        if size >= _HEADER.size:
            self._memory = mmap.mmap(self._fd, size)
            magic, self._salt, self._slots = _HEADER.unpack_from(self._memory, 0)
        if magic != _MAGIC or size != size_of(self._slots):
            raise ValueError(f"descriptor {self._fd} is not a Tipbox counters file")
        self._lock, self._pid = threading.Lock(), os.getpid()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._pid != os.getpid():  # forked: the parent's thread lock may be held by a
            self._lock, self._pid = threading.Lock(), os.getpid()  # thread gone in the child
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _digest(self, key: str) -> bytes:
        return hashlib.blake2b(key.encode(), digest_size=16, key=self._salt).digest()

    def _lookup(self, digest: bytes, now: float) -> tuple[int | None, int]:
        """The offset of ``digest``'s running window (``None`` if none runs), and of the slot
        a new window would take: the first free one, else the one with the lowest count (of
        equals, the one whose window ends first)."""
        start = int.from_bytes(digest[:8], "little")
        free: int | None = None
        weakest, weakest_rank = 0, (_MAX_COUNT + 1, 0.0)
        for i in range(PROBE):
            offset = _HEADER.size + (start + i) % self._slots * _SLOT.size
            other, end, count = _SLOT.unpack_from(self._memory, offset)
            if end <= now:
                free = offset if free is None else free
            elif other == digest:
                return offset, offset
            elif (count, end) < weakest_rank:
                weakest, weakest_rank = offset, (count, end)
        return None, free if free is not None else weakest

    def _add(self, digest: bytes, expiry: float, amount: int, now: float) -> int:
        running, spare = self._lookup(digest, now)
        if running is None:
            end, count = now + expiry, amount
        else:
            _, end, used = _SLOT.unpack_from(self._memory, running)
            count = min(int(used) + amount, _MAX_COUNT)
        _SLOT.pack_into(self._memory, spare, digest, end, count)
        return count

    def _count(self, digest: bytes, now: float) -> int:
        running, _ = self._lookup(digest, now)
        return 0 if running is None else int(_SLOT.unpack_from(self._memory, running)[2])

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s window (starting one of ``expiry`` seconds if none runs);
        the new count."""
        digest = self._digest(key)
        with self._locked():
            return self._add(digest, expiry, amount, self._clock())

    def take(self, windows: Sequence[tuple[str, float, int]]) -> bool:
        """Add one to each ``(key, expiry, limit)`` window if none is at its limit, all under
        one lock: whether it did. A refusal counts nowhere, so only work done is counted."""
        digests = [(self._digest(key), expiry, limit) for key, expiry, limit in windows]
        with self._locked():
            now = self._clock()
            if any(self._count(digest, now) >= limit for digest, _, limit in digests):
                return False
            for digest, expiry, _ in digests:
                self._add(digest, expiry, 1, now)
        return True

    def get(self, key: str) -> tuple[int, float]:
        """``key``'s count and the end of its window: ``(0, now)`` if none runs."""
        digest = self._digest(key)
        with self._locked():
            now = self._clock()
            running, _ = self._lookup(digest, now)
            if running is None:
                return 0, now
            _, end, count = _SLOT.unpack_from(self._memory, running)
        return int(count), float(end)

    def clear(self, key: str) -> None:
        """End ``key``'s window."""
        digest = self._digest(key)
        with self._locked():
            running, _ = self._lookup(digest, self._clock())
            if running is not None:
                self._memory[running : running + _SLOT.size] = _EMPTY

    def reset(self) -> int:
        """End every window; how many were running."""
        with self._locked():
            now = self._clock()
            running = 0
            for slot in range(self._slots):
                offset = _HEADER.size + slot * _SLOT.size
                if _SLOT.unpack_from(self._memory, offset)[1] > now:
                    running += 1
            self._memory[_HEADER.size :] = bytes(self._slots * _SLOT.size)
        return running
