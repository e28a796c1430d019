"""The official age conformance vectors (C2SP/CCTV), read from ../shared/age-vectors."""

from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path

import pytest

from app.crypto import ScryptIdentity, open_payload
from app.crypto.armor import ArmorReader
from app.crypto.keyfile import parse_identity
from app.crypto.recipients import Identity
from app.errors import (
    ArmorError,
    HeaderError,
    HeaderMACError,
    NoIdentityMatchError,
    PayloadError,
)
from tests.conftest import SHARED

VECTORS = SHARED / "age-vectors"
OUTCOMES = {
    ArmorError: "armor failure",
    HeaderError: "header failure",
    HeaderMACError: "HMAC failure",
    NoIdentityMatchError: "no match",
    PayloadError: "payload failure",
}


def _names() -> list[str]:
    if not VECTORS.is_dir():
        return []
    return sorted(p.name for p in VECTORS.iterdir() if p.name != "README.md")


def _parse(path: Path) -> tuple[dict[str, list[str]], bytes]:
    raw = path.read_bytes()
    head, body = raw.split(b"\n\n", 1)
    fields: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, value = line.split(": ", 1)
        fields.setdefault(key, []).append(value)
    if fields.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return fields, body


def test_vector_set_is_complete() -> None:
    """All 143 run: none needs a passphrase typed at a terminal, so none is skipped."""
    names = _names()
    assert len(names) == 143, f"expected the 143 vectors in {VECTORS}"
    kinds = {n: _parse(VECTORS / n)[0] for n in names}
    assert sum(f.get("armored") == ["yes"] for f in kinds.values()) == 33
    assert sum(n.startswith("hybrid") for n in names) == 18


@pytest.mark.parametrize("name", _names())
def test_vector(name: str) -> None:
    fields, body = _parse(VECTORS / name)
    identities: list[Identity] = [parse_identity(i) for i in fields.get("identity", [])]
    identities += [ScryptIdentity(p) for p in fields.get("passphrase", [])]
    src = io.BytesIO(body)
    # As age's own test kit does: the vector says whether the file is armored.
    readable = ArmorReader(src) if fields.get("armored") == ["yes"] else src
    released = hashlib.sha256()
    outcome = "success"
    try:
        for chunk in open_payload(readable, identities):
            released.update(chunk)
    except tuple(OUTCOMES) as exc:
        outcome = next(v for k, v in OUTCOMES.items() if isinstance(exc, k))
    assert outcome == fields["expect"][0]
    if outcome in ("success", "payload failure"):
        assert released.hexdigest() == fields["payload"][0]
