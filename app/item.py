"""The stored item's format, both directions: every item is written and read through here.

An item (a message, a file, a reply) is an age v1 file whose plaintext is a tar container
holding one member, padded so that the file's size says only which size bucket it is in::

    age header, nonce      app.crypto: the recipients' stanzas (and a reply's declaration)
    container head         pax header, records and ustar header, of a length fixed by the
                           name and type alone (app.container), sealed last, into chunk 0
    data                   the member, streamed in as it arrives
    trailer                zeros to 512 bytes, the end of the archive, then zeros up to the
                           bucket (app.padding) of the whole age file

:class:`Writer` writes one (the server's uploads and messages, ``tipbox reply``'s replies) and
:func:`padded_tail` is the one place where the padded size is worked out. :func:`reading` is the
one reader (the server showing a reply to its source, ``tipbox open`` writing a bundle out): it
takes exactly one regular, non-sparse member, never yields more bytes than the payload held, and
authenticates the payload to its end, padding included, before it lets go.

Why :mod:`app.container` (the tar bytes) and :mod:`app.padding` (the bucket scheme) stay apart
as this module's helpers: they are pure functions with property tests of their own, and the
three in one would be twice the length a module here may have. Nothing else in Tipbox calls
their writing parts. Standard library and ``cryptography`` only: the air-gapped commands load it.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO

from app import container
from app.crypto.envelope import (
    DeferredHeadWriter,
    Seekable,
    ciphertext_size,
    largest_plain_size,
)
from app.crypto.header import Stanza
from app.crypto.recipients import Recipient
from app.crypto.stream import CHUNK_SIZE, Buffer
from app.errors import ItemError
from app.padding import bucket

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MIME_RECORD = "SCHILY.xattr.user.mime_type"
Tick = Callable[[int], None]


@dataclass(frozen=True)
class Padding:
    """A bucket scheme (:func:`app.padding.bucket`): the smallest bucket and steps per doubling."""

    minimum: int = 1024
    steps: int = 4


def is_padded(size: int, padding: Padding) -> bool:
    """Whether an age file of ``size`` bytes fills a bucket exactly, as :class:`Writer` pads."""
    return size == bucket(size, padding.minimum, padding.steps)


def padded_tail(header_size: int, head_size: int, size: int, padding: Padding) -> int:
    """The trailer length that pads an item of ``size`` data bytes to its bucket.

    ``header_size`` is the age header's with its nonce; the bucket is of the whole age file.
    """
    shortest = head_size + size + container.tail_size(size)
    target = bucket(ciphertext_size(header_size, shortest), padding.minimum, padding.steps)
    return largest_plain_size(header_size, target) - head_size - size


class Writer:
    """A writable that encrypts one item's data into ``dst``; :meth:`finish` pads and seals it.

    The member's size is known only at the end, so its head goes last, into chunk 0
    (:class:`~app.crypto.envelope.DeferredHeadWriter`); ``pool`` is the caller's, for big writes.
    """

    def __init__(
        self,
        dst: Seekable,
        recipients: Sequence[Recipient],
        name: str,
        content_type: str,
        *,
        padding: Padding,
        extra_stanzas: Sequence[Stanza] = (),
        pool: Executor | None = None,
    ) -> None:
        self.name = container.safe_name(name)
        self.content_type = container.safe_content_type(content_type)
        self._head_size = container.head_size(self.name, self.content_type)
        self._padding = padding
        self._writer = DeferredHeadWriter(
            dst, recipients, self._head_size, extra_stanzas=extra_stanzas, pool=pool
        )

    @property
    def size(self) -> int:
        """Data bytes written so far."""
        return self._writer.body_size

    def write(self, data: Buffer) -> int:
        """Encrypt more of the member's data."""
        return self._writer.write(data)

    def wait(self) -> None:
        """Wait until no write is on its way to ``dst`` (before closing it, even on error)."""
        self._writer.wait()

    def finish(self) -> int:
        """Pad the item to its bucket and seal it; return the age file's size."""
        size = self.size
        tail = padded_tail(self._writer.header_size, self._head_size, size, self._padding)
        head = container.head(self.name, self.content_type, size, 0)
        return self._writer.finish(head, container.trailer(size, tail))


# --- the one reader ---------------------------------------------------------------------------


class Plaintext(io.RawIOBase):
    """An item's authenticated plaintext chunks as a readable, for tarfile's stream mode."""

    def __init__(
        self, chunks: Iterator[memoryview], tick: Tick | None = None, limit: int | None = None
    ) -> None:
        self._chunks, self._tick, self._limit = chunks, tick, limit
        self._pending = memoryview(b"")
        self.size = 0

    def readable(self) -> bool:
        return True

    def _next(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._pending = chunk  # valid until the next chunk is asked for
        self.size += len(chunk)
        if self._limit is not None and self.size > self._limit:
            raise ItemError("the item is too large to read here")
        if self._tick:
            self._tick(self.size)
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if not self._pending and not self._next():
            return 0
        with memoryview(buffer) as view:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        """Authenticate the rest of the payload (the container's padding)."""
        while self._next():
            pass


@contextlib.contextmanager
def _damaged() -> Iterator[None]:
    """What tarfile raises on a damaged container, as the item's own error."""
    try:
        yield
    except (tarfile.TarError, *container.DAMAGED_TAR):
        raise ItemError("the item's container is damaged") from None


@dataclass(frozen=True)
class Member:
    """The one member of an item being read."""

    name: str
    size: int
    content_type: str
    _data: IO[bytes]
    _plain: Plaintext

    def blocks(self) -> Iterator[bytes]:
        """The member's bytes, never more than the payload has given so far.

        Sparse members are refused before this; the bound holds whatever else a tar reader
        might expand, so an item of a few kilobytes can never fill a disk or the memory.
        """
        given = 0
        while True:
            with _damaged():
                block = self._data.read(CHUNK_SIZE)
            if not block:
                return
            given += len(block)
            if given > self._plain.size:
                raise ItemError("the item's file holds more than its payload: refused")
            yield block

    def copy(self, out: BinaryIO) -> None:
        """Write the member's bytes to ``out``."""
        for block in self.blocks():
            out.write(block)

    def read(self, limit: int) -> bytes:
        """The member's first ``limit`` bytes (at most)."""
        data = bytearray()
        for block in self.blocks():
            data += block
            if len(data) >= limit:
                break
        return bytes(data[:limit])

    def authenticate(self) -> None:
        """Authenticate the rest of the payload now (leaving :func:`reading` does it too)."""
        self._plain.drain()


@contextlib.contextmanager
def reading(
    chunks: Iterator[memoryview], tick: Tick | None = None, limit: int | None = None
) -> Iterator[Member]:
    """The one member of an item's plaintext ``chunks`` (from ``crypto.open_payload``).

    ``tick`` is told the plaintext size as it grows; past ``limit`` bytes of plaintext the
    item is refused. On the way out the rest of the payload is authenticated.

    :raises ItemError: the container is damaged or does not hold one regular file.
    """
    plain = Plaintext(chunks, tick, limit)
    with contextlib.ExitStack() as stack:
        with _damaged():
            reader = io.BufferedReader(plain, CHUNK_SIZE)
            archive = stack.enter_context(tarfile.open(fileobj=reader, mode="r|"))
            member = archive.next()
            plain_file = member is not None and container.is_plain_file(member)
            data = archive.extractfile(member) if member and plain_file else None
        if member is None or data is None:
            raise ItemError("the item does not hold a regular file")
        content_type = member.pax_headers.get(MIME_RECORD, container.DEFAULT_CONTENT_TYPE)
        yield Member(member.name, member.size, content_type, data, plain)
        plain.drain()
