"""Running one command and measuring it: wall time, CPU time and the child's own peak RSS.

Wall time is ``time.perf_counter`` around spawn-to-reap (so it includes process start-up, the
same for every tool); CPU time comes from ``os.wait4``. The peak RSS comes from GNU time's
``%M`` (``/usr/bin/time -f %M -o FILE``), not from ``wait4`` or ``RUSAGE_CHILDREN``: Linux
records, at ``exec``, the peak RSS of the memory image being replaced, and Python spawns
children with ``vfork``, so that image is the benchmark process itself. Every child would then
report at least the benchmark's own peak (measured: ``/bin/true`` "used" 411 MiB after the
parent had touched 400 MiB), and RUSAGE_CHILDREN keeps only the largest child anyway. GNU time
is a small process that forks, so its child's ``%M`` is the command's own. Without it, the
``wait4`` figure is kept only when it exceeds the benchmark's own peak, else reported as n/a.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

Argv = Sequence[str | Path]


class CommandError(RuntimeError):
    """A measured command failed: the benchmark stops rather than report a bogus figure."""


@dataclass(frozen=True)
class Measurement:
    """One run of one command."""

    wall: float  # seconds
    user: float  # seconds of CPU in user mode
    system: float  # seconds of CPU in the kernel
    max_rss_kib: int | None  # the child's peak resident set, KiB (None: could not be measured)


def _fail(argv: Argv, code: int, stderr: IO[bytes]) -> CommandError:
    stderr.seek(0)
    text = stderr.read().decode("utf-8", "replace").strip()
    command = " ".join(str(a) for a in argv)
    return CommandError(f"`{command}` exited with status {code}: {text}")


TIME = Path("/usr/bin/time")


def _peak_from_time(path: Path) -> int | None:
    lines = path.read_text("utf-8", "replace").split()
    return int(lines[-1]) if lines and lines[-1].isdigit() else None


def _peak_from_wait4(usage: resource.struct_rusage) -> int | None:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage.ru_maxrss if usage.ru_maxrss > own else None


def run_measured(argv: Argv, stdin: Path | None = None) -> Measurement:
    """Run ``argv`` with stdout to /dev/null; raise :class:`CommandError` if it fails."""
    with (
        tempfile.TemporaryFile() as stderr,
        tempfile.NamedTemporaryFile(suffix=".rss") as rss,
        open(stdin or os.devnull, "rb") as source,  # noqa: PTH123 - a raw handle for the child
    ):
        wrapped = [TIME, "-f", "%M", "-o", rss.name, *argv] if TIME.exists() else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdin=source, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise _fail(argv, code, stderr)
        peak = _peak_from_time(Path(rss.name)) if TIME.exists() else _peak_from_wait4(usage)
    return Measurement(wall, usage.ru_utime, usage.ru_stime, peak)


def run_checked(argv: Argv) -> str:
    """Run an untimed helper command and return its stdout."""
    done = subprocess.run(argv, capture_output=True, check=False)
    if done.returncode != 0:
        with tempfile.TemporaryFile() as stderr:
            stderr.write(done.stderr)
            raise _fail(argv, done.returncode, stderr)
    return done.stdout.decode("utf-8", "replace")


def stdout_sha256(argv: Argv) -> str:
    """Run ``argv`` (untimed) and return the SHA-256 of what it writes on stdout."""
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
        )
        assert proc.stdout is not None
        for block in iter(lambda: proc.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
            digest.update(block)
        if (code := proc.wait()) != 0:
            raise _fail(argv, code, stderr)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
