"""app.files: atomic writes (complete file or nothing) and path containment."""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.files import (
    NAME_MAX,
    EarlyWriteback,
    atomic_write,
    contained,
    remove_leftovers,
    temporary_name,
)
from tests.helpers import in_forked_child, leftovers


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    """A known umask, so file modes are predictable (restored afterwards)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("durable", [True, False])
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_writes_whole_file_with_mode(tmp_path: Path, mode: int, durable: bool) -> None:
    target = tmp_path / "tip.age"
    with atomic_write(target, mode, durable=durable) as handle:
        handle.write(b"part one, ")
        assert not target.exists()  # nothing under the real name until the block ends
        assert len(leftovers(tmp_path)) == 1  # the temporary file sits next to the target
        handle.write(b"part two")
    assert target.read_bytes() == b"part one, part two"
    assert _mode(target) == mode
    assert leftovers(tmp_path) == []


def test_default_mode_is_private(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    with atomic_write(target) as handle:
        handle.write(b"x")
    assert _mode(target) == 0o600


@pytest.mark.parametrize("error", [ValueError, OSError, KeyboardInterrupt])
@pytest.mark.parametrize("overwrite", [False, True])
def test_failure_leaves_nothing(
    tmp_path: Path, error: type[BaseException], overwrite: bool
) -> None:
    target = tmp_path / "plain.txt"
    with pytest.raises(error), atomic_write(target, overwrite=overwrite) as handle:  # noqa: PT012
        handle.write(b"half of a decrypted tip")
        raise error("disk full")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "plain.txt"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_write(target, overwrite=True) as handle:  # noqa: PT012
        handle.write(b"new but broken")
        raise RuntimeError("tampered chunk")
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_refuses_to_overwrite_by_default(tmp_path: Path) -> None:
    target = tmp_path / "newsroom.pub"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError), atomic_write(target) as handle:
        handle.write(b"replacement")
    assert target.read_bytes() == b"original"
    assert leftovers(tmp_path) == []


def test_refuses_to_overwrite_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"original")
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(FileExistsError), atomic_write(tmp_path / "link") as handle:
        handle.write(b"replacement")
    assert elsewhere.read_bytes() == b"original"


def test_overwrite_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old contents, longer than the new ones")
    with atomic_write(target, 0o644, overwrite=True) as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o644


@pytest.mark.parametrize(
    "name",
    ["a", "x" * 232, "x" * 233, "y" * 255, "報告書" * 26, "é" * 127 + "x", "😀" * 63 + ".gz"],
)
def test_any_name_up_to_255_bytes_is_written(tmp_path: Path, name: str) -> None:
    """Its temporary name stays within 255 bytes, cut between characters, and unique."""
    temporary = temporary_name(name)
    assert len(temporary.encode()) <= NAME_MAX
    assert name.startswith(temporary[1:-22])
    assert temporary != temporary_name(name)
    with atomic_write(tmp_path / name) as handle:
        handle.write(b"data")
    assert (tmp_path / name).read_bytes() == b"data"
    assert leftovers(tmp_path) == []


def test_remove_leftovers_takes_only_temporary_files(tmp_path: Path) -> None:
    ours = [temporary_name(name) for name in ("a.txt", "y" * 255, "報告書" * 26, ".x\n")]
    theirs = [".notes.part", "a.txt", f".a.{'0' * 15}.part", f"a.{'0' * 16}.part", "keep"]
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"x")
    link = temporary_name("link")  # the right name, but a symbolic link: not ours
    (tmp_path / link).symlink_to(tmp_path / "a.txt")
    assert remove_leftovers(tmp_path) == len(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*theirs, link])


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "nope" / "out") as handle:
        handle.write(b"x")
    assert list(tmp_path.iterdir()) == []


# --- contained() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("a",), "a"),
        (("a", "b.age"), "a/b.age"),
        (("a/../b",), "b"),
        ((".",), ""),
        (("a", ".."), ""),
    ],
)
def test_contained_inside(tmp_path: Path, parts: tuple[str, ...], expected: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert contained(root, *parts) == (root / expected).resolve()


@pytest.mark.parametrize(
    "parts",
    [
        ("..",),
        ("../outside",),
        ("a", "..", "..", "outside"),
        ("/etc/passwd",),
        ("a", "/etc"),
        ("../root-sibling",),  # shares the prefix "root" but is not under it
        ("link-out", "file"),  # a symlink inside the root that points outside
    ],
)
def test_contained_refuses_escapes(tmp_path: Path, parts: tuple[str, ...]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link-out").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="escapes"):
        contained(root, *parts)


def test_contained_accepts_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert contained(tmp_path / "alias", "x") == real / "x"


def test_early_writeback_asks_the_kernel_window_by_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        calls.append((offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    data = os.urandom(10 << 20)
    path = tmp_path / "item"
    with path.open("w+b") as handle:
        sink = EarlyWriteback(handle, window=1 << 20)
        sink.seek(4096)  # leave a hole, as DeferredHeadWriter does for chunk 0
        for start in range(4096, len(data), 300_000):
            sink.write(data[start : start + 300_000])
        assert sink.tell() == len(data)
        sink.seek(0)
        sink.write(data[:4096])
    assert path.read_bytes() == data
    assert len(calls) == 8  # each 4th write of 300,000 bytes passes 1 MiB (35 writes)
    assert all(length > 0 for _, length in calls)  # never 0, which would mean "to the end"
    assert calls[0][0] == 0
    for (start, length), (next_start, _) in itertools.pairwise(calls):
        # Each request covers the previous window again (now written back: dropped) and the new
        # one (written back from now on): consecutive requests overlap, leaving no gap.
        assert start <= next_start < start + length
    assert calls[-1][0] + calls[-1][1] <= len(data)


def _spy_datasync(monkeypatch: pytest.MonkeyPatch, error: OSError | None = None) -> list[int]:
    """Record the descriptors ``os.fdatasync`` is called on (really calling it, or raising)."""
    calls: list[int] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        calls.append(fd)
        if error is not None:
            raise error
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    return calls


def test_early_writeback_flushes_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy_datasync(monkeypatch)
    data = os.urandom(12 << 20)
    path = tmp_path / "item"
    with path.open("w+b") as handle:
        sink = EarlyWriteback(handle, window=1 << 20, flush_window=2 << 20)
        for start in range(0, len(data), 1 << 18):
            sink.write(data[start : start + (1 << 18)])
        sink.fsync()
        assert calls, "no early flush for 12 MiB with a 2 MiB flush window"
        # Never more than one at a time, so at most one per flush window.
        assert len(calls) <= len(data) // (2 << 20)
        # Each on a descriptor of its own, closed once flushed (so closing the file never
        # races a flush).
        assert handle.fileno() not in calls
        mine = os.fstat(handle.fileno())
        for fd in calls:
            with contextlib.suppress(OSError):  # closed: as it should be
                assert not os.path.samestat(os.fstat(fd), mine), f"descriptor {fd} left open"
    assert path.read_bytes() == data


def test_an_early_flush_error_is_raised_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel reports a writeback error once per open file: if the early flush sees it,
    the final fsync may not, so the writer raises it itself."""
    calls = _spy_datasync(monkeypatch, OSError(5, "Input/output error"))
    with (tmp_path / "item").open("w+b") as handle:
        sink = EarlyWriteback(handle, window=1 << 20, flush_window=1 << 20)
        sink.write(bytes(1 << 20))
        with pytest.raises(OSError, match="Input/output"):
            sink.fsync()
    assert calls


def _flush_four_mib(path: Path) -> None:
    with path.open("w+b") as handle:
        sink = EarlyWriteback(handle, window=1 << 20, flush_window=1 << 20)
        for _ in range(4):
            sink.write(bytes(1 << 20))
        sink.fsync()


def test_a_forked_child_gets_a_flush_thread_of_its_own(tmp_path: Path) -> None:
    """Gunicorn forks its workers: the parent's flush thread does not exist in a child, and a
    flush queued for it would never run (the child's fsync would wait for ever)."""
    _flush_four_mib(tmp_path / "parent")  # the parent's thread now exists
    in_forked_child(lambda: _flush_four_mib(tmp_path / "child"))
    assert (tmp_path / "child").stat().st_size == 4 << 20
