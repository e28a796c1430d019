"""Whole age files: header plus payload, streamed between any readable and any writable."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
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
    Buffer,
    Opener,
    Readable,
    Sealer,
    Writable,
    aligned,
    read_full,
    write_all,
)
from app.errors import CryptoError, HeaderError, NoIdentityMatchError

PAYLOAD_LABEL = b"payload"
PIPELINE_CHUNKS = 8  # a Writer seals and writes a write of at least 512 KiB with its pool
Progress = Callable[[int], None]


def _stanzas(file_key: bytes, recipients: Sequence[Recipient]) -> list[Stanza]:
    if not recipients:
        raise CryptoError("no recipients: a file must be encrypted to at least one key")
    if len(recipients) > 1 and any(isinstance(r, ScryptRecipient) for r in recipients):
        raise CryptoError("a passphrase cannot be combined with other recipients")
    check_mix(recipients)
    return [r.wrap(file_key) for r in recipients]


class Writer:
    """age's streaming encryptor: a writable that encrypts what it is given into ``dst``.

    The one way Tipbox encrypts (:func:`encrypt` loops over it, :class:`DeferredHeadWriter`
    builds on it). It writes the header (the prologue: header and payload nonce) at once, then
    seals every chunk known not to be the last; :meth:`close` seals the last one. Plaintext is
    held in memory one chunk at most and never reaches ``dst`` in the clear. A writer that is
    not closed leaves a truncated file, which fails to decrypt: the safe failure.

    With a ``pool`` (the caller's: the crypto core owns no threads), a write of at least
    :data:`PIPELINE_CHUNKS` chunks is sealed on two threads (this one and the pool's) and
    written on a pool thread while the caller prepares the next: on a two-core machine one
    thread was the bottleneck. Smaller writes (a slow upload over Tor) stay on the caller's
    thread. Chunks are sealed straight from the caller's buffer; only a partial chunk is copied.
    """

    def __init__(
        self,
        dst: Writable,
        recipients: Sequence[Recipient],
        *,
        extra_stanzas: Sequence[Stanza] = (),
        pool: Executor | None = None,
        first_chunk: int = 0,
    ) -> None:
        file_key = os.urandom(FILE_KEY_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        stanzas = [*_stanzas(file_key, recipients), *extra_stanzas]
        header = encode_header(file_key, stanzas) + nonce
        dst.write(header)
        self.header_size = len(header)
        self._dst, self._pool = dst, pool
        self._key = hkdf(file_key, nonce, PAYLOAD_LABEL)
        self._sealer = Sealer(self._key, first_counter=first_chunk)
        self._rest = bytearray()  # the newest chunk, full or not, held back: it may be the last
        # Sealed batches on their way to dst, two buffers taking turns: one may be written (on
        # the pool) while the next batch is sealed into the other.
        self._outs = [memoryview(b""), memoryview(b"")]
        self._turn = 0
        self._writing: Future[None] | None = None
        self.closed = False
        self.size = 0  # plaintext bytes written

    def write(self, data: Buffer) -> int:
        """Take ``data``; seal and write every chunk that is known not to be the last."""
        if self.closed:
            raise ValueError("write to a closed writer")
        with memoryview(data) as view:
            self.size += len(view)
            self._push(view)
            return len(view)

    def _push(self, data: memoryview) -> None:
        if self._rest:  # top up the held-back chunk first
            take = CHUNK_SIZE - len(self._rest)
            self._rest += data[:take]
            data = data[take:]
        if not data:
            return
        held = len(self._rest) // CHUNK_SIZE  # a full chunk that more data now follows, or none
        full = (len(data) - 1) // CHUNK_SIZE  # keep at least one byte back: it may be the last
        if not held + full:
            self._rest = bytearray(data)
            return
        pool = self._pool if held + full >= PIPELINE_CHUNKS else None
        self._sealer.pool = pool
        out, n = self._out(held + full), 0
        if held:
            with memoryview(self._rest) as chunk:
                n = len(self._sealer.seal_batch(chunk, out, False))
        if full:
            n += len(self._sealer.seal_batch(data[: full * CHUNK_SIZE], out[n:], False))
        self._rest = bytearray(data[full * CHUNK_SIZE :])
        self._send(out[:n], pool)

    def _out(self, chunks: int) -> memoryview:
        if len(self._outs[self._turn]) < chunks * ENC_CHUNK_SIZE:
            self._outs[self._turn] = aligned(chunks * ENC_CHUNK_SIZE)
        return self._outs[self._turn]

    def _send(self, sealed: memoryview, pool: Executor | None) -> None:
        self.wait()  # the previous batch is written before this one (and its buffer is free)
        if pool is None:
            write_all(self._dst, sealed)
        elif sealed:
            self._writing = pool.submit(write_all, self._dst, sealed)
            self._turn ^= 1

    def wait(self) -> None:
        """Wait until every sealed byte was handed to ``dst`` (raising what a write raised).

        Call it before touching ``dst`` in any other way, closing it included.
        """
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def close(self) -> None:
        """Seal the last chunk (which may be empty only if nothing was written); idempotent."""
        if not self.closed:
            self.wait()
            self.closed = True
            self._dst.write(self._sealer.seal(self._rest, last=True))
            self._rest = bytearray()

    def __enter__(self) -> Writer:
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
    """Encrypt all of ``src`` into ``dst`` with a :class:`Writer`; return the plaintext size.

    ``extra_stanzas`` are added to the header after the recipients' (covered by the header MAC;
    age ignores stanza types it does not know, as with the spec's "grease" stanzas).
    Large inputs go through a pipeline: while one batch is sealed (on two threads), the next is
    read and the previous one written (reads, writes and the AEAD all release the GIL).
    """
    size = BATCH_CHUNKS * CHUNK_SIZE
    ins = [aligned(size), aligned(size)]
    n = read_full(src, ins[0])
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(3)) if n == size else None  # small: none
        writer = Writer(dst, recipients, extra_stanzas=extra_stanzas, pool=pool)
        for batch in itertools.count(1):
            ahead = pool.submit(read_full, src, ins[batch % 2]) if pool and n == size else None
            writer.write(ins[(batch - 1) % 2][:n])
            if progress:
                progress(writer.size)
            if ahead is None:
                break
            n = ahead.result()
        writer.close()
    return writer.size


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


class DeferredHeadWriter(Writer):
    """A :class:`Writer` of ``head + body + tail`` into a seekable file, where ``head`` comes last.

    The head has a length fixed up front but content known only at the end (a tar header
    needs the size of what follows). The head and the first body bytes that share chunk 0
    with it stay in memory (at most 64 KiB) until :meth:`finish`; the writer seals chunks 1
    onwards as the body streams in, after a hole left for chunk 0; :meth:`finish` seals
    chunk 0 into that hole. Nothing but ciphertext ever reaches ``dst``.
    """

    def __init__(
        self,
        dst: Seekable,
        recipients: Sequence[Recipient],
        head_size: int,
        *,
        extra_stanzas: Sequence[Stanza] = (),
        pool: Executor | None = None,
    ) -> None:
        if not 0 < head_size <= CHUNK_SIZE:
            raise ValueError("the head must fit in the first chunk")
        super().__init__(dst, recipients, extra_stanzas=extra_stanzas, pool=pool, first_chunk=1)
        self._seekable = dst
        self._head_size = head_size
        self._first = bytearray()  # body bytes that belong to chunk 0, held until finish()
        self._hole = False  # whether chunk 0 is full, and later chunks go after a hole for it
        self.body_size = 0

    def write(self, data: Buffer) -> int:
        """Take body bytes."""
        with memoryview(data) as view:
            self._feed(view)
            self.body_size += len(view)
            return len(view)

    def _feed(self, data: memoryview) -> None:
        room = max(CHUNK_SIZE - self._head_size - len(self._first), 0)
        self._first += data[:room]
        if len(data) <= room:
            return
        if not self._hole:  # chunk 0 is full: leave a hole for it
            self._hole = True
            self._seekable.seek(self.header_size + ENC_CHUNK_SIZE)
        super().write(data[room:])

    def finish(self, head: bytes, tail: Iterable[Buffer] = ()) -> int:
        """Append ``tail``, seal everything with ``head`` in front; return the file's size."""
        if len(head) != self._head_size:
            raise ValueError("the head does not have the announced length")
        for piece in tail:
            self._feed(memoryview(piece))
        self.wait()
        first = Sealer(self._key)
        if not self._hole:
            self._seekable.write(first.seal(head + self._first, last=True))
            return self._seekable.tell()
        self.close()
        end = self._seekable.tell()
        self._seekable.seek(self.header_size)
        self._seekable.write(first.seal(head + self._first, last=False))
        self._seekable.seek(end)
        return end
