"""``make run`` (``python -m app.server.dev``) as a developer runs it: both apps start on the same
development key and data folder, ``make user``'s command works against them, and Ctrl-C stops
every process it started.

tor is left out (TIPBOX_DEV_ONION=0; tests/test_dev_onion.py covers it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.gunicorn_launch import free_port, stop_process

pytestmark = [pytest.mark.slow]
WAIT = 60.0


def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _status(url: str) -> int:
    """The HTTP status of ``GET url`` (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _descendants(pid: int) -> set[int]:
    """Every process under ``pid`` (children, grandchildren, …), from /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo and len(found) < 1000:
        parent = todo.pop()
        try:
            text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        except OSError:
            continue
        children = {int(p) for p in text.split()} - found
        found |= children
        todo.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already stopped


def _env(tmp_path: Path, port: int, journalist_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIPBOX_", "GUNICORN"))}
    env.update(
        PORT=str(port),
        JOURNALIST_PORT=str(journalist_port),
        TIPBOX_DATA_DIR=str(tmp_path / "data"),
        TIPBOX_DEV_ONION="0",
        TIPBOX_KDF_OPSLIMIT="1",
        TIPBOX_KDF_MEMLIMIT=str(8 << 20),
        TIPBOX_PASSWORD_TIME_COST="1",
        TIPBOX_PASSWORD_MEMORY_KIB="8",
        TIPBOX_PASSWORD_PARALLELISM="1",
        HOME=str(tmp_path),
    )
    return env


def test_make_run_serves_both_apps_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port, journalist_port = free_port(), free_port()
    env = _env(tmp_path, port, journalist_port)
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.server.dev"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    started: set[int] = set()
    try:
        source = f"http://127.0.0.1:{port}/"
        journalist = f"http://127.0.0.1:{journalist_port}/login"
        assert _wait(lambda: _status(source) == 200, WAIT), log_path.read_text()
        assert _wait(lambda: _status(journalist) == 200, WAIT), log_path.read_text()
        # `make user` (no /etc/tipbox/tipbox.env here) is `tipbox user add --admin NAME`.
        added = subprocess.run(
            [sys.executable, "-m", "app.cli", "user", "add", "--admin", "ada"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert added.returncode == 0, added.stderr
        log = log_path.read_text()
        assert f"http://127.0.0.1:{port}" in log
        assert f"http://127.0.0.1:{journalist_port}" in log
        assert "DEVELOPMENT NEWSROOM KEY" in log
        assert "Traceback" not in log
        started = _descendants(process.pid)
        assert len(started) >= 4, started  # two masters, at least one worker each
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        process.wait(timeout=WAIT)
    finally:
        stop_process(process)
        left = {pid for pid in started if _alive(pid)}
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert process.returncode == 0, log_path.read_text()
    assert not left, f"still running after Ctrl-C: {left}"
    assert _status(source) == 0
    assert _status(journalist) == 0


def test_prepare_binds_both_apps_to_loopback(tmp_path: Path) -> None:
    from app.server import dev

    env, commands = dev.prepare(_env(tmp_path, 8090, 8091))
    assert env["TIPBOX_JOURNALIST_BIND"] == "127.0.0.1:8091"
    assert env["TIPBOX_BIND"] == "127.0.0.1:8090"
    assert [c[-1] for c in commands.values()] == [dev.APP, dev.JOURNALIST_APP]


@pytest.mark.parametrize(
    ("ports", "expected"),
    [({"PORT": "9000"}, "127.0.0.1:9001"), ({}, "127.0.0.1:8081")],
)
def test_the_journalist_port_defaults_to_the_next_one(
    tmp_path: Path, ports: dict[str, str], expected: str
) -> None:
    from app.server import dev

    env, _ = dev.prepare({"TIPBOX_DATA_DIR": str(tmp_path / "data"), **ports})
    assert env["TIPBOX_JOURNALIST_BIND"] == expected


@pytest.mark.parametrize("port", ["0", "65536", "x", "8080"])
def test_a_bad_journalist_port_is_refused(tmp_path: Path, port: str) -> None:
    from app.server import dev

    with pytest.raises(SystemExit, match="JOURNALIST_PORT"):
        dev.prepare({"TIPBOX_DATA_DIR": str(tmp_path / "data"), "JOURNALIST_PORT": port})


def test_when_one_program_exits_the_others_are_stopped() -> None:
    from app.server.supervisor import supervise

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    status = supervise({"sleeper": sleeper, "quitter": [sys.executable, "-c", "pass"]}, os.environ)
    assert status == 1
    assert time.monotonic() - started < 30  # the sleeper was stopped, not waited for
