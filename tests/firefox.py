"""Debian's Firefox ESR for tests, headless and at Tor Browser's Safest level, driven through
Marionette (the remote protocol built into Firefox) with the ``marionette_driver`` client.

Why Marionette: Playwright's Firefox is a patched build of its own and Selenium needs
geckodriver; neither comes from Debian. ``firefox-esr --marionette`` needs nothing else.

Each browser gets a fresh profile under the test's tmp dir whose ``user.js``
(tests/firefox_prefs.py) holds the Safest preferences (no JavaScript, SVG, MathML, downloadable
fonts or WebGL) and turns off everything that would reach the network on its own (add-on
updates, telemetry, captive-portal and connectivity probes, safe browsing, remote settings,
first-run pages, DNS prefetch and speculative connections). As a tripwire, every proxy setting
points at a loopback sink that records whatever reaches it: Firefox never proxies loopback, so
the test server is reached directly and anything addressed elsewhere lands in the sink
(``Firefox.foreign_requests``).

Fixture (pulled into tests/conftest.py): ``firefox``, a factory; ``firefox(viewport=(w, h))``
starts one browser whose page viewport is exactly ``w`` x ``h`` CSS pixels; every browser it
started is stopped at teardown (the whole process group, killed if it does not quit in time).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.firefox_prefs import QUIET_PREFS, SAFEST_PREFS, USER_CHROME, sink_prefs, user_js
from tests.gunicorn_launch import HOST, stop_process

# marionette_driver's own dependencies (mozinfo, mozrunner) use deprecated modules and calls
# as they are imported (distro.linux_distribution, telnetlib); nothing of ours to fix.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from marionette_driver.by import By
    from marionette_driver.errors import MarionetteException
    from marionette_driver.marionette import Marionette, WebElement

FIREFOX = "/usr/bin/firefox-esr"
STRACE = "/usr/bin/strace"
# What Firefox's processes address, with strace: every socket call that names an address.
TRACE = ["-f", "--seccomp-bpf", "-qq", "-e", "trace=connect,sendto,sendmsg", "-e", "signal=none"]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PAGE_TIMEOUT = 60.0


class Sink(threading.Thread):
    """A loopback listener standing in for every proxy: it records the first bytes of each
    connection (a request line, a CONNECT, a SOCKS greeting) and closes it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.seen: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    head = conn.recv(512)
                except OSError:
                    head = b""
                self.seen.append(head.split(b"\r\n", 1)[0].decode("latin-1") or "(silent)")

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.listener.close()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Firefox:
    """One headless Firefox (its own profile, process group and sink) and its Marionette
    session; what its pages loaded is recorded at each screenshot."""

    root: Path
    process: subprocess.Popen[bytes]
    marionette: Marionette
    sink: Sink
    requests: list[str] = field(default_factory=list)
    _count: int = 0
    _stopped: bool = False

    @property
    def shots_dir(self) -> Path:
        return self.root / "screenshots"

    @property
    def url(self) -> str:
        return str(self.marionette.get_url())

    def go(self, url: str) -> None:
        """Load ``url`` and wait until it has loaded."""
        self.marionette.navigate(url)

    def find(self, css: str) -> WebElement:
        return self.marionette.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return list(self.marionette.find_elements(By.CSS_SELECTOR, css))

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait (bounded) until ``check()`` holds; ``what`` names it in the failure."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f} s for {what}; at {self.url}")
            time.sleep(0.05)

    def text(self, css: str) -> str:
        """The element's rendered text, whitespace collapsed."""
        return " ".join(self.find(css).text.split())

    def click(self, css: str) -> None:
        """Click like a user (Marionette waits for the navigation it may start)."""
        self.find(css).click()

    def type(self, css: str, text: str) -> None:
        """Empty a text field, then type ``text`` into it."""
        element = self.find(css)
        element.clear()
        element.send_keys(text)

    def choose_files(self, css: str, paths: list[Path]) -> None:
        """Fill a file input without its dialog: WebDriver takes the paths as typed text, one a
        line (Marionette sets them from the parent process, so no page script is involved)."""
        self.find(css).send_keys("\n".join(str(p) for p in paths))

    def viewport(self) -> tuple[int, int]:
        """The layout viewport in CSS pixels (what media queries see)."""
        width, height = self.script("return [window.innerWidth, window.innerHeight];")
        return int(width), int(height)

    def set_viewport(self, width: int, height: int) -> None:
        """Size the window so that its viewport is exactly ``width`` x ``height`` (checked, and
        corrected if the window still has chrome of its own)."""
        for _ in range(3):
            inner = self.viewport()
            if inner == (width, height):
                return
            rect = self.marionette.window_rect
            self.marionette.set_window_rect(
                width=rect["width"] + width - inner[0], height=rect["height"] + height - inner[1]
            )
        raise AssertionError(f"viewport {self.viewport()}, not {width}x{height}")

    def loaded(self) -> list[str]:
        """Every URL the current page loaded (itself, styles, images, icons), from the
        browser's own resource timing (read from Marionette's sandbox, not by a page script)."""
        names = self.script(
            "return performance.getEntriesByType('navigation')"
            ".concat(performance.getEntriesByType('resource')).map(e => e.name);"
        )
        return [str(name) for name in names]

    def shot(self, name: str) -> Path:
        """Save a full-page screenshot as ``NN-name.png`` and record what the page loaded."""
        self.requests += self.loaded()
        self._count += 1
        path = self.shots_dir / f"{self._count:02d}-{name}.png"
        path.write_bytes(self.marionette.screenshot(format="binary", full=True))
        return path

    def foreign_requests(self, origin: str) -> list[str]:
        """Every recorded URL not of ``origin``, and whatever reached the sink."""
        return [u for u in self.requests if _origin(u) != origin] + self.sink.seen

    def log(self) -> str:
        return (self.root / "firefox.log").read_text("utf-8", "replace")

    def stop(self) -> None:
        """End the session, then SIGTERM, a bounded wait and SIGKILL of the process group."""
        if self._stopped:
            return
        self._stopped = True
        # A browser that crashed or hung cannot end its session: it is killed all the same.
        with contextlib.suppress(OSError, MarionetteException):
            self.marionette.delete_session()
        stop_process(self.process, timeout=STOP_TIMEOUT)
        self.sink.stop()
        # Killed children are left to init to reap; wait (bounded) until none still runs.
        deadline = time.monotonic() + STOP_TIMEOUT
        while running_in_group(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def saved_prefs(self) -> str:
        """The profile's prefs.js: what Firefox itself recorded of its preferences."""
        return (self.root / "profile" / "prefs.js").read_text("utf-8", "replace")

    def script(self, script: str, *args: Any) -> Any:
        """Run ``script`` in Marionette's sandbox (privileged, apart from the page's own
        scripts, which stay off) with ``arguments`` = ``args``; return its result."""
        return self.marionette.execute_script(
            script, script_args=list(args), sandbox="tests", new_sandbox=False
        )


def running_in_group(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (neither dead nor zombies)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(stat.parent.name))
    return pids


def firefox_env(root: Path) -> dict[str, str]:
    """A bare environment: its own home and tmp under ``root``, no crash reporter."""
    for folder in ("home", "tmp"):
        (root / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "LANG": "C.UTF-8",
        "MOZ_CRASHREPORTER_DISABLE": "1",
        "MOZ_HEADLESS": "1",
        # Release builds ignore services.settings.server (QUIET_PREFS) unless this is set.
        "MOZ_REMOTE_SETTINGS_DEVTOOLS": "1",
    }


def start_firefox(root: Path, viewport: tuple[int, int], trace: bool = False) -> Firefox:
    """Start Firefox in a fresh profile under ``root`` and connect to it; with ``trace``,
    under strace, which writes every address its processes send to in ``root/strace.txt``."""
    profile = root / "profile"
    profile.mkdir(parents=True)
    (root / "screenshots").mkdir()
    sink = Sink()
    sink.start()
    # Port 0: Firefox picks a free port and writes it to MarionetteActivePort (no race).
    prefs = {**SAFEST_PREFS, **QUIET_PREFS, **sink_prefs(sink.port), "marionette.port": 0}
    (profile / "user.js").write_text(user_js(prefs), encoding="utf-8")
    (profile / "chrome").mkdir()
    (profile / "chrome" / "userChrome.css").write_text(USER_CHROME, encoding="utf-8")
    command = [FIREFOX, "--marionette", "--headless", "--no-remote", "--profile", str(profile)]
    if trace:
        command = [STRACE, *TRACE, "-o", str(root / "strace.txt"), *command]
    with (root / "firefox.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=firefox_env(root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        marionette = _connect(process, profile, root / "firefox.log")
        firefox = Firefox(root, process, marionette, sink)
        marionette.timeout.page_load = PAGE_TIMEOUT
        firefox.set_viewport(*viewport)
    except BaseException:
        stop_process(process, timeout=STOP_TIMEOUT)
        sink.stop()
        raise
    return firefox


def _connect(process: subprocess.Popen[bytes], profile: Path, log: Path) -> Marionette:
    """Wait (bounded) for Marionette's port, then open a session."""
    active = profile / "MarionetteActivePort"
    deadline = time.monotonic() + START_TIMEOUT
    while not active.exists() or not active.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"firefox did not start Marionette:\n{log.read_text('utf-8')}")
        time.sleep(0.05)
    marionette = Marionette(host=HOST, port=int(active.read_text()), socket_timeout=120)
    marionette.start_session(timeout=START_TIMEOUT)
    return marionette


StartFirefox = Callable[..., Firefox]


@pytest.fixture
def firefox(tmp_path: Path) -> Iterator[StartFirefox]:
    """Factory: ``firefox(viewport=(w, h), trace=False)`` starts a browser in a fresh profile;
    every browser it started is stopped at teardown."""
    started: list[Firefox] = []

    def start(*, viewport: tuple[int, int] = (1280, 800), trace: bool = False) -> Firefox:
        browser = start_firefox(tmp_path / f"firefox{len(started)}", viewport, trace)
        started.append(browser)
        return browser

    try:
        yield start
    finally:
        for browser in reversed(started):
            browser.stop()
