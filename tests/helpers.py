"""Small helpers shared by the crypto, CLI and interop tests: streams, age files, processes."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import pexpect

from app.crypto import Writer, X25519Identity, decrypt, encrypt
from app.crypto.recipients import Identity, Recipient

TIPBOX = [sys.executable, "-m", "app.cli"]
TIMEOUT = 60
PASSPHRASE = "correct horse battery staple"


def encrypt_bytes(data: bytes, recipients: Sequence[Recipient]) -> bytes:
    """``data`` encrypted to ``recipients``, as bytes."""
    out = io.BytesIO()
    encrypt(io.BytesIO(data), out, recipients)
    return out.getvalue()


def decrypt_bytes(data: bytes, identities: Sequence[Identity]) -> bytes:
    """``data`` decrypted with ``identities``, as bytes (raises like :func:`decrypt`)."""
    out = io.BytesIO()
    decrypt(io.BytesIO(data), out, identities)
    return out.getvalue()


def payload_offset(ciphertext: bytes) -> int:
    """Where chunk 0 starts: after the header's MAC line and the 16-byte payload nonce."""
    mac_line = ciphertext.index(b"\n--- ") + 1
    return ciphertext.index(b"\n", mac_line) + 1 + 16


class PatternReader:
    """A readable of ``size`` bytes made up on the fly; only a 64 KiB pattern is ever held.

    The pattern length is prime, so no two chunks of the stream are equal; ``digest`` is the
    SHA-256 of everything handed out so far.
    """

    PATTERN = os.urandom(65521)

    def __init__(self, size: int) -> None:
        self.left = size
        self._pos = 0
        self._hash = hashlib.sha256()

    def readinto(self, buffer: bytearray | memoryview) -> int:
        n = min(len(buffer), self.left)
        done = 0
        with memoryview(self.PATTERN) as pattern, memoryview(buffer) as out:
            while done < n:
                start = (self._pos + done) % len(pattern)
                step = min(n - done, len(pattern) - start)
                out[done : done + step] = pattern[start : start + step]
                done += step
            self._hash.update(out[:n])
        self._pos += n
        self.left -= n
        return n

    def digest(self) -> str:
        return self._hash.hexdigest()


class HashSink:
    """A writable that keeps only the SHA-256 and the size of what it was given."""

    def __init__(self) -> None:
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def digest(self) -> str:
        return self._hash.hexdigest()


class TrickleReader:
    """A readable over ``data`` that hands out at most ``step`` bytes per call, like a pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def readinto(self, buffer: bytearray | memoryview) -> int:
        n = min(len(buffer), self._step, len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def run(
    args: Sequence[str | os.PathLike[str]], cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a command with no controlling terminal (so nothing can prompt) and capture it."""
    return subprocess.run(
        [os.fspath(a) for a in args],
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        timeout=TIMEOUT,
        check=False,
    )


def tipbox(
    *args: str | os.PathLike[str], cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``tipbox ARGS`` in a subprocess; return the completed process."""
    return run([*TIPBOX, *args], cwd, stdin)


def spawn(args: Sequence[str | os.PathLike[str]], cwd: Path) -> pexpect.spawn:
    """Start a command on a fresh pseudo-terminal (its controlling terminal), recording it."""
    argv = [os.fspath(a) for a in args]
    child = pexpect.spawn(argv[0], argv[1:], cwd=os.fspath(cwd), timeout=TIMEOUT)
    child.logfile_read = io.BytesIO()
    return child


def finish(child: pexpect.spawn) -> tuple[int, str]:
    """Wait for a spawned command to end; return its exit status and everything the terminal
    showed (a passphrase typed with echo on would appear here)."""
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.logfile_read.getvalue().decode("utf-8", "replace")


def age_keygen(path: Path) -> str:
    """Write an identity with Debian's ``age-keygen``; return its recipient (from the comment)."""
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True, timeout=TIMEOUT)
    for line in path.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.removeprefix("# public key: ")
    raise AssertionError(f"age-keygen wrote no public key comment in {path}")


def assert_cli_error(proc: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """Check the CLI's error contract (exit 1, our lines only, no traceback); return stderr."""
    err = proc.stderr.decode("utf-8", "replace")
    # Plain asserts with messages: this module is not rewritten by pytest.
    assert proc.returncode == 1, f"exit {proc.returncode}: {err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines, "no error message"
    assert lines[0].startswith("tipbox: error: "), err
    assert all(line.startswith(("tipbox: error: ", "tipbox: hint: ")) for line in lines), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def leftovers(directory: Path) -> list[str]:
    """Names of temporary files an atomic write may have left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def _peak(operation: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        operation()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _through_writer(src: PatternReader, identity: X25519Identity) -> None:
    piece = bytearray((1 << 20) + 3)
    with Writer(HashSink(), [identity.recipient]) as writer:
        while n := src.readinto(piece):
            writer.write(memoryview(piece)[:n])


def peaks(tmp_path: Path, identity: X25519Identity, size: int) -> dict[str, int]:
    """tracemalloc peaks of each way through the envelope for a generated ``size``-byte stream."""
    path, src, sink = tmp_path / f"{size}.age", PatternReader(size), HashSink()
    with path.open("wb") as handle:
        encrypting = _peak(lambda: encrypt(src, handle, [identity.recipient]))
    with path.open("rb") as handle:
        decrypting = _peak(lambda: decrypt(handle, sink, [identity]))
    path.unlink()
    assert (sink.size, sink.digest()) == (size, src.digest())
    writing = _peak(lambda: _through_writer(PatternReader(size), identity))
    return {"encrypt": encrypting, "decrypt": decrypting, "writer": writing}


# What the air-gapped commands must never import: the server's stack, and (for start-up time)
# http.client and importlib.resources (tests/test_cli.py, tests/test_airgap.py).
AIR_GAPPED_FORBIDDEN = (
    "flask",
    "werkzeug",
    "jinja2",
    "stem",
    "gunicorn",
    "sqlite3",
    "app.db",
    "app.server",
    "app.cli.server",
    "app.cli.users",
    "app.source",
    "app.journalist",
    "app.onion",
    "http.client",
    "importlib.resources",
)


def in_forked_child(work: Callable[[], None], timeout: float = 20.0) -> None:
    """Run ``work`` in a forked child (as Gunicorn runs a worker) and fail if it raises or
    hangs; a hung child is killed after ``timeout`` seconds."""
    wait_for_child(fork_child(work), timeout)


def fork_child(work: Callable[[], None]) -> int:
    """Fork a child that runs ``work`` and exits: 0 if it returned, 1 if it raised; its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def wait_for_child(pid: int, timeout: float = 20.0) -> None:
    """Wait for a forked child; fail if it failed, or if it hangs (then it is killed)."""
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    if done == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"the forked child hung for {timeout} s")
    assert os.waitstatus_to_exitcode(done[1]) == 0, "the forked child failed"


def apt_without_updates(folder: Path) -> Path:
    """An ``APT_CONFIG`` file for an apt with no source at all, so that ``tipbox status`` finds
    no update pending whatever this machine's own package lists say."""
    for name in ("sources.list.d", "lists/partial", "cache"):
        (folder / "apt" / name).mkdir(parents=True, exist_ok=True)
    (folder / "apt/sources.list").write_text("")
    settings = {
        "Dir::Etc::SourceList": folder / "apt/sources.list",
        "Dir::Etc::SourceParts": folder / "apt/sources.list.d",
        "Dir::State::Lists": folder / "apt/lists",
        "Dir::Cache": folder / "apt/cache",
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
    }
    conf = folder / "apt/apt.conf"
    conf.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    return conf
