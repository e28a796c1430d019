"""app.server.writeback.EarlyWriteback: ciphertext reaches the disk as an upload streams."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

import pytest

from app.server.writeback import EarlyWriteback
from tests.helpers import in_forked_child


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
