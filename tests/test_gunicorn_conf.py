"""deploy/gunicorn.conf.py: its settings as Gunicorn resolves them, and what a real Gunicorn
process with it does (with a stand-in WSGI app, so these tests do not depend on Tipbox's app)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gunicorn.app.base import Application
from gunicorn.config import Config

from tests import gunicorn_launch, live
from tests.gunicorn_launch import GUNICORN_CONF, REPO
from tests.live import STANDIN_APP, LiveServer

OUR_ENV = ("TIPBOX_BIND", "TIPBOX_WORKERS", "TIPBOX_THREADS")
# A client address nobody else uses (loopback accepts any 127/8 source), easy to grep for.
CLIENT = "127.83.41.30"


class _ConfigOnly(Application):
    """Gunicorn's own loading of a config file (validators included), without serving."""

    def __init__(self, path: Path) -> None:
        self._path = path
        super().__init__()

    def load_config(self) -> None:
        self.load_config_from_file(str(self._path))

    def load(self) -> Any:
        raise AssertionError("not used")


@pytest.fixture
def load_conf(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Config]:
    def load(**env: str) -> Config:
        for name in OUR_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            cfg: Config = _ConfigOnly(GUNICORN_CONF).cfg
        finally:
            sys.modules.pop("__config__", None)
        return cfg

    return load


@pytest.fixture
def gunicorn_loggers() -> Iterator[None]:
    """Leave Gunicorn's global loggers as they were after a test sets up a Gunicorn logger."""
    loggers = [logging.getLogger("gunicorn.error"), logging.getLogger("gunicorn.access")]
    before = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, before, strict=True):
        for handler in lg.handlers:
            if handler not in handlers:
                handler.close()
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def test_threaded_workers_sized_for_two_cores(load_conf: Callable[..., Config]) -> None:
    cfg = load_conf()
    assert cfg.worker_class_str == "app.server.worker.HeadDeadlineWorker"  # gthread, extended
    assert (cfg.workers, cfg.threads) == (3, 96)
    assert cfg.worker_connections == cfg.threads
    assert cfg.preload_app is False
    assert cfg.max_requests == 0
    assert cfg.wsgi_app == "app.source:create_app()"


def test_memory_settings_take_effect() -> None:
    """Loading the config (in the master, before the fork) caps glibc's malloc arenas and the
    size of Gunicorn's body reads."""
    probe = (
        "import runpy, sys; from gunicorn.http.unreader import SocketUnreader as S; "
        "conf = runpy.run_path(sys.argv[1]); "
        "print(conf['_MALLOC_ARENAS_LIMITED'], S.max_body_chunk)"
    )
    argv = [sys.executable, "-c", probe, str(GUNICORN_CONF)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", str(256 * 1024)]


def test_workers_and_threads_from_env(load_conf: Callable[..., Config]) -> None:
    cfg = load_conf(TIPBOX_WORKERS="1", TIPBOX_THREADS="3")
    assert (cfg.workers, cfg.threads) == (1, 3)
    with pytest.raises(SystemExit):
        load_conf(TIPBOX_THREADS="0")


def test_bind_unix_socket_by_default_or_from_env(load_conf: Callable[..., Config]) -> None:
    assert load_conf().bind == ["unix:/run/tipbox/source.sock"]
    assert load_conf(TIPBOX_BIND="127.0.0.1:8080").bind == ["127.0.0.1:8080"]
    assert load_conf().umask == 0o007


def test_never_trusts_proxy_headers(load_conf: Callable[..., Config]) -> None:
    cfg = load_conf()
    assert cfg.forwarded_allow_ips == []
    assert cfg.forwarder_headers == []
    assert cfg.secure_scheme_headers == {}
    assert cfg.proxy_protocol == "off"
    assert cfg.proxy_allow_ips == []
    assert cfg.http_protocols == ["h1"]


def test_no_access_log_no_control_socket(load_conf: Callable[..., Config]) -> None:
    cfg = load_conf()
    assert cfg.accesslog is None
    assert cfg.errorlog == "-"
    assert cfg.control_socket_disable is True
    assert cfg.capture_output is False
    assert cfg.syslog is False
    assert cfg.statsd_host is None
    assert cfg.logger_class.__name__ == "PrivateLogger"


def test_timeouts_and_limits(load_conf: Callable[..., Config]) -> None:
    cfg = load_conf()
    assert cfg.timeout >= 30  # a heartbeat: gthread keeps it going during slow uploads
    assert cfg.graceful_timeout >= 30
    assert cfg.keepalive == 0  # as many connections as threads: no room for kept-alive ones
    assert cfg.limit_request_line == 2048
    assert 20 <= cfg.limit_request_fields <= 100
    assert 4096 <= cfg.limit_request_field_size <= 8190


def test_check_config_with_gunicorn_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--check-config", STANDIN_APP],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("TIPBOX_", "GUNICORN"))},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pre_request_sets_an_idle_timeout_and_logs_nothing(
    load_conf: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_conf()

    class Unreader:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

    class Request:
        method, path, uri = "POST", "/en/submit", "/en/submit?secret"

        def __init__(self, sock: socket.socket) -> None:
            self.unreader = Unreader(sock)

    class Worker:
        log = logging.getLogger("gunicorn.error")

    left, right = socket.socketpair()
    with left, right, caplog.at_level(logging.DEBUG):
        cfg.pre_request(Worker(), Request(left))
        assert left.gettimeout() == 300
    assert caplog.records == []


def test_logger_withholds_request_details(
    load_conf: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
    gunicorn_loggers: None,
) -> None:
    cfg = load_conf()
    log = cfg.logger_class(cfg)
    secret = secrets.token_hex(8)
    log.info("Booting worker with pid: %s", 4242)
    log.warning(f"Invalid request from ip={CLIENT}: Invalid HTTP Header: 'X-{secret}'")
    try:
        raise ValueError(f"bad upload {secret}")
    except ValueError:
        log.exception("Error handling request %s %s", "POST", f"/en/submit?{secret}")
    log.access(None, None, {"REMOTE_ADDR": CLIENT}, None)
    err = capsys.readouterr().err
    assert "Booting worker with pid: 4242" in err
    assert "Invalid request (request details withheld)" in err
    assert "Error handling request (request details withheld): ValueError" in err
    assert "test_gunicorn_conf.py" in err  # the traceback's code locations stay
    assert secret not in err
    assert CLIENT not in err
    assert "POST" not in err


# --- A real Gunicorn process with the config --------------------------------------------------


def _get(
    server: LiveServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = server.connection(source_address=None if server.socket_path else (CLIENT, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _raw(server: LiveServer, request: bytes) -> bytes:
    """Send raw bytes from CLIENT and return the whole answer."""
    with socket.create_connection((server.host, server.port), 30, (CLIENT, 0)) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


SPOOFED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-For": "127.9.9.9",
    "SCRIPT_NAME": "/spoofed",
}


@pytest.mark.slow
@pytest.mark.parametrize("unix_socket", [False, True], ids=["tcp", "unix"])
def test_server_ignores_proxy_headers(
    live_server: Callable[..., LiveServer], unix_socket: bool
) -> None:
    # Over a unix socket Gunicorn trusts every peer for these headers whatever
    # forwarded_allow_ips says: only the emptied header lists stop them there.
    server = live_server(app=STANDIN_APP, unix_socket=unix_socket)
    status, headers, body = _get(server, "/env", SPOOFED)
    assert status == 200, body
    assert b"wsgi.url_scheme=http\n" in body
    assert b"SCRIPT_NAME=\n" in body
    assert b"PATH_INFO=/env\n" in body
    assert headers["Server"] == "gunicorn"  # no version


@pytest.mark.slow
def test_server_logs_no_request_details(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(app=STANDIN_APP)
    agent = f"TipboxLogProbe/{secrets.token_hex(8)}"
    path_canary = secrets.token_hex(8)

    status, _, _ = _get(server, f"/env?{path_canary}", {"User-Agent": agent})
    assert status == 200
    status, _, _ = _get(server, f"/boom?{path_canary}", {"User-Agent": agent})
    assert status == 500  # Gunicorn logs the app's exception: its message holds the agent
    bad_header = f"GET /{path_canary} HTTP/1.1\r\nHost: x\r\nBad Header{agent}: 1\r\n\r\n"
    assert _raw(server, bad_header.encode()).startswith(b"HTTP/1.1 400")
    long_line = f"GET /{path_canary}{'a' * 3000} HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _raw(server, long_line.encode()).startswith(b"HTTP/1.1 414")

    server.stop()
    log = server.stdout_path.read_bytes() + server.stderr_path.read_bytes()
    assert b"withheld" in log  # the errors above were logged, without details
    for needle in (CLIENT, agent, path_canary, "/boom", "GET "):
        assert needle.encode() not in log, f"{needle!r} in the server's log:\n{log.decode()}"


@pytest.mark.slow
def test_request_body_never_touches_disk(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(app=STANDIN_APP)
    canary = secrets.token_hex(16).encode()
    piece = (canary + b"\0" * (65536 - len(canary))) * 16  # 1 MiB
    count = 24
    conn = server.connection(source_address=(CLIENT, 0))
    try:
        with live.OpenFiles(server) as watcher:
            conn.request(
                "POST",
                "/upload",
                body=(piece for _ in range(count)),
                headers={"Content-Length": str(len(piece) * count)},
            )
            response = conn.getresponse()
            body = response.read()
        assert (response.status, body) == (200, f"{len(piece) * count}\n".encode())
    finally:
        conn.close()
    server.stop()
    assert watcher.seen  # it did see the workers' files
    assert watcher.suspicious() == []
    for path in server.root.rglob("*"):
        if path.is_file():
            assert canary not in path.read_bytes(), path


@pytest.mark.slow
def test_live_server_moves_on_from_a_taken_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1]]
        real_free_port = gunicorn_launch.free_port
        monkeypatch.setattr(
            gunicorn_launch, "free_port", lambda: ports.pop() if ports else real_free_port()
        )
        server = live.start_server(tmp_path / "srv", tmp_path / "id.txt", app=STANDIN_APP)
        try:
            assert server.port != taken.getsockname()[1]
            assert _get(server, "/env")[0] == 200
        finally:
            server.stop()
        assert server.process.returncode == 0


# --- `make run` (app/server/dev.py) --------------------------------------------------------------


@pytest.fixture
def dev_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """app.server.dev pointed at an empty repository copy (its keys/ holds only the README)."""
    from app.server import dev

    repo = tmp_path / "repo"
    (repo / "keys").mkdir(parents=True)
    (repo / "keys" / "README.md").write_text("public recipients go here\n")
    monkeypatch.setattr(dev, "REPO", repo)
    return repo


def test_dev_makes_a_loud_throwaway_key(dev_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.crypto.keyfile import load_identities, parse_recipients
    from app.server import dev
    from app.server.newsroom import load_recipients

    hostile = {"PORT": "8123", "GUNICORN_CMD_ARGS": "-b 0.0.0.0:80", "TIPBOX_ENV": "production"}
    env, commands = dev.prepare(hostile)
    identity = dev_repo / "data" / "dev" / "identity.txt"
    keys = dev_repo / "data" / "dev" / "keys"
    assert env["TIPBOX_ENV"] == "development"
    assert env["TIPBOX_BIND"] == "127.0.0.1:8123"
    assert env["TIPBOX_DATA_DIR"] == str(dev_repo / "data")
    assert env["TIPBOX_KEYS_DIR"] == str(keys)
    assert "GUNICORN_CMD_ARGS" not in env
    assert commands["source portal"][1:] == [
        *("-m", "gunicorn", "-c", str(dev.GUNICORN_CONF), "app.source:create_app()")
    ]
    assert env["TIPBOX_JOURNALIST_BIND"] == "127.0.0.1:8124"
    assert identity.stat().st_mode & 0o777 == 0o600
    secret = load_identities(identity.read_bytes())[0]
    assert load_recipients(keys) == [secret.recipient]
    err = capsys.readouterr().err
    assert "DEVELOPMENT NEWSROOM KEY" in err
    assert f"tipbox decrypt -i {identity}" in err
    assert "http://127.0.0.1:8123" in err

    # Next time: the same identity (earlier test submissions stay readable), still announced.
    (keys / "newsroom.pub").unlink()
    env, _ = dev.prepare({})
    assert env["TIPBOX_BIND"] == "127.0.0.1:8080"
    assert load_identities(identity.read_bytes())[0].recipient == secret.recipient
    assert parse_recipients((keys / "newsroom.pub").read_text()) == [secret.recipient]
    assert "Using a throwaway newsroom identity" in capsys.readouterr().err


def test_dev_uses_the_repository_keys_when_there_are_some(
    dev_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.crypto import X25519Identity
    from app.server import dev

    (dev_repo / "keys" / "newsroom.pub").write_text(f"{X25519Identity.generate().recipient}\n")
    env, _ = dev.prepare({"PORT": "9000"})
    assert env["TIPBOX_KEYS_DIR"] == str(dev_repo / "keys")
    assert not (dev_repo / "data" / "dev").exists()
    assert "DEVELOPMENT NEWSROOM KEY" not in capsys.readouterr().err


@pytest.mark.parametrize("port", ["0", "65536", "80a", "-1"])
def test_dev_refuses_a_bad_port(dev_repo: Path, port: str) -> None:
    from app.server import dev

    with pytest.raises(SystemExit, match="PORT"):
        dev.prepare({"PORT": port})
