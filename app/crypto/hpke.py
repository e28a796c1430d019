"""HPKE base mode (RFC 9180) with the MLKEM768-X25519 hybrid KEM, as age's hybrid recipient uses it.

The KEM is X-Wing as specified for HPKE (c2sp.org/hpke-hybrids, draft-ietf-hpke-pq-03)::

    expand(seed)   = SHAKE256(seed, 96): bytes 0..64 are the ML-KEM-768 seed (d || z),
                     bytes 64..96 the X25519 scalar
    public key     = ML-KEM encapsulation key (1184) || X25519 public key (32)      = 1216 bytes
    encapsulate    = ss_PQ, ct_PQ = ML-KEM.Encaps(ek_PQ); ct_T = X25519(e, G);
                     ss_T = X25519(e, ek_T)
    enc            = ct_PQ (1088) || ct_T (32)                                       = 1120 bytes
    shared secret  = SHA3-256(ss_PQ || ss_T || ct_T || ek_T || "\\.//^\\")

The key schedule is HPKE's, mode_base (0x00), suite KEM 0x647a, KDF HKDF-SHA256 (0x0001), AEAD
ChaCha20Poly1305 (0x0003); only the first message (sequence number 0) is ever sealed, so the AEAD
nonce is the base nonce itself. An all-zero X25519 result (a low-order ``ct_T`` or ``ek_T``)
is refused, as age requires, even though the ML-KEM half alone would still protect the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from app.errors import CryptoError

KEM_ID = 0x647A
KDF_ID = 0x0001
AEAD_ID = 0x0003
XWING_LABEL = b"\\.//^\\"
SEED_SIZE = 32
MLKEM_SEED_SIZE = 64
MLKEM_PUBLIC_SIZE = 1184
MLKEM_CT_SIZE = 1088
X25519_SIZE = 32
PUBLIC_SIZE = MLKEM_PUBLIC_SIZE + X25519_SIZE
ENC_SIZE = MLKEM_CT_SIZE + X25519_SIZE
_SUITE = (
    b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
)
_VERSION = b"HPKE-v1"
_MODE_BASE = b"\x00"


class LowOrderError(CryptoError):
    """the X25519 half of the hybrid key exchange gave the all-zero value"""


@dataclass(frozen=True)
class KeyPair:
    """A hybrid decapsulation key expanded from its 32-byte seed, and its public key."""

    mlkem: MLKEM768PrivateKey
    x25519: X25519PrivateKey
    public: bytes


def expand(seed: bytes) -> KeyPair:
    """Expand a 32-byte seed into both private keys (the seed is the only stored form)."""
    if len(seed) != SEED_SIZE:
        raise ValueError("a hybrid seed is 32 bytes")
    full = hashlib.shake_256(seed).digest(MLKEM_SEED_SIZE + X25519_SIZE)
    mlkem = MLKEM768PrivateKey.from_seed_bytes(full[:MLKEM_SEED_SIZE])
    x25519 = X25519PrivateKey.from_private_bytes(full[MLKEM_SEED_SIZE:])
    public = mlkem.public_key().public_bytes_raw() + x25519.public_key().public_bytes_raw()
    return KeyPair(mlkem, x25519, public)


def _x25519(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # cryptography refuses the all-zero shared secret
        raise LowOrderError() from None


def _combine(ss_pq: bytes, ss_t: bytes, ct_t: bytes, ek_t: bytes) -> bytes:
    return hashlib.sha3_256(ss_pq + ss_t + ct_t + ek_t + XWING_LABEL).digest()


_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def is_valid_public(public: bytes) -> bool:
    """Whether ``public`` can be encrypted to: a well-formed ML-KEM encapsulation key (FIPS 203's
    modulus check) and an X25519 point that is not of low order (it gives all zeros)."""
    try:
        MLKEM768PublicKey.from_public_bytes(public[:MLKEM_PUBLIC_SIZE])
        _x25519(_PROBE, public[MLKEM_PUBLIC_SIZE:])
    except (ValueError, LowOrderError):
        return False
    return len(public) == PUBLIC_SIZE


def encapsulate(public: bytes) -> tuple[bytes, bytes]:
    """Return ``(shared secret, enc)`` for the 1216-byte hybrid public key ``public``."""
    ek_pq = MLKEM768PublicKey.from_public_bytes(public[:MLKEM_PUBLIC_SIZE])
    ek_t = public[MLKEM_PUBLIC_SIZE:]
    ss_pq, ct_pq = ek_pq.encapsulate()
    ephemeral = X25519PrivateKey.generate()
    ct_t = ephemeral.public_key().public_bytes_raw()
    ss_t = _x25519(ephemeral, ek_t)
    return _combine(ss_pq, ss_t, ct_t, ek_t), ct_pq + ct_t


def decapsulate(keys: KeyPair, enc: bytes) -> bytes:
    """The shared secret for ``enc``; a damaged ML-KEM half yields a wrong secret, not an error."""
    if len(enc) != ENC_SIZE:
        raise ValueError("a hybrid enc is 1120 bytes")
    ct_t = enc[MLKEM_CT_SIZE:]
    ss_t = _x25519(keys.x25519, ct_t)
    ss_pq = keys.mlkem.decapsulate(enc[:MLKEM_CT_SIZE])
    return _combine(ss_pq, ss_t, ct_t, keys.public[MLKEM_PUBLIC_SIZE:])


def _labeled_extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, _VERSION + _SUITE + label + ikm, hashlib.sha256).digest()


def _labeled_expand(prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + _VERSION + _SUITE + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def key_schedule(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """HPKE's base-mode key schedule: the AEAD key and base nonce for ``info``."""
    psk_id_hash = _labeled_extract(b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(b"", b"info_hash", info)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(shared_secret, b"secret", b"")
    key = _labeled_expand(secret, b"key", context, 32)
    nonce = _labeled_expand(secret, b"base_nonce", context, 12)
    return key, nonce
