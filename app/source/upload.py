"""Uploads that are encrypted as they arrive: no plaintext temp file, ever.

Werkzeug 3 asks ``Request._get_file_stream`` for somewhere to put each uploaded file; we hand
it an :class:`~.store.ItemWriter`, which encrypts into its final age file as bytes stream in
(memory stays flat: one 64 KiB chunk per upload). Our :class:`EncryptingMultiPartParser` drives
Werkzeug's sans-IO multipart decoder itself, so that it can

- finish each item the moment its part ends (Werkzeug's own loop would ``seek(0)`` a temp file),
- skip the empty part a browser sends for a file input left empty,
- refuse a body whose first part is not a valid CSRF token (forms put it first), before any
  other text is held in memory or any file written: a forged or scripted request costs us
  one read and no disk (the message field alone is still read, to give it back to a source
  whose session ended while typing),
- hold at most ``MAX_FORM_MEMORY_SIZE`` bytes of text fields in all (413 past it), in a form
  without files too (Werkzeug reads those whole),
- read the body in large blocks, which is what makes it fast under gunicorn.

The teardown registered by :func:`init_app` aborts every writer that was not committed, so a
request that fails for any reason (400, 413, CSRF, a crash) leaves no ciphertext behind. Before
any of that, a submission is refused (:class:`NoRoomError`) while the disk is nearly full.

Size limits are enforced here, not by Werkzeug's ``MAX_CONTENT_LENGTH`` (which refuses a body
before reading a byte of it): the fields read so far are kept on ``g`` (:data:`FIELDS`), so a
refused submission can give the source back the message it typed, which the form sends before
the files. Files over the limit are refused as they stream (every writer aborted, the rest of
the body read and dropped so the browser can show the answer); a body whose Content-Length is
over the whole cap is refused at its first file, and any body is cut off at the cap.
"""

from __future__ import annotations

import io
import time
import typing as t

from flask import Flask, Request, current_app, g, request
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge, ServiceUnavailable
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.sansio.multipart import Data, Event, Field, File
from wtforms import ValidationError

from app.server.store import ItemWriter, PendingItem, Store
from app.source import limits, multipart

EXTENSION = "tipbox.store"
RESERVE = "tipbox.reserve"
RETRY_AFTER = 3600  # seconds: an admin has to make room
READ_SIZE = 1 << 20  # the largest read from the client: fewer, larger reads are faster
MIN_READ = 64 * 1024  # the first read: a slow upload over Tor never fills more
FAST_READ, SLOW_READ = 0.05, 0.25  # seconds a full read may take to grow / to shrink the next
CSRF_FIELD = "csrf_token"
MESSAGE_FIELD = "message"  # the one field read without a valid token (see _Parts._check_token)
FIELDS = "tipbox_fields"  # on ``g``: the (name, value) fields read so far
LIMIT = "tipbox.upload_limit"  # in ``app.extensions``: the most file bytes one request may bring


class _Discard:
    """Where the empty part of an unused file input goes."""

    def write(self, data: bytes) -> int:
        return len(data)


class _AdaptiveRead:
    """Reads that grow while the client keeps them full and fast, and shrink when it is slow.

    Gunicorn holds what each read asks for: 200 slow Tor uploads reading 1 MiB at a time cost
    a worker 600 MiB (bench/upload.py); a fast local upload still gets 1 MiB reads. Each read
    goes into a new ``bytearray`` through ``readinto``: Werkzeug's ``read`` would copy it once
    more (``io.RawIOBase.read`` reads into a ``bytearray`` of its own, then copies that into
    ``bytes``). A new one each time, since the parser hands out views into it.
    """

    def __init__(self, stream: t.IO[bytes], cap: int | None = None) -> None:
        self._stream, self.size = stream, MIN_READ
        self._readinto = getattr(stream, "readinto", None)
        self._cap, self.total = cap, 0

    def __call__(self) -> bytes | bytearray:
        started = time.monotonic()
        data = self._read(self.size)
        took = time.monotonic() - started
        self.total += len(data)
        if self._cap is not None and self.total > self._cap:
            raise RequestEntityTooLarge()
        if len(data) == self.size and took < FAST_READ:
            self.size = min(2 * self.size, READ_SIZE)
        elif took > SLOW_READ:
            self.size = max(self.size // 2, MIN_READ)
        return data

    def _read(self, size: int) -> bytes | bytearray:
        if self._readinto is None:
            return self._stream.read(size)
        buffer = bytearray(size)
        n = self._readinto(buffer) or 0
        del buffer[n:]
        return buffer


def _needs_token(event: Event) -> bool:
    """Whether ``event`` starts a part that only a request with a valid token may send: any
    field but the token, any file but the empty part of an unused file input."""
    if isinstance(event, Field):
        return event.name != CSRF_FIELD
    return isinstance(event, File) and bool(event.filename)


class _Parts:
    """The state of one multipart body being parsed: fields so far, files so far, current part."""

    def __init__(self, parser: EncryptingMultiPartParser, content_length: int | None) -> None:
        self.parser, self.content_length = parser, content_length
        self.fields: list[tuple[str, str]] = g.setdefault(FIELDS, [])
        self.file_bytes, self.too_large = 0, False
        self.files: list[tuple[str, FileStorage]] = []
        self.part: Field | File | None = None
        self.buffer: list[bytes] = []
        self.sink: ItemWriter | _Discard | None = None
        self.text_size = 0
        self.checked = False
        self.untrusted = False

    def handle(self, event: Event) -> None:
        """Take one decoder event."""
        if isinstance(event, Field | File):
            self._check_token(event)
        if isinstance(event, Field):
            self.part, self.buffer, self.sink = event, [], None
        elif isinstance(event, File):
            self.part = event
            self.sink = _Discard() if self.too_large else self.parser.sink(event)
        elif isinstance(event, Data) and self.part is not None:
            if self.sink is None:
                # One budget for all text fields together, not one per field: 200 fields of
                # 1 MB each took a worker from 71 to 260 MiB.
                self.text_size += len(event.data)
                limit = self.parser.max_form_memory_size
                if limit and self.text_size > limit:
                    # Without a valid token, the token is what the request lacks.
                    raise CSRFError() if self.untrusted else RequestEntityTooLarge()
                self.buffer.append(event.data)
            else:
                self._write(event.data)
            if not event.more_data:
                self._end(self.part)

    def _check_token(self, event: Field | File) -> None:
        """Anything but the token (which forms send first) waits for a valid token: a forged
        request is refused before its text is held in memory or its files reach a disk.

        One exception, for a source whose session ended while typing (the token went with
        it): the message field, which the form sends right after the token, is still read
        (within the text budget) so that :mod:`app.source.refusals` can give it back; the
        body is refused at the next part, before any file byte.
        """
        if self.untrusted:
            raise CSRFError()
        if self.checked or not _needs_token(event):
            return
        self.checked = True
        if self.parser.check_csrf(self.fields):
            return
        if not (isinstance(event, Field) and event.name == MESSAGE_FIELD):
            raise CSRFError()
        self.untrusted = True

    def _write(self, data: bytes) -> None:
        if isinstance(self.sink, ItemWriter):
            self.file_bytes += len(data)
            limit = current_app.extensions.get(LIMIT)
            if limit is not None and self.file_bytes > limit:
                # Refused: nothing is kept, and the rest is read and dropped (see the docstring).
                self.too_large, self.sink = True, _Discard()
                _abort_uncommitted(None)
        if self.sink is not None:
            self.sink.write(data)

    def _end(self, part: Field | File) -> None:
        if isinstance(part, Field):
            charset = self.parser.get_part_charset(part.headers)
            self.fields.append((part.name, b"".join(self.buffer).decode(charset, "replace")))
        elif isinstance(self.sink, ItemWriter):
            self.sink.finish()
            stream = t.cast(t.IO[bytes], self.sink)
            storage = FileStorage(stream, self.sink.filename, part.name, headers=part.headers)
            self.files.append((part.name, storage))


class EncryptingMultiPartParser(MultiPartParser):
    """Werkzeug's multipart parser with files streamed into encrypting item writers."""

    def parse(
        self, stream: t.IO[bytes], boundary: bytes, content_length: int | None
    ) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        try:
            parts = self._parse(stream, boundary, content_length)
        except BaseException:
            # A body that fails to parse submits nothing, not even its complete parts.
            _abort_uncommitted(None)
            raise
        return self.cls(parts.fields), self.cls(parts.files)

    def _parse(self, stream: t.IO[bytes], boundary: bytes, content_length: int | None) -> _Parts:
        parts = _Parts(self, content_length)
        read = _AdaptiveRead(stream, current_app.config.get("MAX_CONTENT_LENGTH"))
        for event in multipart.events(read, boundary, self.max_form_parts):
            parts.handle(event)
        if parts.too_large:
            raise RequestEntityTooLarge()
        if parts.untrusted:
            raise CSRFError()
        return parts

    def check_csrf(self, fields: list[tuple[str, str]]) -> bool:
        """Whether the fields so far hold a valid CSRF token (always, when CSRF is off)."""
        if not current_app.config.get("WTF_CSRF_ENABLED", True):
            return True
        token = next((value for name, value in fields if name == CSRF_FIELD), None)
        try:
            validate_csrf(token)
        except ValidationError:
            return False
        return True

    def sink(self, event: File) -> ItemWriter | _Discard:
        """Where a file part goes (the token was checked): an item writer if the body is not
        over the cap, or nowhere for the empty part of an unused file input."""
        if not event.filename:
            return _Discard()
        length, cap = request.content_length, current_app.config.get("MAX_CONTENT_LENGTH")
        if length is not None and cap is not None and length > cap:
            raise RequestEntityTooLarge()
        limits.spend()  # a file written to disk is work the rate limits count
        return t.cast(ItemWriter, self.start_file_streaming(event, length))


class EncryptingFormDataParser(FormDataParser):
    """Routes multipart bodies to :class:`EncryptingMultiPartParser`."""

    def _parse_multipart(
        self,
        stream: t.IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[t.IO[bytes], MultiDict[str, str], MultiDict[str, FileStorage]]:
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        parser = EncryptingMultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
        )
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files

    def _parse_urlencoded(
        self,
        stream: t.IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[t.IO[bytes], MultiDict[str, str], MultiDict[str, FileStorage]]:
        # Werkzeug reads such a body whole, whatever its size (up to the 2 GiB an upload may
        # have): a form without files gets the same text budget as the fields of one with.
        limit = self.max_form_memory_size
        if limit is None:
            return super()._parse_urlencoded(stream, mimetype, content_length, options)
        if content_length is not None and content_length > limit:
            raise RequestEntityTooLarge()
        data = bytearray()
        while chunk := stream.read(limit + 1 - len(data)):  # a read may return less
            data += chunk
            if len(data) > limit:
                raise RequestEntityTooLarge()
        return super()._parse_urlencoded(io.BytesIO(data), mimetype, len(data), options)


class UploadRequest(Request):
    """A request whose uploaded files become encrypted store items as they arrive."""

    form_data_parser_class = EncryptingFormDataParser

    @property
    def max_content_length(self) -> int | None:
        """No limit up front for multipart bodies: the parser enforces it (module docstring)."""
        if self.mimetype == "multipart/form-data":
            return None
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> t.IO[bytes]:
        store: Store = current_app.extensions[EXTENSION]
        writer = store.writer("file", filename or "", content_type or "")
        g.setdefault("tipbox_writers", []).append(writer)
        return t.cast(t.IO[bytes], writer)

    def pending_items(self) -> list[PendingItem]:
        """The finished, not yet committed, items of this request's files."""
        _ = self.files  # parse the body if nothing has yet
        writers: list[ItemWriter] = g.get("tipbox_writers", [])
        return [w.pending for w in writers if w.pending is not None]


def _abort_uncommitted(_exc: BaseException | None) -> None:
    for writer in g.pop("tipbox_writers", []):
        writer.abort()


class NoRoomError(ServiceUnavailable):
    """The data folder has less free space than the reserve: submissions wait (503, since the
    server, not the client, is at fault, and it passes once an admin makes room)."""


def _refuse_when_full() -> None:
    """Refuse a multipart body, before reading it, while free space is under the reserve.

    With a few KiB left, SQLite's COMMIT died of SIGBUS in its ``-shm`` mapping (fault
    injection: 13 of 22 tries), killing the worker and every request on it.
    """
    if request.method == "POST" and request.mimetype == "multipart/form-data":
        store: Store = current_app.extensions[EXTENSION]
        if store.free_space() < current_app.extensions[RESERVE]:
            raise NoRoomError(retry_after=RETRY_AFTER)


def init_app(app: Flask, store: Store, limit: int | None = None, reserve: int = 0) -> None:
    """Make ``app`` stream uploads of up to ``limit`` file bytes into ``store``, refuse them
    while fewer than ``reserve`` bytes are free, and clean up after failed requests."""
    app.request_class = UploadRequest
    app.extensions[EXTENSION] = store
    app.extensions[LIMIT] = limit
    app.extensions[RESERVE] = reserve
    app.before_request(_refuse_when_full)
    app.teardown_request(_abort_uncommitted)
