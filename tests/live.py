"""Real processes for tests: Gunicorn with deploy/gunicorn.conf.py, and headless Chromium.

Fixtures (pull them into a conftest with ``from tests.live import browser, live_server``):

- ``live_server``: a factory. ``live_server()`` starts the real app (``app:create_app()``) in a
  real Gunicorn process on 127.0.0.1 and a free port, with its own data, keys, secrets, tmp and
  home folders under the test's tmp dir and a throwaway newsroom identity *outside* them; it
  waits until the server answers and stops it (and every process it started) at teardown.
- ``browser``: Debian's Chromium driven by Playwright, JavaScript off, every request recorded,
  anything not addressed to 127.0.0.1 aborted; ``browser.shot(name)`` saves a screenshot.

Only loopback addresses are used anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from app.admin import UnixHTTPConnection

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Request, Route

    from app.crypto import X25519Recipient
    from app.store import Store

REPO = Path(__file__).resolve().parent.parent
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
REAL_APP = "app:create_app()"
STANDIN_APP = "tests.live:standin_app"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PORT_TRIES = 5
# Cheap codename KDF for tests (libsodium's minimum ops, 8 MiB).
TEST_ENV = {
    "TIPBOX_ENV": "development",
    "TIPBOX_KDF_OPSLIMIT": "1",
    "TIPBOX_KDF_MEMLIMIT": "8388608",
}
# Variables of ours or Gunicorn's that must not leak from the developer's shell into a server.
_SCRUBBED_PREFIXES = ("TIPBOX_", "GUNICORN", "FORWARDED_ALLOW_IPS", "WEB_CONCURRENCY")
_SCRUBBED = {"PORT", "XDG_RUNTIME_DIR", "PYTHONSTARTUP"}

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (Gunicorn cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerError(RuntimeError):
    """The server did not start; the message ends with its log."""


@dataclass
class LiveServer:
    """One Gunicorn process and the folders it owns (everything it may write is under root)."""

    root: Path
    identity_path: Path
    port: int
    process: subprocess.Popen[bytes]
    socket_path: Path | None = None
    host: str = HOST
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        return self.url

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def home_dir(self) -> Path:
        return self.root / "home"

    @property
    def stdout_path(self) -> Path:
        return self.root / "gunicorn.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.root / "gunicorn.stderr"

    def connection(
        self, source_address: tuple[str, int] | None = None, timeout: float = 60.0
    ) -> http.client.HTTPConnection:
        """A new HTTP connection to the server (TCP from ``source_address``, or its unix socket)."""
        if self.socket_path is not None:
            return UnixHTTPConnection(self.socket_path, timeout=timeout)
        return http.client.HTTPConnection(
            self.host, self.port, timeout=timeout, source_address=source_address
        )

    def log(self) -> str:
        """What the server printed so far (stdout then stderr), for failure messages."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(FileNotFoundError):
                parts.append(path.read_bytes().decode("utf-8", "replace"))
        return "".join(parts)

    def recipients(self) -> list[X25519Recipient]:
        from app.keys import load_recipients

        return load_recipients(self.keys_dir)

    def store(self) -> Store:
        """The server's store, opened from the test (SQLite in WAL mode: safe while it runs)."""
        from app.store import Store

        return Store(self.data_dir, self.recipients())

    def worker_pids(self) -> list[int]:
        """The Gunicorn workers (the master's children)."""
        pid = self.process.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM (Gunicorn's graceful stop), wait, then SIGKILL the whole process group."""
        if self.stopped:
            return
        self.stopped = True
        stop_process(self.process, graceful)


def stop_process(process: subprocess.Popen[bytes], graceful: bool = True) -> None:
    """SIGTERM, wait (bounded), then SIGKILL its whole process group, then reap it.

    The process was started in a session of its own, so its group id is its pid. Until we reap
    it that pid cannot be reused, so the group kill reaches only what it started (workers that
    outlived their master, say). ``graceful=False`` skips the SIGTERM (a Gunicorn still
    retrying its bind only acts on it once it gives up, 5 s later).
    """
    if process.returncode is None:
        if graceful:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and not _exited(process.pid):
                time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_TIMEOUT)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def make_newsroom_keys(identity_path: Path, keys_dir: Path) -> None:
    """A throwaway newsroom identity (no passphrase) and ``keys_dir/newsroom.pub``."""
    from app import cli

    keys_dir.mkdir(parents=True, exist_ok=True)
    recipient = keys_dir / "newsroom.pub"
    with contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(
            [
                "keygen",
                "--no-passphrase",
                "--identity",
                str(identity_path),
                "--recipient",
                str(recipient),
            ]
        )
    if status != 0:
        raise RuntimeError("tipbox keygen failed")


def _server_env(server_root: Path, port: int, extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED
    }
    env.update(
        {
            **TEST_ENV,
            "TIPBOX_DATA_DIR": str(server_root / "data"),
            "TIPBOX_KEYS_DIR": str(server_root / "keys"),
            "TIPBOX_SECRETS_DIR": str(server_root / "secrets"),
            "TIPBOX_BIND": f"{HOST}:{port}",
            "TMPDIR": str(server_root / "tmp"),
            "HOME": str(server_root / "home"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def answers(server: LiveServer, timeout: float = 2.0) -> bool:
    """Whether the server answers ``GET /`` (with any status)."""
    conn = server.connection(timeout=timeout)
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


def start_server(
    server_root: Path,
    identity_path: Path,
    *,
    app: str = REAL_APP,
    env: Mapping[str, str] | None = None,
    unix_socket: bool = False,
) -> LiveServer:
    """Start Gunicorn with the deploy config on a free loopback port (or on a unix socket under
    ``server_root``); wait until it answers."""
    for folder in ("data", "secrets", "tmp", "home"):
        (server_root / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (server_root / "keys" / "newsroom.pub").exists():
        make_newsroom_keys(identity_path, server_root / "keys")
    last_log = ""
    for _ in range(PORT_TRIES):
        socket_path = server_root / "s.sock" if unix_socket else None
        port = 0 if socket_path else free_port()
        server_env = _server_env(server_root, port, env or {})
        if socket_path:
            server_env["TIPBOX_BIND"] = f"unix:{socket_path}"
        command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), app]
        with (  # fresh logs per attempt: an earlier "Connection in use" must not count
            open(server_root / "gunicorn.stdout", "wb") as out,  # noqa: PTH123
            open(server_root / "gunicorn.stderr", "wb") as err,  # noqa: PTH123
        ):
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=server_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        server = LiveServer(server_root, identity_path, port, process, socket_path)
        try:
            ready = _wait_until_ready(server)
        except BaseException:
            server.stop()
            raise
        if ready:
            return server
        server.stop(graceful=False)
        last_log = server.log()
        if not _bind_failed(last_log):
            break
    raise ServerError(f"gunicorn did not start; its output:\n{last_log}")


def _wait_until_ready(server: LiveServer) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        if _bind_failed(server.log()):
            return False  # Gunicorn would retry for 5 s: pick another port now
        # Short: whoever holds a taken port may accept and never answer.
        if answers(server, timeout=1.0):
            return True
        time.sleep(0.1)
    raise ServerError(f"gunicorn did not answer within {START_TIMEOUT:.0f} s:\n{server.log()}")


StartServer = Callable[..., LiveServer]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[StartServer]:
    """Factory: ``live_server(app=..., env={...}, unix_socket=False)`` starts a server (the real
    app by default); every server it started is stopped at teardown."""
    started: list[LiveServer] = []

    def start(
        *, app: str = REAL_APP, env: Mapping[str, str] | None = None, unix_socket: bool = False
    ) -> LiveServer:
        n = len(started)
        server = start_server(
            tmp_path / f"server{n}",
            tmp_path / f"server{n}-identity.txt",
            app=app,
            env=env,
            unix_socket=unix_socket,
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


# --- Watching what the workers open -----------------------------------------------------


class OpenFiles(threading.Thread):
    """Polls the workers' open file descriptors: catches temp files unlinked at once."""

    def __init__(self, server: LiveServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.seen: set[str] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.05):
            for pid in self.server.worker_pids():
                fd_dir = Path(f"/proc/{pid}/fd")
                try:
                    fds = list(fd_dir.iterdir())
                except OSError:
                    continue
                for fd in fds:
                    try:
                        self.seen.add(os.readlink(fd))
                    except OSError:
                        continue

    def __enter__(self) -> OpenFiles:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.halt.set()
        self.join(timeout=10)

    def suspicious(self) -> list[str]:
        """Files that look like spooled request data: anything in the server's TMPDIR or in a
        system tmp folder, and any deleted file but Gunicorn's worker heartbeat."""
        root, tmp = f"{self.server.root}/", f"{self.server.tmp_dir}/"
        return sorted(
            s
            for s in self.seen
            if s.startswith(tmp)
            or (s.startswith(("/tmp/", "/var/tmp/")) and not s.startswith(root))  # noqa: S108
            or (s.endswith("(deleted)") and not s.startswith("/dev/shm/wgunicorn-"))
        )


# --- Browser ------------------------------------------------------------------------------


@dataclass
class BrowserSession:
    """A fresh Chromium context (JavaScript off) and one page; requests are recorded."""

    context: BrowserContext
    page: Page
    shots_dir: Path
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    _count: int = 0

    def shot(self, name: str) -> Path:
        """Save a full-page screenshot as ``NN-name.png`` under the test's tmp dir."""
        self._count += 1
        path = self.shots_dir / f"{self._count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def foreign_requests(self, origin: str) -> list[str]:
        """Every recorded request not addressed to ``origin`` (plus anything blocked)."""
        return [u for u in self.requests if _origin(u) != origin] + self.blocked


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserSession]:
    """Headless Debian Chromium (never a downloaded build), JavaScript disabled."""
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = chromium.new_context(
                java_script_enabled=False,
                locale="en-US",
                service_workers="block",
                accept_downloads=False,
                viewport={"width": 1024, "height": 768},
            )
            try:
                session = BrowserSession(context, context.new_page(), shots)
                context.on("request", lambda request: _record(session, request))
                context.route("**/*", lambda route: _guard(session, route))
                yield session
            finally:
                context.close()
        finally:
            chromium.close()


def _record(session: BrowserSession, request: Request) -> None:
    session.requests.append(request.url)


def _guard(session: BrowserSession, route: Route) -> None:
    url = route.request.url
    if url.startswith(("http://", "https://", "ws://", "wss://")) and not _is_loopback(url):
        session.blocked.append(url)
        route.abort("blockedbyclient")
    else:
        route.continue_()


# --- A stand-in WSGI app ------------------------------------------------------------------

_ENVIRON_KEYS = ("wsgi.url_scheme", "SCRIPT_NAME", "PATH_INFO", "HTTP_X_FORWARDED_FOR")


def standin_app(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], Any]
) -> Iterable[bytes]:
    """Tiny WSGI app for testing the Gunicorn setup without Tipbox: echoes a few environ keys
    (``/env``), counts an uploaded body (``/upload``), or raises (``/boom``)."""
    path = environ.get("PATH_INFO", "")
    if path == "/boom":
        raise RuntimeError(f"boom with {environ.get('HTTP_USER_AGENT')}")
    if path == "/upload":
        stream, total = environ["wsgi.input"], 0
        while chunk := stream.read(1 << 16):
            total += len(chunk)
        body = f"{total}\n".encode()
    else:
        body = "".join(f"{k}={environ.get(k, '')}\n" for k in _ENVIRON_KEYS).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
