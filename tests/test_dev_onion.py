"""``make run`` with tor installed: the portal also gets an onion address, through stem.

tor runs with ``DisableNetwork 1`` here (TIPBOX_DEV_TOR_OFFLINE): the address is created and
served by tor's control port, but nothing leaves the machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.gunicorn_launch import free_port, stop_process

pytestmark = [pytest.mark.tor, pytest.mark.slow]
ONION = re.compile(rb"onion service http://([a-z2-7]{56})\.onion/")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "TIPBOX_DATA_DIR": str(tmp_path / "data"),
        "TIPBOX_DEV_TOR_OFFLINE": "1",
        "TIPBOX_KDF_OPSLIMIT": "1",
        "TIPBOX_KDF_MEMLIMIT": str(8 << 20),
    }
    log = (tmp_path / "dev.log").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "app.server.dev"], cwd=REPO, env=env, stdout=log, stderr=log
        )
    finally:
        log.close()


def _wait(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def _run_once(tmp_path: Path) -> tuple[str, int]:
    """Start make run's program, check it serves and names an onion; stop it and its tor."""
    port = free_port()
    process = _start(tmp_path, port)
    pid_file = tmp_path / "data" / "dev" / "tor" / "tor.pid"
    tor_pid = 0
    try:
        log = tmp_path / "dev.log"
        assert _wait(lambda: ONION.search(log.read_bytes()), 60), log.read_text()
        url = f"http://127.0.0.1:{port}/"
        assert _wait(lambda: _get(url) == 200, 60), log.read_text()
        assert _wait(pid_file.is_file, 10)
        tor_pid = int(pid_file.read_text())
        assert _alive(tor_pid)
        match = ONION.search(log.read_bytes())
        assert match is not None
        return match.group(1).decode(), tor_pid
    finally:
        stop_process(process)
        # tor watches its owner's pid (now gunicorn's) and leaves by itself; never leave it.
        stopped = tor_pid == 0 or _wait(lambda: not _alive(tor_pid), 45)
        if not stopped:
            os.kill(tor_pid, signal.SIGKILL)
        assert stopped, "tor outlived make run"


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except OSError:
        return 0


def test_make_run_publishes_an_onion_that_survives_restarts(tmp_path: Path) -> None:
    first, _ = _run_once(tmp_path)
    key = tmp_path / "data" / "dev" / "tor" / "onion.key"
    assert key.stat().st_mode & 0o777 == 0o600
    second, _ = _run_once(tmp_path)
    assert second == first


def test_without_tor_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.server import dev

    monkeypatch.setattr(dev, "find_tor", lambda: None)
    assert dev.publish_onion(tmp_path / "tor", free_port(), offline=True) is None
    assert "tor is not installed: serving on 127.0.0.1 only" in capsys.readouterr().err


def test_a_failing_tor_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.server import dev

    monkeypatch.setattr(dev, "find_tor", lambda: "/bin/false")
    monkeypatch.setattr(dev, "TOR_WAIT", 2.0)
    assert dev.publish_onion(tmp_path / "tor", free_port(), offline=True) is None
    assert "tor failed" in capsys.readouterr().err
