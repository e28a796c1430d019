"""app.server.counters: rate-limit counters in one memory file, shared by forked workers."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.server import counters
from app.server.counters import PROBE, Counters
from tests.helpers import fork_child, in_forked_child, wait_for_child


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fd() -> Iterator[int]:
    """A counters memory file, closed afterwards."""
    fd = counters.create()
    try:
        yield fd
    finally:
        os.close(fd)


def test_a_fixed_window_counts_then_starts_again() -> None:
    clock = Clock()
    c = Counters(clock=clock)
    assert c.get("k") == (0, clock.now)
    assert [c.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert c.incr("k", 60, amount=5) == 8
    assert c.get("k") == (8, clock.now + 60)
    assert c.get("other") == (0, clock.now)
    clock.now += 59.9
    assert c.incr("k", 60) == 9
    clock.now += 0.1  # the window has ended
    assert c.get("k") == (0, clock.now)
    assert c.incr("k", 60) == 1
    assert c.get("k") == (1, clock.now + 60)


def test_clear_and_reset() -> None:
    c = Counters()
    for key in ("a", "b", "c"):
        c.incr(key, 60)
    c.clear("a")
    assert [c.get(key)[0] for key in ("a", "b", "c")] == [0, 1, 1]
    assert c.reset() == 2
    assert [c.get(key)[0] for key in ("a", "b", "c")] == [0, 0, 0]


def test_keys_are_never_stored(fd: int) -> None:
    """Only keyed digests reach the memory: not the limiter key, not the session's value."""
    key = "LIMITER/session/Zm9vYmFyYmF6cXV4/20/1/minute"
    Counters(fd).incr(key, 60)
    memory = os.pread(fd, counters.size_of(counters.SLOTS), 0)
    assert key.encode() not in memory
    assert b"Zm9vYmFyYmF6cXV4" not in memory
    assert memory.count(b"\0") > len(memory) - 100  # one slot and the header, nothing else


def test_a_full_neighbourhood_gives_up_its_lowest_count() -> None:
    """When every slot a new key may use holds a running window, the new key takes the one
    with the lowest count: a busy counter (the global limit's) is never lost."""
    clock = Clock()
    fd = counters.create(slots=PROBE)  # every key probes the whole table
    c = Counters(fd, clock)
    for _ in range(50):
        c.incr("global", 60)
    for n in range(PROBE - 1):
        c.incr(f"session{n}", 60)
        c.incr(f"session{n}", 60)
    c.incr("session0", 60)  # 3: the others have 2
    c.incr("newcomer", 60)  # the table is full: takes a count of 2, not 3, not 50
    assert c.get("global")[0] == 50
    assert c.get("session0")[0] == 3
    assert c.get("newcomer")[0] == 1
    counts = [c.get(f"session{n}")[0] for n in range(1, PROBE - 1)]
    assert sorted(counts) == [0] + [2] * (PROBE - 3)
    clock.now += 61  # every window has ended: all slots are free again
    assert c.incr("late", 60) == 1


def test_of_equal_counts_the_window_ending_first_goes() -> None:
    """A flood of new sessions (count 1 each) takes over its own oldest counters, not the
    global counter at the start of its window (count 1 too, but newer)."""
    clock = Clock()
    c = Counters(counters.create(slots=PROBE), clock)
    for n in range(PROBE - 1):
        c.incr(f"flood{n}", 60)
        clock.now += 0.01
    c.incr("global", 60)
    for n in range(PROBE - 1, 2 * PROBE - 2):
        clock.now += 0.01
        c.incr(f"flood{n}", 60)
        oldest = n - (PROBE - 1)
        assert c.get(f"flood{oldest}")[0] == 0, f"flood{n} did not take over flood{oldest}"
        assert c.get("global")[0] == 1, f"flood{n} took over the global counter"


def test_threads_of_one_worker_lose_no_count() -> None:
    c = Counters()

    def hammer() -> None:
        for _ in range(300):
            c.incr("k", 60)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert c.get("k")[0] == 8 * 300


def test_forked_workers_share_the_counts(fd: int) -> None:
    """As Gunicorn's workers do: the memory file is made before the fork, each process counts
    at the same time, and every count lands (made across processes by the file lock)."""
    c = Counters(fd)
    c.incr("k", 60)
    start = time.time() + 0.3

    def count() -> None:
        time.sleep(max(0.0, start - time.time()))
        for _ in range(400):
            c.incr("k", 60)

    pids = [fork_child(count) for _ in range(3)]
    count()
    for pid in pids:
        wait_for_child(pid, timeout=30)
    assert c.get("k")[0] == 1 + 4 * 400


def test_a_worker_killed_while_counting_does_not_wedge_the_others(fd: int) -> None:
    c = Counters(fd)

    def die_holding_the_lock() -> None:
        with c._locked():  # noqa: SLF001 - the critical section itself
            os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(AssertionError, match="failed"):
        in_forked_child(die_holding_the_lock)  # killed: exit status -9
    done = threading.Event()
    threading.Thread(target=lambda: (c.incr("k", 60), done.set()), daemon=True).start()
    assert done.wait(10), "the dead child's lock was never released"


def test_anything_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-counters"
    path.write_bytes(bytes(counters.size_of(counters.SLOTS)))
    with path.open("rb+") as handle, pytest.raises(ValueError, match="not a Tipbox counters"):
        Counters(handle.fileno())
    with pytest.raises(ValueError, match="slots"):
        counters.create(slots=PROBE - 1)


def test_take_counts_in_every_window_or_in_none() -> None:
    """One unit goes into both windows while both have room; once one is full, a refusal
    leaves the other untouched."""
    shared = Counters()
    windows = [("session", 60.0, 2), ("global", 60.0, 3)]
    assert [shared.take(windows) for _ in range(3)] == [True, True, False]
    assert shared.get("session")[0] == 2
    assert shared.get("global")[0] == 2
    assert shared.take([("other", 60.0, 2), ("global", 60.0, 3)])
    assert not shared.take([("third", 60.0, 2), ("global", 60.0, 3)])
    assert shared.get("third")[0] == 0
