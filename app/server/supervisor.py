"""Run a few programs together until Ctrl-C, then stop every process they started.

``make run`` (.dev) uses it for its two Gunicorns. Each program runs in a session of its own,
so that it and whatever it forked (Gunicorn's workers) can be killed as one process group, and
the kernel sends it SIGTERM if this process dies first (``PR_SET_PDEATHSIG``), so that not even a
``kill -9`` of the supervisor leaves a server behind. On SIGINT, SIGTERM or SIGHUP (which
:func:`raise_stop` turns into :class:`Stop`), or when one program exits, every program gets
SIGTERM, then a bounded wait, then SIGKILL to its whole group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import FrameType

# After Ctrl-C, how long each program may finish its requests before it is killed.
STOP_WAIT = 15.0
PR_SET_PDEATHSIG = 1


class Stop(Exception):
    """A stop signal arrived (Ctrl-C, SIGTERM, SIGHUP)."""


def raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise Stop


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the supervisor is killed, so is the app.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _spawn(command: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        command,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # single-threaded: safe
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each app, a bounded wait, then SIGKILL to each app's whole process group."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    deadline = time.monotonic() + STOP_WAIT
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        # Its group outlives it: workers a killed master left behind are in it too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def supervise(commands: Mapping[str, list[str]], env: Mapping[str, str]) -> int:
    """Run every command until a stop signal or until one exits; stop them all; the status."""
    processes: list[subprocess.Popen[bytes]] = []
    status = 0
    try:
        for command in commands.values():
            processes.append(_spawn(command, env))
        while not any(p.poll() is not None for p in processes):
            time.sleep(0.2)
        names = [n for n, p in zip(commands, processes, strict=True) if p.returncode is not None]
        print(f"tipbox dev: the {names[0]} stopped; stopping the other", file=sys.stderr)
        status = 1
    except Stop:
        print("tipbox dev: stopping everything", file=sys.stderr)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        _stop(processes)
    return status
