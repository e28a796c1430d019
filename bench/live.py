"""Real Gunicorn servers and a small HTTP client for the "upload" section (bench/upload.py).

A server is ``gunicorn -c deploy/gunicorn.conf.py APP`` (the production config) on 127.0.0.1
and a free port, in a session of its own, with everything it may write (data, secrets, tmp,
home, its log) under one folder of the bench workspace. :func:`running` starts one, waits until
every worker answers, and always stops it: SIGTERM, a bounded wait, then SIGKILL of its whole
process group. Only loopback addresses are used. Adapted from tests/live.py (not imported:
bench code does not depend on the tests).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from bench.core import MIB, REPO

HOST = "127.0.0.1"
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
TIPBOX_APP = "app:create_app()"
DRAIN_APP = "bench.drain:app"
WERKZEUG_APP = "bench.drain:werkzeug_app()"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
PORT_TRIES = 5
# The codename KDF is not what this section measures: libsodium's minimum cost, as in the tests.
CHEAP_KDF = {"TIPBOX_KDF_OPSLIMIT": "1", "TIPBOX_KDF_MEMLIMIT": str(8 * MIB)}
_SCRUBBED_PREFIXES = ("TIPBOX_", "GUNICORN", "FORWARDED_ALLOW_IPS", "WEB_CONCURRENCY")
_SCRUBBED = {"PORT", "XDG_RUNTIME_DIR", "PYTHONSTARTUP"}
_PIECE = 64 * MIB
_random: list[bytes] = []


class ServerError(RuntimeError):
    """A server did not start, or answered something unexpected."""


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One Gunicorn master (and its workers) and the folder it owns."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    workers: int
    app: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def log_path(self) -> Path:
        return self.root / "gunicorn.log"

    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def worker_pids(self) -> list[int]:
        """The workers (the master's children)."""
        pid = self.process.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def connection(self, timeout: float = 60.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def stop(self) -> None:
        """SIGTERM (graceful), a bounded wait, then SIGKILL the process group; reap."""
        process = self.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)
        # The group id is the master's pid (own session): reaches workers that outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)


def _env(root: Path, port: int, extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED
    }
    env.update(
        {
            "TIPBOX_ENV": "development",
            **CHEAP_KDF,
            "TIPBOX_DATA_DIR": str(root / "data"),
            "TIPBOX_KEYS_DIR": str(root / "keys"),
            "TIPBOX_SECRETS_DIR": str(root / "secrets"),
            "TIPBOX_BIND": f"{HOST}:{port}",
            "TMPDIR": str(root / "tmp"),
            "HOME": str(root / "home"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def _answers(port: int, timeout: float) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return True


def _bind_failed(log: str) -> bool:
    return "Connection in use" in log or os.strerror(errno.EADDRINUSE) in log


def _booted(server: Server) -> bool:
    """Every worker has loaded the app (Gunicorn logs nothing then: count distinct answers)."""
    return len(server.worker_pids()) >= server.workers


def _wait(server: Server) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None or _bind_failed(server.log()):
            return False
        # Only once our master has bound the port: another process may have taken it since
        # free_port() saw it free, and would answer in its place.
        bound = f"Listening at: http://{HOST}:{server.port} " in server.log()
        if bound and _booted(server) and _answers(server.port, 1.0):
            # The other workers fork at the same time; give them their app import too.
            for _ in range(4 * server.workers):
                _answers(server.port, 5.0)
            time.sleep(0.5)
            return True
        time.sleep(0.1)
    raise ServerError(f"gunicorn did not answer within {START_TIMEOUT:.0f} s:\n{server.log()}")


def start(
    root: Path, app: str, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Server:
    """Start ``app`` under the deploy config (plus ``args``) with its folders under ``root``."""
    for folder in ("data", "secrets", "tmp", "home"):
        (root / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (root / "keys" / "newsroom.pub").exists():
        make_keys(root / "keys")
    extra = dict(env or {})
    workers = int(extra.get("TIPBOX_WORKERS", "2"))
    last = ""
    for _ in range(PORT_TRIES):
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), *args, app]
        with open(root / "gunicorn.log", "wb") as log:  # noqa: PTH123 - a raw handle for the child
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=_env(root, port, extra),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(root, port, process, workers, app)
        try:
            ready = _wait(server)
        except BaseException:
            server.stop()
            raise
        if ready:
            return server
        server.stop()
        last = server.log()
        if not _bind_failed(last):
            break
    raise ServerError(f"gunicorn did not start; its output:\n{last}")


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
