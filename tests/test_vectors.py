"""The official age conformance vectors (C2SP/CCTV), read from ../shared/age-vectors."""

from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path

import pytest

from app.crypto import ScryptIdentity, X25519Identity, open_payload
from app.crypto.recipients import Identity
from app.errors import HeaderError, HeaderMACError, NoIdentityMatchError, PayloadError
from tests.conftest import SHARED

VECTORS = SHARED / "age-vectors"
OUTCOMES = {
    HeaderError: "header failure",
    HeaderMACError: "HMAC failure",
    NoIdentityMatchError: "no match",
    PayloadError: "payload failure",
}
SKIPPED = {
    "armor": "ASCII armor is not implemented: Tipbox never writes or stores armored files",
    "hybrid": "the post-quantum hybrid recipient (mlkem768x25519) is not implemented yet",
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


def _skip_reason(fields: dict[str, list[str]]) -> str | None:
    if fields.get("armored") == ["yes"]:
        return SKIPPED["armor"]
    if any(i.startswith("AGE-SECRET-KEY-PQ-") for i in fields.get("identity", [])):
        return SKIPPED["hybrid"]
    return None


def test_vector_set_is_complete() -> None:
    names = _names()
    assert len(names) == 143, f"expected the 143 vectors in {VECTORS}"
    skipped = [n for n in names if _skip_reason(_parse(VECTORS / n)[0])]
    assert skipped == [n for n in names if n.startswith(("armor", "hybrid"))]
    assert len(names) - len(skipped) == 92


@pytest.mark.parametrize("name", _names())
def test_vector(name: str) -> None:
    fields, body = _parse(VECTORS / name)
    reason = _skip_reason(fields)
    if reason:
        pytest.skip(f"{name}: {reason}")
    identities: list[Identity] = [X25519Identity.parse(i) for i in fields.get("identity", [])]
    identities += [ScryptIdentity(p) for p in fields.get("passphrase", [])]
    released = hashlib.sha256()
    outcome = "success"
    try:
        for chunk in open_payload(io.BytesIO(body), identities):
            released.update(chunk)
    except tuple(OUTCOMES) as exc:
        outcome = next(v for k, v in OUTCOMES.items() if isinstance(exc, k))
    assert outcome == fields["expect"][0]
    if outcome in ("success", "payload failure"):
        assert released.hexdigest() == fields["payload"][0]
