"""ASCII armor: what ArmorWriter writes, ArmorReader reads back, in any read size; the strict
rules themselves are the official vectors' (tests/test_vectors.py)."""

from __future__ import annotations

import io
import os

import pytest

from app.crypto import X25519Identity, decrypt
from app.crypto.armor import BEGIN, END, ArmorReader, ArmorWriter, dearmor
from app.errors import ArmorError, HeaderError
from tests.helpers import TrickleReader, encrypt_bytes

SIZES = [0, 1, 47, 48, 49, 96, 64 * 1024, 64 * 1024 + 1, 300_001]


def armor(data: bytes, pieces: int = 1) -> bytes:
    out = io.BytesIO()
    writer = ArmorWriter(out)
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
    writer.close()
    return out.getvalue()


def read_all(src: io.RawIOBase | ArmorReader | TrickleReader) -> bytes:
    out = bytearray()
    buffer = bytearray(70_000)
    while n := src.readinto(buffer):
        out += buffer[:n]
    return bytes(out)


@pytest.mark.parametrize("size", SIZES)
def test_armor_round_trip(size: int) -> None:
    data = os.urandom(size)
    text = armor(data, pieces=7)
    assert text == armor(data)  # the way writes are split changes nothing
    lines = text.split(b"\n")
    assert lines[0] == BEGIN
    assert lines[-2:] == [END, b""]
    body = lines[1:-2]
    assert all(len(line) == 64 for line in body[:-1])
    assert not body or 0 < len(body[-1]) <= 64
    assert read_all(ArmorReader(io.BytesIO(text))) == data
    assert read_all(ArmorReader(TrickleReader(text, 5))) == data
    crlf = b"  \r\n\t" + text.replace(b"\n", b"\r\n") + b"\n\n"
    assert read_all(dearmor(TrickleReader(crlf, 3))) == data


def test_dearmor_leaves_binary_files_alone() -> None:
    identity = X25519Identity.generate()
    file = encrypt_bytes(b"x" * 100_000, [identity.recipient])
    assert read_all(dearmor(TrickleReader(file, 7))) == file
    out = io.BytesIO()
    decrypt(dearmor(io.BytesIO(armor(file))), out, [identity])
    assert out.getvalue() == b"x" * 100_000


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t[: t.index(END)], "ends before"),
        (lambda t: t + b"AAAA\n", "after the END"),
        (lambda t: t.replace(b"\n", b"\n\n", 2), "malformed base64"),
        (lambda t: b"x" + t, "first line"),
    ],
)
def test_damaged_armor_is_refused(edit: object, message: str) -> None:
    text = armor(os.urandom(1000))
    with pytest.raises(ArmorError, match=message):
        read_all(ArmorReader(io.BytesIO(edit(text))))  # type: ignore[operator]


def test_garbage_before_armor_is_not_an_age_file() -> None:
    """Like age -d: leading garbage means the input is not armored, so it is no age file."""
    text = b"garbage\n" + armor(b"age-encryption.org/v1\n")
    with pytest.raises(HeaderError):
        decrypt(dearmor(io.BytesIO(text)), io.BytesIO(), [X25519Identity.generate()])
