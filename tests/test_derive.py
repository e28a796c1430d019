"""app.crypto.derive: from a codename and the pepper to the source id and reply identity."""

from __future__ import annotations

import hmac
from hashlib import sha256

import pytest
from nacl import pwhash

from app.crypto import KdfCost, X25519Identity, X25519Recipient, derive_source_keys
from app.crypto.derive import (
    HYBRID_REPLY_KEY_LABEL_V1,
    REPLY_KEY_LABEL_V1,
    SALT_LABEL_V1,
    SOURCE_ID_LABEL_V1,
)
from app.crypto.header import hkdf
from app.crypto.hybrid import HybridIdentity, HybridRecipient
from app.errors import NoIdentityMatchError
from app.words import normalise_codename
from tests.helpers import decrypt_bytes, encrypt_bytes

CHEAP = KdfCost(opslimit=1, memlimit=8 * 1024 * 1024)
PEPPER = bytes(range(32))
CODENAME = "abacus zoom felt-tip yo-yo drop-down t-shirt quilt"


def test_deterministic() -> None:
    first = derive_source_keys(CODENAME, PEPPER, CHEAP)
    second = derive_source_keys(CODENAME, PEPPER, CHEAP)
    assert first.source_id == second.source_id
    assert first.reply_identity.secret_bytes() == second.reply_identity.secret_bytes()


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(
            "  ABACUS zoom\tfelt-tip  yo-yo\ndrop-down t-shirt QUILT ", id="spacing, case"
        ),
        pytest.param("ａｂａｃｕｓ zoom felt-tip yo-yo drop-down t-shirt quilt", id="fullwidth"),
        pytest.param("abácus zoom felt-tip yo-yo drop-down t-shirt quilt", id="accent"),
    ],
)
def test_same_normalised_codename_same_keys(typed: str) -> None:
    assert normalise_codename(typed) == CODENAME
    assert (
        derive_source_keys(normalise_codename(typed), PEPPER, CHEAP).source_id
        == derive_source_keys(CODENAME, PEPPER, CHEAP).source_id
    )


@pytest.mark.parametrize(
    ("codename", "pepper", "cost"),
    [
        pytest.param(CODENAME + " extra", PEPPER, CHEAP, id="other codename"),
        pytest.param(CODENAME.replace("zoom", "zoo"), PEPPER, CHEAP, id="one word differs"),
        pytest.param(CODENAME, bytes(32), CHEAP, id="other pepper"),
        pytest.param(CODENAME, PEPPER[:-1] + b"\x00", CHEAP, id="pepper last byte"),
        pytest.param(CODENAME, PEPPER, KdfCost(opslimit=2, memlimit=CHEAP.memlimit), id="ops"),
        pytest.param(CODENAME, PEPPER, KdfCost(opslimit=1, memlimit=16 << 20), id="memory"),
    ],
)
def test_any_change_gives_other_keys(codename: str, pepper: bytes, cost: KdfCost) -> None:
    base = derive_source_keys(CODENAME, PEPPER, CHEAP)
    other = derive_source_keys(codename, pepper, cost)
    assert other.source_id != base.source_id
    assert other.reply_identity.secret_bytes() != base.reply_identity.secret_bytes()


def test_matches_the_documented_construction() -> None:
    """Recomputed from the module docstring: changing any step would lock every source out."""
    salt = hmac.new(PEPPER, SALT_LABEL_V1, sha256).digest()[:16]
    master = pwhash.argon2id.kdf(
        32, CODENAME.encode(), salt, opslimit=CHEAP.opslimit, memlimit=CHEAP.memlimit
    )
    keys = derive_source_keys(CODENAME, PEPPER, CHEAP)
    assert keys.source_id == hkdf(master, b"", SOURCE_ID_LABEL_V1).hex()
    assert keys.reply_identity.secret_bytes() == hkdf(master, b"", HYBRID_REPLY_KEY_LABEL_V1)
    assert keys.classic_reply_identity.secret_bytes() == hkdf(master, b"", REPLY_KEY_LABEL_V1)
    secrets = {
        keys.source_id,
        keys.reply_identity.secret_bytes().hex(),
        keys.classic_reply_identity.secret_bytes().hex(),
    }
    assert len(secrets) == 3  # separate labels


def test_source_id_shape() -> None:
    source_id = derive_source_keys(CODENAME, PEPPER, CHEAP).source_id
    assert len(source_id) == 64
    assert int(source_id, 16) >= 0
    assert source_id == source_id.lower()
    assert CODENAME.split()[0] not in source_id


def test_reply_identity_is_a_post_quantum_age_identity() -> None:
    identity = derive_source_keys(CODENAME, PEPPER, CHEAP).reply_identity
    text = str(identity)
    assert text.startswith("AGE-SECRET-KEY-PQ-1")
    assert HybridIdentity.parse(text).secret_bytes() == identity.secret_bytes()
    recipient = HybridRecipient.parse(str(identity.recipient))
    reply = encrypt_bytes(b"thanks, we are looking into it", [recipient])
    assert decrypt_bytes(reply, [HybridIdentity.parse(text)]) == b"thanks, we are looking into it"
    other = derive_source_keys(CODENAME, bytes(32), CHEAP).reply_identity
    with pytest.raises(NoIdentityMatchError):
        decrypt_bytes(reply, [other])


def test_classic_reply_identity_still_opens_old_replies() -> None:
    """Replies written to a source's X25519 key before the upgrade open with its codename."""
    identity = derive_source_keys(CODENAME, PEPPER, CHEAP).classic_reply_identity
    assert str(identity).startswith("AGE-SECRET-KEY-1")
    recipient = X25519Recipient.parse(str(identity.recipient))
    reply = encrypt_bytes(b"an old reply", [recipient])
    assert decrypt_bytes(reply, [X25519Identity.parse(str(identity))]) == b"an old reply"


@pytest.mark.parametrize("size", [0, 1, 15])
def test_short_pepper_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="pepper"):
        derive_source_keys(CODENAME, bytes(size), CHEAP)


def test_default_cost() -> None:
    """The production cost (Argon2id, 3 passes, 64 MiB) runs and differs from the test cost."""
    assert (KdfCost().opslimit, KdfCost().memlimit) == (3, 64 * 1024 * 1024)
    first, second = (derive_source_keys(CODENAME, PEPPER, KdfCost()) for _ in range(2))
    assert first.source_id == second.source_id
    assert first.reply_identity.secret_bytes() == second.reply_identity.secret_bytes()
    assert first.source_id != derive_source_keys(CODENAME, PEPPER, CHEAP).source_id
