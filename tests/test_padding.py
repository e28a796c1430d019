"""Size buckets: every scheme pads up, never by more than it promises, into few distinct sizes."""

from __future__ import annotations

import random

import pytest

from app.padding import STEPS, bucket

SIZES = [0, 1, 1023, 1024, 1025, 4095, 4096, 4097, 65_536, 70_000, 10**6, (1 << 30) + 1536]


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("size", SIZES)
def test_pads_up_within_the_promised_overhead(size: int, steps: int) -> None:
    padded = bucket(size, 1024, steps)
    assert padded >= max(size, 1024)
    assert bucket(padded, 1024, steps) == padded  # a bucket holds its own size
    if size > 1024:
        assert padded - size < size / steps


@pytest.mark.parametrize("steps", STEPS)
def test_buckets_per_doubling(steps: int) -> None:
    """Between two powers of two there are exactly ``steps`` buckets, evenly spaced."""
    low = 1 << 20
    sizes = {bucket(size, 1024, steps) for size in range(low + 1, 2 * low + 1, 997)}
    sizes.add(bucket(2 * low, 1024, steps))
    assert sorted(sizes) == [low + low * k // steps for k in range(1, steps + 1)]


def test_powers_of_two_with_one_step() -> None:
    rng = random.Random(7)  # noqa: S311 (sizes to test, not secrets)
    for size in [rng.randrange(1025, 1 << 32) for _ in range(1000)]:
        padded = bucket(size)
        assert padded & (padded - 1) == 0
        assert padded // 2 < size <= padded


def test_monotonic() -> None:
    for steps in STEPS:
        previous = 0
        for size in range(0, 70_000, 37):
            padded = bucket(size, 1024, steps)
            assert padded >= previous
            previous = padded


def test_minimum_hides_small_sizes() -> None:
    assert {bucket(size, 4096, 4) for size in range(4097)} == {4096}


@pytest.mark.parametrize("steps", [0, 3, 5, 64, -1])
def test_bad_steps(steps: int) -> None:
    with pytest.raises(ValueError, match="steps must be one of"):
        bucket(5000, 1024, steps)
