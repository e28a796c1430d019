"""From a source's codename to the keys the server may hold while the source is logged in.

One Argon2id run per login over the normalised codename, salted with a value derived from the
instance-wide pepper (a random secret kept in a file, never in the database), gives a 32-byte
master secret. HKDF-SHA-256 with distinct labels splits it into:

- the *source id*, the only thing stored to find a source again (hex, 64 characters);
- the 32-byte seed of the source's post-quantum *reply identity*, an age hybrid identity
  (``AGE-SECRET-KEY-PQ-1…``, ML-KEM-768 with X25519; age expands the seed with SHAKE256):
  replies are encrypted to its recipient, and only someone holding the codename (and the
  pepper) can recompute the identity to read them;
- the scalar of the source's *classic reply identity*, X25519, the reply key of every source
  before hybrid keys (label V1): a source created then keeps it on the server until its next
  login, when the server stores the hybrid recipient instead; the session keeps both
  identities, so replies written to the old key still open.

Without the pepper a stolen database cannot be used to test guesses at all; with it, each guess
costs one Argon2id run on top of the codename's ~90 bits.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from hashlib import sha256

from app.crypto.header import hkdf
from app.crypto.hybrid import HybridIdentity
from app.crypto.recipients import X25519Identity

SALT_LABEL_V1 = b"TIPBOX_CODENAME_SALT_V1"
SOURCE_ID_LABEL_V1 = b"TIPBOX_SOURCE_ID_V1"
REPLY_KEY_LABEL_V1 = b"TIPBOX_REPLY_KEY_V1"  # the classic (X25519) reply key
HYBRID_REPLY_KEY_LABEL_V1 = b"TIPBOX_HYBRID_REPLY_KEY_V1"
PEPPER_SIZE = 32
DEFAULT_OPSLIMIT = 3
DEFAULT_MEMLIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class KdfCost:
    """Argon2id cost: passes and memory in bytes (config, so tests can lower them)."""

    opslimit: int = DEFAULT_OPSLIMIT
    memlimit: int = DEFAULT_MEMLIMIT


@dataclass(frozen=True)
class SourceKeys:
    """What a login yields: the lookup id and the reply identities (hybrid, and classic)."""

    source_id: str
    reply_identity: HybridIdentity
    classic_reply_identity: X25519Identity


def derive_source_keys(normalised_codename: str, pepper: bytes, cost: KdfCost) -> SourceKeys:
    """Run the one slow derivation of a login (normalise the codename first)."""
    if len(pepper) < 16:
        raise ValueError("the pepper must be at least 16 bytes")
    # Imported here: the air-gapped commands never derive, and PyNaCl costs 50 ms to import.
    from nacl import pwhash

    salt = hmac.new(pepper, SALT_LABEL_V1, sha256).digest()[: pwhash.argon2id.SALTBYTES]
    master = pwhash.argon2id.kdf(
        32,
        normalised_codename.encode("utf-8"),
        salt,
        opslimit=cost.opslimit,
        memlimit=cost.memlimit,
    )
    source_id = hkdf(master, b"", SOURCE_ID_LABEL_V1).hex()
    reply = HybridIdentity(hkdf(master, b"", HYBRID_REPLY_KEY_LABEL_V1))
    classic = X25519Identity(hkdf(master, b"", REPLY_KEY_LABEL_V1))
    return SourceKeys(source_id, reply, classic)
