"""Real Gunicorn servers and a small HTTP client for the "upload" section (bench/upload.py).

A server is ``gunicorn -c deploy/gunicorn.conf.py APP`` (the production config) on 127.0.0.1
and a free port, in a session of its own, with everything it may write (data, secrets, tmp,
home, its log) under one folder of the bench workspace. :func:`running` starts one, waits until
every worker answers, and always stops it: SIGTERM, a bounded wait, then SIGKILL of its whole
process group. Only loopback addresses are used. The launching is the tests' own
(tests/gunicorn_launch.py), so that what is measured is what is tested.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import ClassVar
from urllib.parse import urljoin, urlsplit

from bench.core import MIB
from tests import gunicorn_launch
from tests.gunicorn_launch import HOST, Gunicorn, ServerError

TIPBOX_APP = "app.source:create_app()"
DRAIN_APP = "bench.drain:app"
WERKZEUG_APP = "bench.drain:werkzeug_app()"
_PIECE = 64 * MIB
_random: list[bytes] = []


def random_block() -> bytes:
    """64 MiB from ``os.urandom``, made once: upload bodies repeat it."""
    if not _random:
        _random.append(os.urandom(_PIECE))
    return _random[0]


def pieces(size: int, piece: int = 4 * MIB) -> Iterator[memoryview]:
    """``size`` bytes of the random block, repeated, as views of at most ``piece`` bytes."""
    block = memoryview(random_block())
    offset = 0
    while offset < size:
        start = offset % len(block)
        length = min(piece, size - offset, len(block) - start)
        yield block[start : start + length]
        offset += length


def make_keys(keys_dir: Path) -> None:
    """A throwaway newsroom recipient (the identity is not kept: nothing is decrypted)."""
    from app.crypto import X25519Identity

    keys_dir.mkdir(parents=True, exist_ok=True)
    (keys_dir / "newsroom.pub").write_text(f"{X25519Identity.generate().recipient}\n")


@dataclass(kw_only=True)
class Server(Gunicorn):
    """One Gunicorn master (and its workers) and the folder it owns."""

    LOGS: ClassVar[tuple[str, ...]] = ("gunicorn.log",)  # stdout and stderr, interleaved
    STOP_TIMEOUT: ClassVar[float] = 20.0

    workers: int
    app: str


def start(
    root: Path, app: str, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Server:
    """Start ``app`` under the deploy config (plus ``args``) with its folders under ``root``;
    wait until every worker answers."""
    workers = int((env or {}).get("TIPBOX_WORKERS", "2"))
    return gunicorn_launch.start(
        Server,
        root,
        app,
        make_keys=make_keys,
        env=env,
        args=args,
        wait_for=workers,
        workers=workers,
        app=app,
    )


@contextlib.contextmanager
def running(
    root: Path, app: str, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[Server]:
    """A started server, stopped on the way out whatever happens."""
    server = start(root, app, env, args)
    try:
        yield server
    finally:
        server.stop()


# --- a visitor with cookies ---------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    path: str
    head_bytes: int  # status line and headers, as sent

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def wire_bytes(self) -> int:
        return self.head_bytes + len(self.body)


def _head_bytes(answer: http.client.HTTPResponse) -> int:
    line = len(f"HTTP/1.1 {answer.status} {answer.reason}\r\n")
    return line + sum(len(f"{k}: {v}\r\n") for k, v in answer.headers.items()) + 2


_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_CODENAME = re.compile(r'<p id="codename"[^>]*>([^<]+)</p>')


@dataclass
class Visitor:
    """One browser: its cookies; follows same-origin redirects."""

    server: Server
    cookies: dict[str, str] = field(default_factory=dict)

    def cookie_header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def take_cookies(self, headers: http.client.HTTPMessage) -> None:
        for value in headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(value).items():
                if morsel.value and morsel["max-age"] not in ("0",):
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        conn = self.server.connection(timeout=120)
        try:
            conn.request(
                method, path, body=body, headers={**self.cookie_header(), **(headers or {})}
            )
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        self.take_cookies(answer.headers)
        return Reply(answer.status, answer.headers, data, path, _head_bytes(answer))

    def follow(self, reply: Reply) -> Reply:
        for _ in range(5):
            if reply.status not in (301, 302, 303, 307, 308):
                return reply
            target = urlsplit(urljoin(reply.path, reply.headers["Location"]))
            if target.hostname not in (None, HOST):
                raise ServerError(f"redirect off the loopback: {reply.headers['Location']}")
            reply = self.request("GET", target.path + (f"?{target.query}" if target.query else ""))
        raise ServerError("too many redirects")

    def get(self, path: str) -> Reply:
        return self.follow(self.request("GET", path))

    def post_form(self, path: str, fields: dict[str, str]) -> Reply:
        body = Multipart()
        for name, value in fields.items():
            body.field(name, value)
        data = body.head + body.tail
        return self.request("POST", path, data, {"Content-Type": body.content_type})

    def new_source(self) -> tuple[str, str]:
        """Generate a codename, open the submit form: (codename, its CSRF token)."""
        generated = self.get("/en/generate")
        found = _CODENAME.search(generated.text)
        if generated.status != 200 or not found:
            raise ServerError(f"/en/generate answered {generated.status}")
        return " ".join(found.group(1).split()), self.csrf_token("/en/submit")

    def csrf_token(self, path: str) -> str:
        page = self.get(path)
        found = _TOKEN.search(page.text)
        if page.status != 200 or not found:
            raise ServerError(f"{path} answered {page.status} without a CSRF token")
        return found.group(1)


class Multipart:
    """A multipart/form-data body: fields, at most one file (its bytes are the caller's), fields.

    ``head`` is everything before the file's bytes, ``tail`` everything after them.
    """

    def __init__(self) -> None:
        self.boundary = f"----tipboxbench{secrets.token_hex(16)}"
        self._head: list[bytes] = []
        self._tail: list[bytes] = []
        self.file_size = 0
        self._has_file = False

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def field(self, name: str, value: str) -> None:
        part = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
        (self._tail if self._has_file else self._head).append(part)

    def file(self, name: str, filename: str, size: int) -> None:
        if self._has_file:
            raise ValueError("one file per body")
        self._head.append(
            (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        self._tail.append(b"\r\n")
        self.file_size, self._has_file = size, True

    @property
    def head(self) -> bytes:
        return b"".join(self._head)

    @property
    def tail(self) -> bytes:
        return b"".join(self._tail) + f"--{self.boundary}--\r\n".encode()

    def __len__(self) -> int:
        return len(self.head) + self.file_size + len(self.tail)


def submission(token: str, size: int, filename: str = "upload.bin") -> Multipart:
    """Tipbox's submit form as a browser sends it: csrf_token first, a file, the honeypot."""
    body = Multipart()
    body.field("csrf_token", token)
    body.field("message", "")
    body.file("files", filename, size)
    body.field("website", "")
    return body
