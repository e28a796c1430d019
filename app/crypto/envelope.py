"""Whole age files: header plus payload, streamed between any readable and any writable."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from app.crypto.header import Stanza, encode_header, hkdf, parse_header
from app.crypto.recipients import (
    FILE_KEY_SIZE,
    Identity,
    Recipient,
    ScryptRecipient,
    check_mix,
    unwrap_file_key,
)
from app.crypto.stream import (
    BATCH_CHUNKS,
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    NONCE_SIZE,
    Opener,
    Readable,
    Sealer,
    Writable,
    aligned,
    read_full,
    write_all,
)
from app.errors import CryptoError, HeaderError, NoIdentityMatchError
from app.server.pools import ProcessPool

PAYLOAD_LABEL = b"payload"
Progress = Callable[[int], None]


def _stanzas(file_key: bytes, recipients: Sequence[Recipient]) -> list[Stanza]:
    if not recipients:
        raise CryptoError("no recipients: a file must be encrypted to at least one key")
    if len(recipients) > 1 and any(isinstance(r, ScryptRecipient) for r in recipients):
        raise CryptoError("a passphrase cannot be combined with other recipients")
    check_mix(recipients)
    return [r.wrap(file_key) for r in recipients]


class EncryptingWriter:
    """A writable that encrypts everything written to it into ``dst`` as one age file.

    Plaintext is held in memory one chunk at a time (64 KiB) and never reaches ``dst`` in the
    clear; :meth:`close` seals the last chunk. Closing is required: a file that was not closed
    is truncated and will fail to decrypt, which is the safe failure.
    """

    def __init__(self, dst: Writable, recipients: Sequence[Recipient]) -> None:
        file_key = os.urandom(FILE_KEY_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        dst.write(encode_header(file_key, _stanzas(file_key, recipients)) + nonce)
        self._dst = dst
        self._sealer = Sealer(hkdf(file_key, nonce, PAYLOAD_LABEL))
        self._buf = bytearray()
        self.closed = False
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take ``data``; emit every chunk that is known not to be the last."""
        if self.closed:
            raise ValueError("write to a closed EncryptingWriter")
        self._buf += data
        self.size += len(data)
        # Keep at least one byte back: only close() knows which chunk is last.
        while len(self._buf) > CHUNK_SIZE:
            with memoryview(self._buf) as view:
                self._dst.write(self._sealer.seal(view[:CHUNK_SIZE], last=False))
            del self._buf[:CHUNK_SIZE]
        return len(data)

    def close(self) -> None:
        """Seal the last chunk (which may be empty only if nothing was written)."""
        if not self.closed:
            self._dst.write(self._sealer.seal(bytes(self._buf), last=True))
            self._buf = bytearray()
            self.closed = True

    def __enter__(self) -> EncryptingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()


def encrypt(
    src: Readable,
    dst: Writable,
    recipients: Sequence[Recipient],
    progress: Progress | None = None,
    extra_stanzas: Sequence[Stanza] = (),
) -> int:
    """Encrypt all of ``src`` into ``dst``; return the plaintext size.

    ``extra_stanzas`` are added to the header after the recipients' (covered by the header MAC;
    age ignores stanza types it does not know, as with the spec's "grease" stanzas).
    Large inputs go through a pipeline: while one batch is written, the next is read and sealed
    on two threads (reads, writes and the AEAD all release the GIL).
    """
    file_key = os.urandom(FILE_KEY_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    stanzas = [*_stanzas(file_key, recipients), *extra_stanzas]
    dst.write(encode_header(file_key, stanzas) + nonce)
    key = hkdf(file_key, nonce, PAYLOAD_LABEL)
    size = BATCH_CHUNKS * CHUNK_SIZE
    ins = [aligned(size) for _ in range(3)]
    outs = [aligned(BATCH_CHUNKS * ENC_CHUNK_SIZE) for _ in range(2)]
    n = total = read_full(src, ins[0])
    if n < size:  # small input: no threads
        write_all(dst, Sealer(key).seal_batch(ins[0][:n], outs[0], last=True))
        if progress:
            progress(total)
        return total
    with (
        ThreadPoolExecutor(2) as pool,
        ThreadPoolExecutor(1) as reader,
        ThreadPoolExecutor(1) as writer,
    ):
        # Batch k is sealed while k+1 is known, k+2 is being read and k-1 is being written.
        sealer = Sealer(key, pool)
        ahead: Future[int] = reader.submit(read_full, src, ins[1])
        pending: Future[object] | None = None
        for batch in itertools.count():
            m = ahead.result()
            ahead = reader.submit(read_full, src, ins[(batch + 2) % 3]) if m == size else _done(0)
            sealed = sealer.seal_batch(ins[batch % 3][:n], outs[batch % 2], last=m == 0)
            if pending:
                pending.result()
            pending = writer.submit(write_all, dst, sealed)
            if progress:
                progress(total)
            if m == 0:
                break
            total, n = total + m, m
        if pending:
            pending.result()
    return total


PIPELINE_CHUNKS = 8  # DeferredHeadWriter seals pieces of at least 512 KiB on the shared pool
_POOL = ProcessPool(3, "tipbox-seal")


def shared_pool() -> ThreadPoolExecutor:
    """The process's pool for long-lived writers: three threads, for the half of a batch that
    the request thread does not seal itself, the write of the previous batch, and a spare.

    Created on first use, and anew in a forked child (:mod:`app.server.pools`), so a forking server
    makes it in each worker. Shared by every item written at once: under load they take turns,
    and no request ever waits on a task that waits on another task, so the pool cannot
    deadlock.
    """
    return _POOL.get()


def _done(value: int) -> Future[int]:
    future: Future[int] = Future()
    future.set_result(value)
    return future


class _Source:
    """Adds ``readline`` to any binary source, for the header, without losing payload bytes."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._pending = b""

    def readline(self, limit: int = -1, /) -> bytes:
        while b"\n" not in self._pending and (limit < 0 or len(self._pending) < limit):
            block = bytearray(4096)
            n = self._raw.readinto(block)
            if not n:
                break
            self._pending += bytes(block[:n])
        end = self._pending.find(b"\n") + 1 or len(self._pending)
        if limit >= 0:
            end = min(end, limit)
        line, self._pending = self._pending[:end], self._pending[end:]
        return line

    def readinto(self, buffer: bytearray | memoryview, /) -> int | None:
        if self._pending:
            n = min(len(buffer), len(self._pending))
            buffer[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        return self._raw.readinto(buffer)


def open_payload(
    src: Readable, identities: Sequence[Identity], pool: ThreadPoolExecutor | None = None
) -> Iterator[memoryview]:
    """Check the header of ``src`` and return an iterator over its plaintext chunks.

    :raises HeaderError: the header is malformed (or the file ends before the payload).
    :raises NoIdentityMatchError: none of ``identities`` opens the file.
    :raises HeaderMACError: the header was altered.
    The iterator raises a :class:`PayloadError` subclass when the payload is damaged.
    """
    source = _Source(src)
    header = parse_header(source)
    file_key = unwrap_file_key(header.stanzas, identities)
    if file_key is None:
        raise NoIdentityMatchError()
    header.verify(file_key)
    nonce = memoryview(bytearray(NONCE_SIZE))
    if read_full(source, nonce) != NONCE_SIZE:
        raise HeaderError("the file ends before its payload: it is truncated")
    return Opener(hkdf(file_key, bytes(nonce), PAYLOAD_LABEL), source, pool).chunks()


def decrypt(
    src: Readable,
    dst: Writable,
    identities: Sequence[Identity],
    progress: Progress | None = None,
) -> int:
    """Decrypt ``src`` into ``dst``; return the plaintext size.

    Only authenticated chunks reach ``dst``; on a damaged payload some of them may already have
    been written, so callers writing to a file must discard it on error (see ``app.files``).
    """
    total = 0
    pending: Future[object] | None = None
    with ThreadPoolExecutor(2) as pool, ThreadPoolExecutor(1) as writer:
        # A view stays valid until the next-but-one: write one while the next is opened.
        for chunk in open_payload(src, identities, pool):
            if pending:
                pending.result()
            pending = writer.submit(write_all, dst, chunk)
            total += len(chunk)
            if progress:
                progress(total)
        if pending:
            pending.result()
    return total


class Seekable(Writable, Protocol):
    """A writable that can go back: the one thing :class:`DeferredHeadWriter` needs."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


def ciphertext_size(header_size: int, plain_size: int) -> int:
    """Bytes of an age file whose header (with nonce) and plaintext have these sizes."""
    chunks = max(1, -(-plain_size // CHUNK_SIZE))
    return header_size + plain_size + chunks * (ENC_CHUNK_SIZE - CHUNK_SIZE)


def largest_plain_size(header_size: int, ciphertext_limit: int) -> int:
    """The largest plaintext whose age file fits in ``ciphertext_limit`` bytes."""
    full, rest = divmod(max(ciphertext_limit - header_size, 0), ENC_CHUNK_SIZE)
    # A partial last chunk holds its length minus the tag; 16 bytes or fewer hold nothing.
    return full * CHUNK_SIZE + max(rest - (ENC_CHUNK_SIZE - CHUNK_SIZE), 0)


class DeferredHeadWriter:
    """Encrypts ``head + body + tail`` into a seekable file, where ``head`` comes last.

    The head has a length fixed up front but content known only at the end (a tar header
    needs the size of what follows). The head and the first body bytes that share chunk 0
    with it stay in memory (at most 64 KiB) until :meth:`finish`; every later chunk is sealed
    and written as the body streams in; then chunk 0 is sealed and written into the hole left
    for it. Nothing but ciphertext ever reaches ``dst``.
    """

    def __init__(self, dst: Seekable, recipients: Sequence[Recipient], head_size: int) -> None:
        if not 0 < head_size <= CHUNK_SIZE:
            raise ValueError("the head must fit in the first chunk")
        file_key = os.urandom(FILE_KEY_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        header = encode_header(file_key, _stanzas(file_key, recipients)) + nonce
        dst.write(header)
        self.header_size = len(header)
        self._dst = dst
        self._key = hkdf(file_key, nonce, PAYLOAD_LABEL)
        self._head_size = head_size
        self._first = bytearray()  # body bytes that belong to chunk 0, held until finish()
        self._rest = bytearray()  # pending bytes of later chunks
        # Sealed chunks on their way to dst, two buffers taking turns: one may be written (on
        # the shared pool) while the next batch is sealed into the other.
        self._outs = [bytearray(), bytearray()]
        self._turn = 0
        self._writing: Future[None] | None = None
        self._sealer: Sealer | None = None
        self.body_size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take body bytes."""
        self.body_size += len(data)
        self._feed(memoryview(data))
        return len(data)

    def _feed(self, data: memoryview) -> None:
        room = CHUNK_SIZE - self._head_size - len(self._first)
        if room > 0:
            self._first += data[:room]
            data = data[room:]
        if not data:
            return
        if self._sealer is None:  # chunk 0 is full: leave a hole for it and go on from chunk 1
            self._sealer = Sealer(self._key, first_counter=1)
            self._dst.seek(self.header_size + ENC_CHUNK_SIZE)
        self._rest += data
        # Seal every full chunk at once, but keep the last one back until finish(): only then
        # is it known to be the last.
        full = (len(self._rest) - 1) // CHUNK_SIZE
        if not full:
            return
        # Big pieces (a fast upload) are sealed on two threads and written on a third while the
        # next piece is received and parsed: the request thread alone was the bottleneck.
        # Small ones (a slow upload over Tor) stay on the request thread.
        pool = shared_pool() if full >= PIPELINE_CHUNKS else None
        self._sealer.pool = pool
        if len(self._outs[self._turn]) < full * ENC_CHUNK_SIZE:
            self._outs[self._turn] = bytearray(full * ENC_CHUNK_SIZE)
        with memoryview(self._rest) as view:
            out = memoryview(self._outs[self._turn])
            sealed = self._sealer.seal_batch(view[: full * CHUNK_SIZE], out, False)
        del self._rest[: full * CHUNK_SIZE]
        self.wait()  # the previous batch is written before this one (and its buffer is free)
        if pool is None:
            write_all(self._dst, sealed)
        else:
            self._writing = pool.submit(write_all, self._dst, sealed)
            self._turn ^= 1

    def wait(self) -> None:
        """Wait until every sealed byte was handed to ``dst`` (raising what a write raised).

        Call it before touching ``dst`` in any other way, closing it included.
        """
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def finish(self, head: bytes, tail: Iterable[bytes | memoryview] = ()) -> int:
        """Append ``tail``, seal everything with ``head`` in front; return the file's size."""
        if len(head) != self._head_size:
            raise ValueError("the head does not have the announced length")
        for piece in tail:
            self._feed(memoryview(piece))
        self.wait()
        first = Sealer(self._key)
        if self._sealer is None:
            self._dst.write(first.seal(head + self._first, last=True))
            return self._dst.tell()
        self._dst.write(self._sealer.seal(self._rest, last=True))
        end = self._dst.tell()
        self._dst.seek(self.header_size)
        self._dst.write(first.seal(head + self._first, last=False))
        self._dst.seek(end)
        return end
