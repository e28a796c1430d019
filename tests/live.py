"""Real processes for tests: Gunicorn with deploy/gunicorn.conf.py, and headless Chromium.

Fixtures (pull them into a conftest with ``from tests.live import browser, live_server``):

- ``live_server``: a factory. ``live_server()`` starts the real app (``app.source:create_app()``) in
  a real Gunicorn process on 127.0.0.1 and a free port, with its own data, keys, secrets, tmp and
  home folders under the test's tmp dir and a throwaway newsroom identity *outside* them; it
  waits until the server answers and stops it (and every process it started) at teardown.
  The launching itself is tests/gunicorn_launch.py (shared with the benchmarks).
- ``browser``: Debian's Chromium driven by Playwright, JavaScript off, every request recorded,
  anything not addressed to 127.0.0.1 aborted; ``browser.shot(name)`` saves a screenshot.

Only loopback addresses are used anywhere.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from app.db import migrated
from app.server.counters import MEMFD_NAME
from tests.gunicorn_launch import Gunicorn, start

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Request, Route

    from app.crypto import X25519Recipient
    from app.server.store import Store

REAL_APP = "app.source:create_app()"
# This checkout (with its .venv): the workers' own code, wherever the clone lives.
CHECKOUT = f"{Path(__file__).resolve().parent.parent}/"
STANDIN_APP = "tests.live:standin_app"

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


@dataclass(kw_only=True)
class LiveServer(Gunicorn):
    """One Gunicorn process and the folders it owns (everything it may write is under root),
    and the newsroom identity outside them."""

    identity_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        return self.url

    @property
    def stdout_path(self) -> Path:
        return self.root / "gunicorn.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.root / "gunicorn.stderr"

    def recipients(self) -> list[X25519Recipient]:
        from app.server.newsroom import load_recipients

        return load_recipients(self.keys_dir)

    def store(self) -> Store:
        """The server's store, opened from the test (SQLite in WAL mode: safe while it runs)."""
        from app.server.store import Store

        return Store(migrated(self.data_dir), self.recipients())


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
    return start(
        LiveServer,
        server_root,
        app,
        make_keys=functools.partial(make_newsroom_keys, identity_path),
        env=env,
        unix_socket=unix_socket,
        identity_path=identity_path,
    )


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
        system tmp folder (but this checkout's own files), and any deleted file but Gunicorn's
        worker heartbeat and the rate limit counters (a memory file, app/server/counters.py)."""
        root, tmp = f"{self.server.root}/", f"{self.server.tmp_dir}/"
        counters = f"/memfd:{MEMFD_NAME} (deleted)"
        return sorted(
            s
            for s in self.seen
            if s.startswith(tmp)
            # The checkout itself may live under /tmp (a CI clone): its venv's modules are code.
            or (s.startswith(("/tmp/", "/var/tmp/")) and not s.startswith((root, CHECKOUT)))  # noqa: S108
            or (
                s.endswith("(deleted)")
                and not s.startswith("/dev/shm/wgunicorn-")
                and s != counters
            )
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
