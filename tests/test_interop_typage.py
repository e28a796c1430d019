"""Interoperability with typage (npm ``age-encryption``, by age's author): hybrid and X25519 files,
binary and armored, each side reads what the other writes.

typage is pinned in tests/node/package.json and installed by ``npm ci --prefix tests/node`` (make
test does it); tests/node/typage.mjs is the small command line the tests drive it through.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from app.crypto import decrypt
from app.crypto.armor import ArmorWriter, dearmor
from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import KeyIdentity, parse_identity, parse_recipient
from app.crypto.recipients import X25519Identity
from app.errors import CryptoError
from tests.helpers import decrypt_bytes, encrypt_bytes, run

NODE = Path(__file__).parent / "node"
TYPAGE = NODE / "node_modules" / "age-encryption"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is required")

C = 64 * 1024
SIZES = [
    pytest.param(0, id="empty"),
    pytest.param(1, id="1 byte"),
    pytest.param(C, id="64 KiB"),
    pytest.param(C + 1, id="64 KiB + 1"),
    pytest.param(10 << 20, id="10 MiB", marks=pytest.mark.slow),
]
KINDS = ["hybrid", "x25519"]


def typage(*args: str, stdin: bytes = b"") -> bytes:
    """Run tests/node/typage.mjs; return its output (it must succeed)."""
    assert TYPAGE.is_dir(), "typage is missing: npm ci --prefix tests/node (make test does it)"
    proc = run(["node", "typage.mjs", *args], NODE, stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _ours(kind: str, count: int) -> list[KeyIdentity]:
    make = HybridIdentity.generate if kind == "hybrid" else X25519Identity.generate
    return [make() for _ in range(count)]


def _theirs(kind: str, count: int) -> list[tuple[str, str]]:
    """``count`` (identity, recipient) pairs made by typage."""
    return [tuple(typage("keygen", kind).decode().split()) for _ in range(count)]  # type: ignore[misc]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_typage_decrypts_ours(size: int, count: int, kind: str) -> None:
    identities = _ours(kind, count)
    data = os.urandom(size)
    ciphertext = encrypt_bytes(data, [i.recipient for i in identities])
    stanza = b"\n-> mlkem768x25519 " if kind == "hybrid" else b"\n-> X25519 "
    assert ciphertext.count(stanza) == count
    for identity in identities:  # each recipient alone
        assert typage("decrypt", str(identity), stdin=ciphertext) == data


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_we_decrypt_typage(size: int, count: int, kind: str) -> None:
    keys = _theirs(kind, count)
    data = os.urandom(size)
    ciphertext = typage("encrypt", *(r for _, r in keys), stdin=data)
    for identity, recipient in keys:
        ours = parse_identity(identity)
        assert str(ours.recipient) == recipient  # the same public key from the same secret
        assert decrypt_bytes(ciphertext, [ours]) == data


@pytest.mark.parametrize("size", [0, C + 1, 3 * C - 7])
@pytest.mark.parametrize("kind", KINDS)
def test_armor_both_ways(size: int, kind: str) -> None:
    [(identity, recipient)] = _theirs(kind, 1)
    data = os.urandom(size)
    theirs = typage("encrypt", "-a", recipient, stdin=data)
    assert theirs.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    out = io.BytesIO()
    decrypt(dearmor(io.BytesIO(theirs)), out, [parse_identity(identity)])
    assert out.getvalue() == data
    armored = io.BytesIO()
    writer = ArmorWriter(armored)
    writer.write(encrypt_bytes(data, [parse_recipient(recipient)]))
    writer.close()
    assert typage("decrypt", "-a", identity, stdin=armored.getvalue()) == data


def test_we_refuse_to_mix_but_read_mixed_files() -> None:
    """age's rule: a post-quantum file has no classical stanza, so we refuse to write one (as
    age 1.3 does; typage 0.3 does not check). A mixed file from elsewhere still opens."""
    [(hybrid_id, hybrid)], [(classic_id, classic)] = _theirs("hybrid", 1), _theirs("x25519", 1)
    with pytest.raises(CryptoError, match="cannot share a file"):
        encrypt_bytes(b"tip", [parse_recipient(hybrid), parse_recipient(classic)])
    mixed = typage("encrypt", hybrid, classic, stdin=b"tip")
    for identity in (hybrid_id, classic_id):
        assert decrypt_bytes(mixed, [parse_identity(identity)]) == b"tip"
