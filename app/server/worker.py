"""Gunicorn's gthread worker with a deadline on request heads, and answers of its own that carry
the security headers (``worker_class`` in deploy/gunicorn.conf.py).

Gunicorn 27's gthread worker hands a new connection to a thread as soon as a byte arrives, and
the thread then reads the head with blocking reads and no deadline: a client that sends part of
its headers and stops holds a thread for ever. 288 such connections (3 workers of 96 threads)
made ``GET /`` time out, and over Tor they cost an attacker a few circuits.
:class:`HeadDeadlineWorker` reads the head itself instead, in its main loop, without blocking:
each connection stays in the poller until its head (up to the blank line) is in, and only then
takes a thread, with the bytes read so far given back to Gunicorn's parser. A head not complete
within ``TIPBOX_HEAD_SECONDS`` (default 10) is dropped. Bodies are not touched: a slow upload
that keeps sending is never cut (its reads have the per-read timeout of ``pre_request``).

Connections still sending their head do not count against ``worker_connections`` (threads do);
at most :data:`MAX_HEADS` of them per worker, holding at most :data:`HEAD_MEMORY` bytes in all,
the oldest dropped first past either, so neither the limit on open files (deploy/*.service set
``LimitNOFILE``) nor memory is reached by heads that never end.

Why not another server: Gunicorn is the product's server. Waitress, which has such deadlines,
buffers every request body over 512 KiB to a temporary file before the app sees a byte: an
upload's plaintext on disk, which Tipbox never allows (app/source/upload.py).

Also here, so that every response carries the security headers (.headers), Gunicorn's own
included: its answers to a malformed request (400, 414, 431, 417, ...) are written by
:func:`write_error`, with the header table and without quoting the request. And a malformed
request body (a bad chunk size, a missing CRLF, a client gone mid-body) reaches the app as
Werkzeug's ``BadRequest`` (:class:`_Body`), so it is a 400 page, not a 500 and a logged
traceback; whatever the app still logs goes through the redacting error log.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http.errors import NoMoreData, ParseException
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.exceptions import BadRequest

from app.server.headers import HEADERS

HEAD_SECONDS_ENV = "TIPBOX_HEAD_SECONDS"
DEFAULT_HEAD_SECONDS = 10.0
MAX_HEADS = 1024
HEAD_MEMORY = 32 * 1024 * 1024  # a real head is a few KiB; Gunicorn's largest is 410 KiB
END_OF_HEAD = b"\r\n\r\n"
_RECV = 16 * 1024
_FD_RESERVE = 64  # files a worker needs besides its connections (store, logs, database)


def head_seconds() -> float:
    """The deadline for a request head, from the environment."""
    raw = os.environ.get(HEAD_SECONDS_ENV, "").strip()
    value = float(raw) if raw else DEFAULT_HEAD_SECONDS
    if not 0 < value <= 3600:
        raise ValueError(f"{HEAD_SECONDS_ENV} must be between 0 and 3600 seconds, not {raw!r}")
    return value


class _Head:
    """A connection whose request head is still arriving."""

    def __init__(self, conn: TConn, deadline: float) -> None:
        self.conn, self.deadline = conn, deadline
        self.data = bytearray()
        self.open = True


class HeadDeadlineWorker(ThreadWorker):  # type: ignore[misc]
    """A gthread worker that reads request heads in its poller, with a deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_seconds = head_seconds()
        self.heads: deque[_Head] = deque()
        self.max_heads = MAX_HEADS
        self.buffered = 0  # bytes held by all heads
        self.waiting = 0  # heads still open (the deque also holds finished ones, skipped)
        # The largest head Gunicorn accepts; past it, its parser answers 414 or 431.
        self.max_head = (
            self.cfg.limit_request_line
            + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2)
            + len(END_OF_HEAD)
        )

    def init_process(self) -> None:
        self.max_heads = _room_for_heads(self.cfg.threads)
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        loaded: Any = getattr(self, "wsgi")  # noqa: B009 - set by Gunicorn, untyped
        self.wsgi = _with_private_errors(loaded, self.log)

    def accept(self, listener: socket.socket) -> None:
        """Take a new connection into the poller until its head is in."""
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self._drop_oldest()  # room for the next one
            elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        if self.waiting >= self.max_heads:
            self._drop_oldest()
        self._watch(TConn(self.cfg, client, address, listener.getsockname()))

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection's next request: its head gets the same deadline."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.nr_conns -= 1
        self._watch(conn)

    def _watch(self, conn: TConn) -> None:
        conn.sock.setblocking(False)
        head = _Head(conn, time.monotonic() + self.head_seconds)
        self.heads.append(head)
        self.waiting += 1
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_data, head))

    def _on_head_data(self, head: _Head, _sock: socket.socket) -> None:
        try:
            data = head.conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(head)
            return
        head.data += data
        self.buffered += len(data)
        start = max(0, len(head.data) - len(data) - len(END_OF_HEAD) + 1)
        if head.data.find(END_OF_HEAD, start) >= 0 or len(head.data) > self.max_head:
            self._hand_over(head)
        while self.buffered > HEAD_MEMORY and self.heads:
            self._drop_oldest()

    def _hand_over(self, head: _Head) -> None:
        """Give the connection, and the bytes read so far, to a thread and Gunicorn's parser."""
        data = bytes(head.data)
        self._forget(head)
        conn = head.conn
        conn.init()  # makes the parser (plain HTTP/1.1: no I/O) and sets the socket blocking
        conn.parser.unreader.unread(data)
        conn.data_ready = True
        self.nr_conns += 1
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """Also drop the connections whose head missed its deadline (once a second)."""
        super().murder_pending()
        now = time.monotonic()
        while self.heads and (not self.heads[0].open or self.heads[0].deadline <= now):
            head = self.heads.popleft()
            if head.open:
                self._close(head)

    def _drop_oldest(self) -> None:
        while self.heads:
            head = self.heads.popleft()
            if head.open:
                self._close(head)
                return

    def _forget(self, head: _Head) -> None:
        if not head.open:
            return
        head.open = False  # left in the deque, skipped by murder_pending
        self.buffered -= len(head.data)
        self.waiting -= 1
        head.data = bytearray()
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(head.conn.sock)

    def _close(self, head: _Head) -> None:
        self._forget(head)
        head.conn.close()


def _room_for_heads(threads: int) -> int:
    """How many heads a worker may wait for: :data:`MAX_HEADS`, or fewer if open files are
    scarce (the soft limit is raised to the hard one where the sandbox allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    except (OSError, ValueError):
        pass  # systemd's seccomp filter forbids it: LimitNOFILE in the unit sets it instead
    if soft == resource.RLIM_INFINITY:
        return MAX_HEADS
    return max(16, min(MAX_HEADS, soft - 2 * threads - _FD_RESERVE))


# --- Gunicorn's own answers, and request bodies that are not HTTP ---------------------------


def write_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Gunicorn's error answer with the security headers, and without ``mesg`` (which quotes
    the request)."""
    body = f"<!doctype html>\n<title>{status_int} {reason}</title>\n<h1>{reason}</h1>\n".encode()
    lines = [f"HTTP/1.1 {status_int} {reason}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in HEADERS.items()]
    lines += ["Content-Type: text/html; charset=utf-8", f"Content-Length: {len(body)}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


# Gunicorn's workers call util.write_error for every answer of their own.
util.write_error = write_error


class _Body:
    """``wsgi.input`` whose malformed framing is Werkzeug's ``BadRequest``: a 400 page."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def _call(self, method: Callable[..., bytes], *args: Any) -> bytes:
        try:
            return method(*args)
        except (ParseException, NoMoreData) as exc:
            raise BadRequest() from exc

    def read(self, size: int | None = None) -> bytes:
        return self._call(self._body.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._call(self._body.readline, size)

    def readlines(self, size: int | None = None) -> list[bytes]:
        try:
            lines: list[bytes] = self._body.readlines(size)
        except (ParseException, NoMoreData) as exc:
            raise BadRequest() from exc
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def _with_private_errors(wsgi: Any, log: Any) -> Callable[..., Iterable[bytes]]:
    """The app, its body stream wrapped in :class:`_Body`, and its own logger (Flask's, which
    prints a timestamp and the exception's text) replaced by Gunicorn's redacting error log."""
    logger = getattr(wsgi, "logger", None)
    if logger is not None:
        logger.handlers[:] = list(log.error_log.handlers)
        logger.propagate = False

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"] = _Body(environ["wsgi.input"])
        result: Iterable[bytes] = wsgi(environ, start_response)
        return result

    return app
