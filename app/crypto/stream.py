"""The age payload: STREAM over ChaCha20-Poly1305 in 64 KiB chunks.

Nonce of chunk *i*: 11-byte big-endian *i*, then ``0x01`` for the last chunk and ``0x00``
otherwise. Only the last chunk may be short; it may be empty only when the whole payload is.
Decryption releases a chunk only once it has authenticated, with the reference implementation's
rules, so a damaged file yields exactly the plaintext the age tool would have released.
"""

from __future__ import annotations

import itertools
import mmap
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from app.errors import (
    ChunkOrderError,
    EmptyChunkError,
    PayloadError,
    TamperedChunkError,
    TrailingDataError,
    TruncatedError,
)

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
ENC_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16
BATCH_CHUNKS = 32  # 2 MiB read, sealed or opened at a time
WRITE_PIECE = 256 * 1024  # the largest single write(): see write_all()
_MAX_COUNTER = 1 << 88
_REORDER_WINDOW = 64  # how far away a misplaced chunk is looked for, to name the error
_TRAILING_WINDOW = 4096  # how much appended data is looked for, to name the error


Buffer = bytes | bytearray | memoryview


class Readable(Protocol):
    """A binary source with ``readinto`` (files, pipes, ``io.BytesIO``)."""

    def readinto(self, buffer: bytearray | memoryview, /) -> int | None: ...


class Writable(Protocol):
    """A binary sink."""

    def write(self, data: Buffer, /) -> int | None: ...


def chunk_nonce(counter: int, last: bool) -> bytes:
    """The 12-byte ChaCha20-Poly1305 nonce of chunk ``counter``."""
    if counter >= _MAX_COUNTER:
        raise PayloadError("the payload is too long for age's chunk counter")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def read_full(src: Readable, view: memoryview) -> int:
    """Fill ``view`` from ``src`` unless it ends first; return how many bytes were read."""
    filled = 0
    while filled < len(view):
        n = src.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def write_all(dst: Writable, data: Buffer) -> None:
    """Write ``data`` to ``dst`` in pieces of at most :data:`WRITE_PIECE` bytes.

    Batches are large (fewer thread hand-offs), but the writes must not be: Linux (6.x, ext4)
    sizes the page-cache folio it allocates after the size of the ``write()``, and a 2 MiB write
    asks for 2 MiB of physically contiguous memory, which a fragmented machine finds only after
    compaction. On the benchmark machine writing a 1 GiB file in 2 MiB calls cost 1.0 to 2.3 s
    of system time against 0.26 to 0.35 s in 256 KiB calls (128 and 512 KiB were as good as
    256; 1 MiB was already 3x worse). ``dst.write`` must write everything it is given, as
    buffered files do.
    """
    view = memoryview(data)
    if len(view) <= WRITE_PIECE:
        dst.write(view)
        return
    for start in range(0, len(view), WRITE_PIECE):
        dst.write(view[start : start + WRITE_PIECE])


def aligned(size: int) -> memoryview:
    """A zeroed, page-aligned buffer (an anonymous mapping).

    Alignment matters: reading file data into a bytearray that starts 16 bytes past a 32-byte
    boundary cost four times the system time on the benchmark machine.
    """
    return memoryview(mmap.mmap(-1, size))


def _split(pool: Executor | None, work: Callable[[range], None], count: int) -> None:
    """Run ``work`` over ``range(count)``: the second half on ``pool``, the first half here.

    The calling thread does its share instead of waiting for two pool threads: one hand-off
    per batch instead of two, and no idle thread.
    """
    middle = (count + 1) // 2
    if pool is None or middle == count:
        work(range(count))
        return
    other = pool.submit(work, range(middle, count))
    try:
        work(range(0, middle))
    finally:
        other.result()


class Sealer:
    """Encrypts successive chunks; the caller says which one is last.

    :meth:`seal_batch` seals many full chunks at once on two threads: the AEAD releases the GIL,
    so on this two-core class of machine sealing runs at twice the speed of one core.
    """

    def __init__(self, key: bytes, pool: Executor | None = None, first_counter: int = 0) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.pool = pool  # may change between batches
        self._counter = first_counter
        self._done = False
        self._out = bytearray(ENC_CHUNK_SIZE)

    def seal(self, chunk: Buffer, last: bool) -> memoryview:
        """Encrypt one chunk into an internal buffer, valid until the next call."""
        return self.seal_batch(memoryview(chunk), memoryview(self._out), last)

    def seal_batch(self, data: memoryview, out: memoryview, last: bool) -> memoryview:
        """Seal ``data`` as consecutive chunks into ``out``; the final one is last if ``last``."""
        if self._done:
            raise PayloadError("the payload was already finished")
        count = max(1, -(-len(data) // CHUNK_SIZE))
        if not last and len(data) != count * CHUNK_SIZE:
            raise PayloadError("only the last chunk may be short")
        first = self._counter

        def work(indexes: range) -> None:
            for i in indexes:
                piece = data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]
                nonce = chunk_nonce(first + i, last and i == count - 1)
                start = i * ENC_CHUNK_SIZE
                self._aead.encrypt_into(nonce, piece, None, out[start : start + len(piece) + 16])

        _split(self.pool, work, count)
        self._counter += count
        self._done = last
        return out[: len(data) + count * TAG_SIZE]


class Opener:
    """Decrypts a payload from a source, batch by batch, as the reference implementation does.

    Full chunks of a batch are first opened as non-last on two threads; any chunk that fails
    then goes through the reference implementation's rules one at a time (try it as last, look
    for trailing data, name the damage), so results do not depend on the batch size.
    """

    def __init__(self, key: bytes, src: Readable, pool: ThreadPoolExecutor | None = None) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._src = src
        self._pool = pool
        self._one = bytearray(CHUNK_SIZE)

    def _batches(self) -> Iterator[tuple[memoryview, int]]:
        """Read batches; with a pool, the next one is read (on the pool) while this one opens.

        No executor is created or shut down in here: a generator that is dropped half-way is
        finalised by the garbage collector, on whatever thread happens to run it, and joining a
        thread from there can deadlock inside ``threading`` (seen in the test suite).
        """
        size = BATCH_CHUNKS * ENC_CHUNK_SIZE
        bufs = [aligned(size), aligned(size)] if self._pool else [aligned(size)]
        ahead: Future[int] | None = None
        for index in itertools.count():
            buf = bufs[index % len(bufs)]
            n = ahead.result() if ahead else read_full(self._src, buf)
            ahead = None
            if n == size and self._pool is not None:
                ahead = self._pool.submit(read_full, self._src, bufs[(index + 1) % 2])
            yield buf, n
            if n < size:
                return

    def chunks(self) -> Iterator[memoryview]:
        """Yield authenticated plaintext, a batch's worth at a time when all is well.

        A view stays valid until the next-but-one is requested (two output buffers take turns),
        so a consumer may write one view on another thread while the next batch is opened.
        """
        outs = [aligned(BATCH_CHUNKS * CHUNK_SIZE), aligned(BATCH_CHUNKS * CHUNK_SIZE)]
        batches = self._batches()
        counter = 0
        for index, (view, n) in enumerate(batches):
            out = outs[index % 2]
            full, rest = divmod(n, ENC_CHUNK_SIZE)
            opened = self._open_batch(view, out, counter, full)
            good = opened.index(False) if False in opened else full
            if good:
                yield out[: good * CHUNK_SIZE]
                counter += good
            if good < full:
                chunk = view[good * ENC_CHUNK_SIZE : (good + 1) * ENC_CHUNK_SIZE]
                plain = self._open(chunk, counter, True)
                if plain is None:
                    raise self._diagnose(chunk, counter)
                yield plain
                if good + 1 < full or rest or any(m for _, m in itertools.islice(batches, 1)):
                    raise TrailingDataError()
                return
            if n < len(view):
                yield from self._final(view[full * ENC_CHUNK_SIZE : n], counter)
                return

    def _final(self, chunk: memoryview, counter: int) -> Iterator[memoryview]:
        if not chunk:
            raise TruncatedError("the file is truncated: its payload ends before its last chunk")
        if len(chunk) == TAG_SIZE and counter > 0:
            if self._open(chunk, counter, True) is not None:
                raise EmptyChunkError()
            raise TruncatedError("the file is truncated in the middle of a chunk")
        if len(chunk) < TAG_SIZE:
            raise TruncatedError("the file is truncated in the middle of a chunk")
        plain = self._open(chunk, counter, True)
        if plain is None:
            raise self._diagnose(chunk, counter)
        yield plain

    def _open_batch(self, view: memoryview, out: memoryview, first: int, count: int) -> list[bool]:
        opened = [False] * count

        def work(indexes: range) -> None:
            for i in indexes:
                chunk = view[i * ENC_CHUNK_SIZE : (i + 1) * ENC_CHUNK_SIZE]
                target = out[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]
                try:
                    self._aead.decrypt_into(chunk_nonce(first + i, False), chunk, None, target)
                    opened[i] = True
                except InvalidTag:
                    pass

        _split(self._pool, work, count)
        return opened

    def _open(self, chunk: memoryview, counter: int, last: bool) -> memoryview | None:
        out = memoryview(self._one)[: len(chunk) - TAG_SIZE]
        try:
            self._aead.decrypt_into(chunk_nonce(counter, last), chunk, None, out)
        except InvalidTag:
            return None
        return out

    def _diagnose(self, chunk: memoryview, counter: int) -> PayloadError:
        """Name what went wrong with a chunk that did not authenticate (error path only)."""
        if len(chunk) == ENC_CHUNK_SIZE:
            lo, hi = max(0, counter - _REORDER_WINDOW), counter + _REORDER_WINDOW
            for other in range(lo, hi + 1):
                if other != counter and any(
                    self._open(chunk, other, last) is not None for last in (False, True)
                ):
                    return ChunkOrderError(
                        f"chunk {counter} is out of order (it was written as chunk {other})"
                    )
        # Data appended after the real last chunk: look for a last chunk that ends early.
        shortest = TAG_SIZE if counter == 0 else TAG_SIZE + 1
        ends = range(len(chunk) - 1, max(len(chunk) - 1 - _TRAILING_WINDOW, shortest - 1), -1)
        starts = range(shortest, min(shortest + _TRAILING_WINDOW, len(chunk)))
        for end in dict.fromkeys([*ends, *starts]):
            if self._open(chunk[:end], counter, True) is not None:
                return TrailingDataError(
                    f"the file has {len(chunk) - end} or more extra bytes after its end: "
                    "something was appended"
                )
        return TamperedChunkError(
            f"chunk {counter} failed authentication: the file was altered, damaged or cut short"
        )
