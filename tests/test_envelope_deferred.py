"""DeferredHeadWriter (the Writer with its head sealed last, into chunk 0) and the size
arithmetic of age files."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest

from app.crypto import X25519Identity, encrypt
from app.crypto.envelope import (
    PIPELINE_CHUNKS,
    DeferredHeadWriter,
    ciphertext_size,
    largest_plain_size,
)
from app.crypto.stream import CHUNK_SIZE, ENC_CHUNK_SIZE, TAG_SIZE
from app.server.pools import seal_pool
from tests.helpers import decrypt_bytes, in_forked_child
from tests.store_helpers import age_decrypt, decrypt_path, identity_file

C = CHUNK_SIZE
P = ParamSpec("P")
T = TypeVar("T")
HEADS = [1, 1536, C]
# Body sizes relative to where chunk 0 (head + first body bytes) ends.
BODIES = {
    "empty": lambda h: 0,
    "one": lambda h: 1,
    "chunk0_minus_1": lambda h: C - h - 1,
    "chunk0_exact": lambda h: C - h,
    "chunk0_plus_1": lambda h: C - h + 1,
    "two_chunks": lambda h: 2 * C - h,
    "three_chunks_plus_1": lambda h: 3 * C - h + 1,
}
TAILS = [0, 1, 70000]
CASES = [
    pytest.param(h, BODIES[b](h), t, id=f"head{h}-{b}-tail{t}")
    for h in HEADS
    for b in BODIES
    for t in TAILS
    if BODIES[b](h) >= 0
]


def _write_in_pieces(writer: DeferredHeadWriter, data: bytes, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - piece sizes, reproducible on purpose
    view, pos = memoryview(data), 0
    while pos < len(data):
        step = rng.choice([0, 1, 15, rng.randrange(1, 3 * C)])
        assert writer.write(view[pos : pos + step]) == len(view[pos : pos + step])
        pos += step


@pytest.mark.parametrize(("head_size", "body_size", "tail"), CASES)
def test_round_trip(
    tmp_path: Path, keypair: X25519Identity, head_size: int, body_size: int, tail: int
) -> None:
    head, body = os.urandom(head_size), os.urandom(body_size)
    path = tmp_path / "item.age"
    with path.open("w+b") as handle:
        writer = DeferredHeadWriter(handle, [keypair.recipient], head_size)
        _write_in_pieces(writer, body, seed=head_size + body_size + tail)
        assert writer.body_size == body_size
        total = writer.finish(head, [bytes(tail)])
    plain = head + body + bytes(tail)
    assert total == path.stat().st_size == ciphertext_size(writer.header_size, len(plain))
    assert decrypt_path(path, keypair) == plain
    assert age_decrypt(path, identity_file(tmp_path, keypair)) == plain


@pytest.mark.parametrize("head_size", [0, -1, C + 1])
def test_head_must_fit_in_chunk_zero(keypair: X25519Identity, head_size: int) -> None:
    with pytest.raises(ValueError, match="first chunk"):
        DeferredHeadWriter(io.BytesIO(), [keypair.recipient], head_size)


@pytest.mark.parametrize("wrong", [0, 99, 101])
def test_head_must_have_the_announced_length(keypair: X25519Identity, wrong: int) -> None:
    writer = DeferredHeadWriter(io.BytesIO(), [keypair.recipient], 100)
    writer.write(b"body")
    with pytest.raises(ValueError, match="announced length"):
        writer.finish(bytes(wrong))


def _header_size(recipients: int) -> int:
    out = io.BytesIO()
    keys = [X25519Identity.generate().recipient for _ in range(recipients)]
    encrypt(io.BytesIO(b""), out, keys)
    return len(out.getvalue()) - TAG_SIZE  # all but the empty last chunk's tag


@pytest.mark.parametrize("recipients", [1, 2, 3])
@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 2 * C, 2 * C + 1, 5 * C - 7])
def test_ciphertext_size_matches_encrypt(recipients: int, size: int) -> None:
    keys = [X25519Identity.generate().recipient for _ in range(recipients)]
    out = io.BytesIO()
    encrypt(io.BytesIO(os.urandom(size)), out, keys)
    assert len(out.getvalue()) == ciphertext_size(_header_size(recipients), size)


HEADER_SIZES = [0, 184, 282, 1000]
BOUNDARY_SIZES = sorted(
    {k * C + d for k in range(5) for d in range(-20, 21)} - {-i for i in range(1, 21)}
)


@pytest.mark.parametrize("header", HEADER_SIZES)
def test_largest_plain_size_inverts_ciphertext_size(header: int) -> None:
    for size in BOUNDARY_SIZES:
        assert largest_plain_size(header, ciphertext_size(header, size)) == size, size


@pytest.mark.parametrize("header", HEADER_SIZES)
def test_largest_plain_size_always_fits(header: int) -> None:
    for k in range(5):
        for limit in range(header + k * ENC_CHUNK_SIZE - 40, header + k * ENC_CHUNK_SIZE + 40):
            if limit < header + TAG_SIZE:
                continue  # not even an empty file fits
            plain = largest_plain_size(header, limit)
            assert ciphertext_size(header, plain) <= limit, limit


@pytest.mark.parametrize(
    "past_full_chunks",
    [0, 17, 18, 100, ENC_CHUNK_SIZE - 1] + [pytest.param(r) for r in (1, 2, 8, 15)] + [16],
)
@pytest.mark.parametrize("header", HEADER_SIZES)
def test_largest_plain_size_is_the_largest(header: int, past_full_chunks: int) -> None:
    for chunks in (1, 2, 7):
        limit = header + chunks * ENC_CHUNK_SIZE + past_full_chunks
        plain = largest_plain_size(header, limit)
        assert ciphertext_size(header, plain) <= limit
        assert ciphertext_size(header, plain + 1) > limit, (limit, plain)


@pytest.mark.parametrize("piece", [PIPELINE_CHUNKS * C - 1, PIPELINE_CHUNKS * C, 3 << 20])
def test_big_pieces_go_through_the_pipeline(
    tmp_path: Path, keypair: X25519Identity, piece: int
) -> None:
    """Pieces of PIPELINE_CHUNKS chunks or more are sealed and written on the caller's pool."""
    body = os.urandom(4 * piece + 12345)
    path = tmp_path / "item.age"
    with path.open("w+b") as handle:
        writer = DeferredHeadWriter(handle, [keypair.recipient], 512, pool=seal_pool())
        for start in range(0, len(body), piece):
            writer.write(body[start : start + piece])
        writer.finish(bytes(512), [bytes(1000)])
    assert decrypt_path(path, keypair) == bytes(512) + body + bytes(1000)


class _FailingFile(io.BytesIO):
    """Accepts ``limit`` bytes, then fails like a full disk."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: object) -> int:
        if self.tell() > self.limit:
            raise OSError(28, "No space left on device")
        return super().write(data)  # type: ignore[arg-type]


def test_a_failed_write_on_the_pool_is_raised(keypair: X25519Identity) -> None:
    writer = DeferredHeadWriter(_FailingFile(5 << 20), [keypair.recipient], 512, pool=seal_pool())

    def fill() -> None:
        for _ in range(8):
            writer.write(bytes(1 << 20))
        writer.finish(bytes(512))

    with pytest.raises(OSError, match="No space left"):
        fill()
    writer.wait()  # raised once, then nothing is pending


class _Retaining(ThreadPoolExecutor):
    """A pool that keeps every task it was given, as a ThreadPoolExecutor thread may for a
    moment: it drops a task only after setting its result, so the caller may already be on."""

    def __init__(self) -> None:
        super().__init__(2)
        self.kept: list[object] = []

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        self.kept.append(fn)
        return super().submit(fn, *args, **kwargs)


def test_no_buffer_a_pool_task_may_still_hold_is_resized(keypair: X25519Identity) -> None:
    """Seen under load (load average 20) with the writer before the one Writer: a pool thread
    still held its finished sealing task, and so a view of the writer's pending bytes, when the
    writer resized them: BufferError, and the upload failed."""
    body = os.urandom(4 * (PIPELINE_CHUNKS * C + 100))
    out = io.BytesIO()
    with _Retaining() as pool:
        writer = DeferredHeadWriter(out, [keypair.recipient], 512, pool=pool)
        for start in range(0, len(body), PIPELINE_CHUNKS * C + 100):
            writer.write(body[start : start + PIPELINE_CHUNKS * C + 100])
        writer.finish(bytes(512))
    assert pool.kept  # the pool did seal and write
    assert decrypt_bytes(out.getvalue(), [keypair]) == bytes(512) + body


def test_a_forked_child_gets_a_pool_of_its_own(keypair: X25519Identity) -> None:
    """Gunicorn forks its workers: a batch queued for the parent's pool threads, which do not
    exist in the child, would never be sealed."""

    def big_item() -> None:
        writer = DeferredHeadWriter(io.BytesIO(), [keypair.recipient], 512, pool=seal_pool())
        for _ in range(4):
            writer.write(bytes(PIPELINE_CHUNKS * C))
        writer.finish(bytes(512))

    big_item()  # the parent's pool now has its threads
    in_forked_child(big_item)
