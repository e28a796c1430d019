"""Replies uploaded by journalists: age files made by ``tipbox reply``, stored as they are.

An uploaded reply is already encrypted (on the air-gapped machine), so it is not encrypted
again: its bytes stream straight into a temporary file among the store's items
(:class:`ReplySink`, made by :func:`~.incoming.create_temp` as the store's own), are checked
with :func:`app.reply.check_reply` against the source's reply key and every newsroom key, must
be padded to a power-of-two size as ``tipbox reply`` pads them, and only then become an item
(:meth:`app.server.store.Store.commit`). Anything refused is deleted at once. No Flask here.
"""

from __future__ import annotations

import os
from typing import IO, BinaryIO

from app.errors import ReplyError
from app.padding import bucket
from app.reply import BUCKET_MIN, MAX_FILE_BYTES, check_reply
from app.server.incoming import create_temp
from app.server.store import Item, PendingItem, Source, Store

READ_SIZE = 64 * 1024


class ReplySink:
    """A temporary file in the store's items folder that an uploaded reply streams into."""

    def __init__(self, store: Store) -> None:
        self.path, fd, self._claim = create_temp(store.items)
        self.file: BinaryIO = os.fdopen(fd, "w+b")
        self.committed = False

    def fill(self, src: IO[bytes], limit: int = MAX_FILE_BYTES) -> None:
        """Copy a request body in; refuse it past ``limit`` bytes."""
        total = 0
        while block := src.read(READ_SIZE):
            total += len(block)
            if total > limit:
                raise ReplyError(f"the reply is larger than {limit} bytes")
            self.file.write(block)

    def abort(self) -> None:
        """Delete the file unless it became an item; safe to call twice."""
        if not self.committed:
            self.path.unlink(missing_ok=True)
        self._claim.release()
        self.file.close()


def expected_recipients(store: Store, source: Source) -> list[str]:
    """The keys a reply to ``source`` must be encrypted to: its reply key, then the newsroom's."""
    return [source.reply_recipient, *(str(r) for r in store.recipients)]


def store_reply(store: Store, source: Source, sink: ReplySink) -> Item:
    """Check the uploaded reply in ``sink`` and make it an item of ``source``.

    :raises ReplyError: naming what is wrong; the upload is then deleted.
    """
    try:
        sink.file.flush()
        size = sink.file.seek(0, os.SEEK_END)
        sink.file.seek(0)
        keys = expected_recipients(store, source)
        check_reply(sink.file, keys)
        if size != bucket(size, BUCKET_MIN):
            raise ReplyError("the reply is not padded as 'tipbox reply' pads it")
        os.fsync(sink.file.fileno())
        sink.file.close()
        os.utime(sink.path, (0, 0))
        pending = PendingItem(sink.path, "reply", 0, size, tuple(keys))
        item = store.commit(source.id, source.reply_recipient, [pending])[0]
        sink.committed = True
        return item
    finally:
        sink.abort()
