"""Real Gunicorn processes on loopback, for the tests (tests/live.py, tests/fixtures_journalist.py)
and the benchmarks (bench/live.py): both must launch the server the same way.

A server is ``gunicorn -c deploy/gunicorn.conf.py APP`` (the production config) on 127.0.0.1
and a free port (or a unix socket), in a session of its own, with everything it may write (data,
secrets, tmp, home, its logs) under one folder. :func:`start` starts one, picks another port
when the one it chose was taken meanwhile, and waits until it answers (or until every worker
does); :meth:`Gunicorn.stop` stops it: SIGTERM, a bounded wait, then SIGKILL of its whole
process group. Only loopback addresses are used.

Nothing here needs pytest: the benchmarks import this module (both are development tools).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

REPO = Path(__file__).resolve().parent.parent
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PORT_TRIES = 5
# Development mode, and the codename KDF at libsodium's minimum cost (ops 1, 8 MiB): neither the
# tests nor the upload benchmarks are about the KDF.
DEV_ENV = {
    "TIPBOX_ENV": "development",
    "TIPBOX_KDF_OPSLIMIT": "1",
    "TIPBOX_KDF_MEMLIMIT": "8388608",
}
# Variables of ours or Gunicorn's that must not leak from the developer's shell into a server.
_SCRUBBED_PREFIXES = ("TIPBOX_", "GUNICORN", "FORWARDED_ALLOW_IPS", "WEB_CONCURRENCY")
_SCRUBBED = {"PORT", "XDG_RUNTIME_DIR", "PYTHONSTARTUP"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (Gunicorn cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerError(RuntimeError):
    """The server did not start, or answered something unexpected; a start failure's message
    ends with its log."""


@dataclass(kw_only=True)
class Gunicorn:
    """One Gunicorn master (and its workers) and the folder it owns: everything it may write is
    under ``root``. Subclasses add their own fields and may name other log files or another
    stop timeout."""

    # Its output, relative to root: stdout then stderr, or a single file for both.
    LOGS: ClassVar[tuple[str, ...]] = ("gunicorn.stdout", "gunicorn.stderr")
    STOP_TIMEOUT: ClassVar[float] = STOP_TIMEOUT

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    socket_path: Path | None = None
    host: str = HOST
    stopped: bool = False

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
    def listening_at(self) -> str:
        """The address as Gunicorn's master logs it once bound (``Listening at: …``)."""
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return f"http://{self.host}:{self.port}"

    def connection(
        self, source_address: tuple[str, int] | None = None, timeout: float = 60.0
    ) -> http.client.HTTPConnection:
        """A new HTTP connection to the server (TCP from ``source_address``, or its unix socket)."""
        if self.socket_path is not None:
            from app.server.unixhttp import UnixHTTPConnection

            return UnixHTTPConnection(self.socket_path, timeout=timeout)
        return http.client.HTTPConnection(
            self.host, self.port, timeout=timeout, source_address=source_address
        )

    def log(self) -> str:
        """What the server printed so far (its log files in order), for failure messages."""
        parts = []
        for name in self.LOGS:
            with contextlib.suppress(FileNotFoundError):
                parts.append((self.root / name).read_bytes().decode("utf-8", "replace"))
        return "".join(parts)

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
        stop_process(self.process, graceful, self.STOP_TIMEOUT)


def stop_process(
    process: subprocess.Popen[bytes], graceful: bool = True, timeout: float = STOP_TIMEOUT
) -> None:
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
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not _exited(process.pid):
                time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def server_env(root: Path, bind: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a server rooted in ``root`` and bound to ``bind``: ours, scrubbed of
    anything that would configure Tipbox or Gunicorn, then :data:`DEV_ENV`, then ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED
    }
    env.update(
        {
            **DEV_ENV,
            "TIPBOX_DATA_DIR": str(root / "data"),
            "TIPBOX_KEYS_DIR": str(root / "keys"),
            "TIPBOX_SECRETS_DIR": str(root / "secrets"),
            "TIPBOX_BIND": bind,
            "TMPDIR": str(root / "tmp"),
            "HOME": str(root / "home"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def spawn(
    root: Path,
    app: str,
    env: Mapping[str, str],
    *,
    conf: Path = GUNICORN_CONF,
    args: Sequence[str] = (),
    logs: Sequence[str] = Gunicorn.LOGS,
) -> subprocess.Popen[bytes]:
    """``gunicorn -c CONF ARGS APP`` in a session of its own (so that its process group can be
    killed), its output in fresh files under ``root`` (``logs``: stdout then stderr, or one
    file for both): an earlier attempt's "Connection in use" must not count."""
    command = [sys.executable, "-m", "gunicorn", "-c", str(conf), *args, app]
    with contextlib.ExitStack() as files:
        out, *err = (files.enter_context((root / name).open("wb")) for name in logs)
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err[0] if err else subprocess.STDOUT,
            start_new_session=True,
        )


def answers(server: Gunicorn, timeout: float = 2.0) -> bool:
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


def bind_failed(log: str) -> bool:
    return "Connection in use" in log or os.strerror(errno.EADDRINUSE) in log


def wait_until_ready(server: Gunicorn, workers: int | None = None) -> bool:
    """Wait until the server answers (with ``workers``: until that many workers have forked,
    and give them their app import too). False if it exited or could not bind (pick another
    port); ServerError if it did not answer in time."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        log = server.log()
        if bind_failed(log):
            return False  # Gunicorn would retry for 5 s: pick another port now
        # Only once our master has bound the port: another process may have taken it since
        # free_port() saw it free, and would answer in its place.
        bound = f"Listening at: {server.listening_at} " in log
        # Gunicorn logs nothing once a worker has loaded the app: count the master's children.
        forked = workers is None or len(server.worker_pids()) >= workers
        # Short: whoever holds a taken port may accept and never answer.
        if bound and forked and answers(server, timeout=1.0):
            if workers is not None:
                # The other workers fork at the same time; give them their app import too.
                for _ in range(4 * workers):
                    answers(server, timeout=5.0)
                time.sleep(0.5)
            return True
        time.sleep(0.1)
    raise ServerError(f"gunicorn did not answer within {START_TIMEOUT:.0f} s:\n{server.log()}")


G = TypeVar("G", bound=Gunicorn)


def start(
    kind: type[G],
    root: Path,
    app: str,
    /,
    *,
    make_keys: Callable[[Path], None],
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    unix_socket: bool = False,
    wait_for: int | None = None,
    **fields: Any,
) -> G:
    """Start ``app`` under the deploy config (plus ``args``) with its folders under ``root``, on
    a free loopback port (or on a unix socket under ``root``), and wait until it answers (with
    ``wait_for``: until that many workers have forked and answered). ``make_keys(keys_dir)``
    makes the newsroom recipient if there is none yet; ``fields`` go to ``kind``."""
    for folder in ("data", "secrets", "tmp", "home"):
        (root / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (root / "keys" / "newsroom.pub").exists():
        make_keys(root / "keys")
    last_log = ""
    for _ in range(PORT_TRIES):
        socket_path = root / "s.sock" if unix_socket else None
        port = 0 if socket_path else free_port()
        bind = f"unix:{socket_path}" if socket_path else f"{HOST}:{port}"
        process = spawn(root, app, server_env(root, bind, env or {}), args=args, logs=kind.LOGS)
        server = kind(root=root, port=port, process=process, socket_path=socket_path, **fields)
        try:
            ready = wait_until_ready(server, wait_for)
        except BaseException:
            server.stop()
            raise
        if ready:
            return server
        server.stop(graceful=False)  # still retrying its bind, it would ignore SIGTERM
        last_log = server.log()
        if not bind_failed(last_log):
            break
    raise ServerError(f"gunicorn did not start; its output:\n{last_log}")
