"""The Gunicorn worker (app/server/worker.py), against real servers over raw sockets: request heads
have a deadline, slow bodies do not; Gunicorn's own answers carry the security headers; a
malformed chunked body is a 400 that leaves nothing but redacted lines in the log."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app.server.headers import HEADERS
from bench.live import Visitor, submission
from tests.fixtures_journalist import start_journalist
from tests.live import LiveServer, start_server

HEAD_SECONDS = 2
THREADS = 4
# A marker in every malformed request: it must never reach a log or an answer.
MARK = "zq7canary"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveServer]]:
    """The source app (one worker, four threads, a 2 s head deadline) and the journalist app."""
    root = tmp_path_factory.mktemp("worker")
    env = {
        "TIPBOX_HEAD_SECONDS": str(HEAD_SECONDS),
        "TIPBOX_WORKERS": "1",
        "TIPBOX_THREADS": str(THREADS),
    }
    source = start_server(root / "source", root / "identity.txt", env=env)
    try:
        journalist = start_journalist(source, root / "journalist")
        try:
            yield {"source": source, "journalist": journalist}
        finally:
            journalist.stop()
    finally:
        source.stop()


def exchange(server: LiveServer, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send ``raw`` on a new connection and read until the server closes it."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), fields, body


def log_lines(server: LiveServer) -> list[str]:
    return [line for line in server.log().splitlines() if line.strip()]


GET = "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
MALFORMED_HEADS = {
    "bad request line": (f"GET{MARK}\r\n\r\n", 400),
    "bad method": (f"G@T /{MARK} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    "bad version": (f"GET /{MARK} HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 400),
    "bad header name": (GET.format(MARK) + f"B@d{MARK}: x\r\n\r\n", 400),
    "header without colon": (GET.format(MARK) + f"{MARK}\r\n\r\n", 400),
    "folded header": (GET.format(MARK) + f"X-A: 1\r\n  {MARK}\r\n\r\n", 400),
    "long request line": (GET.format(MARK * 300) + "\r\n", 414),
    "too many headers": (
        GET.format(MARK) + "".join(f"X-{i}: 1\r\n" for i in range(60)) + "\r\n",
        431,
    ),
    "long header": (GET.format("") + f"X-Big: {MARK * 1000}\r\n\r\n", 431),
    "bad expect": (GET.format(MARK) + f"Expect: {MARK}\r\n\r\n", 417),
    "unknown coding": (
        f"POST /{MARK} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: {MARK}\r\n\r\n",
        501,
    ),
}


@pytest.mark.parametrize("app", ["source", "journalist"])
@pytest.mark.parametrize("name", sorted(MALFORMED_HEADS))
def test_gunicorns_own_answers_carry_the_headers(servers: dict[str, LiveServer], app: str, name):
    raw, status = MALFORMED_HEADS[name]
    answer = exchange(servers[app], raw.encode())
    got, fields, body = parse(answer)
    assert got == status, answer[:200]
    for header, value in HEADERS.items():
        assert fields.get(header) == value, (header, answer[:300])
    assert MARK.encode() not in answer  # the answer never quotes the request
    assert MARK not in servers[app].log()


@pytest.mark.parametrize("app", ["source", "journalist"])
def test_the_master_forks_its_workers_from_a_single_thread(
    servers: dict[str, LiveServer], app: str
) -> None:
    """No thread runs beside Gunicorn's master (it never builds the app: a child does), so no
    lock is held by a thread that the workers it forks, now or after a crash, would lack."""
    pid = servers[app].process.pid
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(r"^Threads:\s+1$", status, re.MULTILINE), status


BAD_CHUNKS = {
    "letters for a size": b"ZZ\r\nhello\r\n0\r\n\r\n",
    "negative size": b"-1\r\nhello\r\n0\r\n\r\n",
    "missing CRLF after data": b"5\r\nhelloXX0\r\n\r\n",
    "words for a size": MARK.encode() + b"\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize(("app", "path"), [("source", "/en/login"), ("journalist", "/login")])
@pytest.mark.parametrize("name", sorted(BAD_CHUNKS))
def test_a_malformed_chunked_body_is_a_400_and_no_log_line(
    servers: dict[str, LiveServer], app: str, path: str, name: str
) -> None:
    server = servers[app]
    before = len(log_lines(server))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nX-Mark: {MARK}\r\n\r\n"
    )
    answer = exchange(server, head.encode() + BAD_CHUNKS[name])
    status, fields, _ = parse(answer)
    assert status == 400, answer[:300]
    for header, value in HEADERS.items():
        assert fields.get(header) == value, header
    time.sleep(0.2)  # anything the worker logs is written by now
    new = log_lines(server)[before:]
    assert MARK not in "\n".join(new)
    # No line from Flask's own logger (its "[2026-…] ERROR in app: Exception on …" format).
    assert not [line for line in new if re.match(r"\[\d{4}-", line) or "Exception on" in line]


def test_a_half_sent_head_is_closed_after_the_deadline(servers: dict[str, LiveServer]) -> None:
    server = servers["source"]
    with socket.create_connection((server.host, server.port), timeout=5 * HEAD_SECONDS) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        assert read_all(sock) == b""  # closed by the server, not by our timeout


def test_half_sent_heads_do_not_take_the_threads(servers: dict[str, LiveServer]) -> None:
    """Five times as many half-sent heads as the worker has threads, and a page still loads."""
    server = servers["source"]
    with contextlib.ExitStack() as stack:
        for _ in range(5 * THREADS):
            sock = stack.enter_context(socket.create_connection((server.host, server.port)))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = exchange(
            server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=HEAD_SECONDS
        )
        assert parse(answer)[0] == 200


def test_a_slow_but_progressing_body_is_not_cut(servers: dict[str, LiveServer]) -> None:
    """A submission whose body takes twice the head deadline, a few KB at a time, is stored."""
    server = servers["source"]
    visitor = Visitor(server)  # type: ignore[arg-type]
    _, token = visitor.new_source()
    size, pieces = 40_000, 20
    body = submission(token, size)
    payload = body.head + bytes(size) + body.tail
    step = -(-len(payload) // pieces)
    head = (
        f"POST /en/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {body.content_type}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in visitor.cookie_header().items())
        + "\r\n"
    )
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head.encode())
        for offset in range(0, len(payload), step):
            sock.sendall(payload[offset : offset + step])
            time.sleep(2 * HEAD_SECONDS / pieces)
        status, _, page = parse(read_all(sock))
    assert status == 303, page[:300]  # stored: on to the confirmation
    assert len(list((Path(server.data_dir) / "items").iterdir())) == 1


def flask_that_fails() -> Flask:
    """A Flask app whose only view raises with the request's path in the message."""
    app = Flask(__name__)

    @app.get("/<path:path>")
    def fail(path: str) -> str:
        raise RuntimeError(f"failed on {path}")

    return app


def test_an_app_error_is_logged_without_the_request(tmp_path: Path) -> None:
    """Flask's own logger (timestamp, path, exception text) writes through the redacting log."""
    server = start_server(tmp_path / "s", tmp_path / "id.txt", app=f"{__name__}:flask_that_fails()")
    try:
        answer = exchange(server, f"GET /{MARK} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert parse(answer)[0] == 500
        time.sleep(0.2)
        log = server.log()
    finally:
        server.stop()
    assert "Exception in the app (request details withheld): RuntimeError" in log
    assert MARK not in log
    assert not re.search(r"^\[\d{4}-", log, re.MULTILINE)  # no line of Flask's format
