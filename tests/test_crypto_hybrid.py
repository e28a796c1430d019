"""The post-quantum hybrid recipient type (mlkem768x25519): keys, stanzas and age's mixing rule.

The official vectors (tests/test_vectors.py) and typage (tests/test_interop_typage.py) check the
construction against other implementations; these check our own refusals.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from app.crypto import ScryptRecipient, Writer, X25519Identity, hpke
from app.crypto.envelope import DeferredHeadWriter
from app.crypto.header import Stanza, b64decode, b64encode
from app.crypto.hybrid import HybridIdentity, HybridRecipient
from app.crypto.keyfile import (
    contains_secret_key,
    is_post_quantum,
)
from app.crypto.recipients import Recipient
from app.errors import CryptoError, HeaderError, KeyFormatError
from tests.helpers import decrypt_bytes, encrypt_bytes

# The X25519 point of order 8 whose u-coordinate is 1 (RFC 7748's list of low-order points).
LOW_ORDER = (1).to_bytes(32, "little")


def test_round_trip_and_key_strings() -> None:
    identity = HybridIdentity.generate()
    text = str(identity)
    assert text.startswith("AGE-SECRET-KEY-PQ-1")
    assert len(text) == 77
    assert str(identity.recipient).startswith("age1pq1")
    assert HybridIdentity.parse(text).recipient == identity.recipient
    assert HybridRecipient.parse(str(identity.recipient)) == identity.recipient
    file = encrypt_bytes(b"tip", [identity.recipient])
    assert decrypt_bytes(file, [HybridIdentity.parse(text)]) == b"tip"
    assert is_post_quantum(identity.recipient)
    assert not is_post_quantum(X25519Identity.generate().recipient)


def test_secret_key_scan_finds_hybrid_keys() -> None:
    """keys/ must never hold a secret key, post-quantum ones included, in any disguise."""
    secret = str(HybridIdentity.generate())
    assert contains_secret_key(f"KEY={secret}".encode())
    assert contains_secret_key(f'"{secret.lower()}"'.encode())
    assert not contains_secret_key(secret[:-1].encode() + b"Q")  # a checksum typo: not a key


def _public_with(x25519: bytes) -> bytes:
    return HybridIdentity.generate().recipient.public[: hpke.MLKEM_PUBLIC_SIZE] + x25519


BAD_RECIPIENTS: list[tuple[Callable[[], str], str]] = [
    (lambda: str(HybridIdentity.generate().recipient).upper(), "lowercase"),
    (lambda: str(X25519Identity.generate().recipient).replace("age1", "age1pq1", 1), "age"),
    (lambda: HybridRecipient(_public_with(LOW_ORDER)).__str__(), "bad public key"),
    (lambda: HybridRecipient(b"\xff" * hpke.PUBLIC_SIZE).__str__(), "bad public key"),
    (lambda: HybridRecipient(b"\x00" * 1000).__str__(), "1216 bytes"),
]


@pytest.mark.parametrize(("make", "message"), BAD_RECIPIENTS)
def test_bad_recipients_are_refused(make: Callable[[], str], message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        HybridRecipient.parse(make())


def test_bad_identities_are_refused() -> None:
    text = str(HybridIdentity.generate())
    with pytest.raises(KeyFormatError, match="uppercase"):
        HybridIdentity.parse(text.lower())
    with pytest.raises(KeyFormatError, match="checksum"):
        HybridIdentity.parse(text[:-1] + ("Q" if text[-1] != "Q" else "P"))


def _stanza(identity: HybridIdentity) -> Stanza:
    return identity.recipient.wrap(bytes(16))


STANZA_EDITS: list[tuple[Callable[[Stanza], Stanza], str]] = [
    (lambda s: Stanza(s.tag, (*s.args, "x"), s.body), "number of arguments"),
    (lambda s: Stanza(s.tag, (b64encode(b64decode(s.args[0])[:-1]),), s.body), "enc size"),
    (lambda s: Stanza(s.tag, s.args, s.body + b"\x00"), "file key size"),
    (
        lambda s: Stanza(s.tag, (b64encode(b64decode(s.args[0])[:-32] + LOW_ORDER),), s.body),
        "low-order",
    ),
]


@pytest.mark.parametrize(("edit", "message"), STANZA_EDITS)
def test_malformed_stanzas_are_header_errors(
    edit: Callable[[Stanza], Stanza], message: str
) -> None:
    identity = HybridIdentity.generate()
    with pytest.raises(HeaderError, match=message):
        identity.unwrap(edit(_stanza(identity)))


def test_stanzas_for_others_are_not_ours() -> None:
    identity = HybridIdentity.generate()
    stanza = _stanza(identity)
    assert identity.unwrap(stanza) == bytes(16)
    assert HybridIdentity.generate().unwrap(stanza) is None
    assert identity.unwrap(Stanza("MLKEM768X25519", stanza.args, stanza.body)) is None
    assert identity.unwrap(X25519Identity.generate().recipient.wrap(bytes(16))) is None


WRITERS: list[Callable[[list[Recipient]], object]] = [
    lambda r: encrypt_bytes(b"tip", r),
    lambda r: Writer(io.BytesIO(), r),
    lambda r: DeferredHeadWriter(io.BytesIO(), r, 512),
]


@pytest.mark.parametrize("write", WRITERS)
def test_every_writer_refuses_to_mix(write: Callable[[list[Recipient]], object]) -> None:
    """age's rule: hybrid and classical recipients never share a file (whatever the order)."""
    hybrid, classic = HybridIdentity.generate().recipient, X25519Identity.generate().recipient
    for recipients in ([hybrid, classic], [classic, hybrid]):
        with pytest.raises(CryptoError, match="cannot share a file"):
            write(recipients)
    with pytest.raises(CryptoError, match="passphrase"):
        write([hybrid, ScryptRecipient("pass", 1)])
    write([hybrid, HybridIdentity.generate().recipient])  # several hybrid ones are fine
