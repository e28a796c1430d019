"""Baseline apps for the "upload" section (bench/upload.py), served by the same Gunicorn config.

- ``bench.drain:app``: a bare WSGI app that only reads ``wsgi.input`` to the end (1 MiB per
  read, like Tipbox's parser) and answers with the byte count: the ceiling of what Gunicorn
  and the loopback can carry into a worker.
- ``bench.drain:werkzeug_app()``: a tiny Flask app that reads ``request.files`` with Werkzeug's
  own multipart parser (default request class and settings; its 64 KiB reads), each file going
  to a sink that discards it, so no disk is involved: what the parsing costs before any
  encryption.

Neither touches the disk; both answer every path.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

READ_SIZE = 1 << 20


def app(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], Any]
) -> Iterable[bytes]:
    """Drain the request body; answer ``<bytes read>\\n``."""
    stream, total = environ["wsgi.input"], 0
    while chunk := stream.read(READ_SIZE):
        total += len(chunk)
    body = f"{total}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Discard:
    """A file container that forgets what it is given (Werkzeug writes, then seeks to 0)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        """Nothing to release."""


def werkzeug_app() -> Flask:
    """Flask with its default request class, but files go to :class:`Discard`, not a temp file."""
    from flask import Flask, Request, request

    class DiscardingRequest(Request):
        def _get_file_stream(
            self,
            total_content_length: int | None,
            content_type: str | None,
            filename: str | None = None,
            content_length: int | None = None,
        ) -> t.IO[bytes]:
            return t.cast(t.IO[bytes], Discard())

    flask_app = Flask(__name__)
    flask_app.request_class = DiscardingRequest

    @flask_app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @flask_app.route("/<path:path>", methods=["GET", "POST"])
    def files(path: str) -> str:
        sizes = [t.cast(Discard, f.stream).size for f in request.files.values()]
        return f"{len(request.form)} fields, {len(sizes)} files, {sum(sizes)} bytes\n"

    return flask_app
