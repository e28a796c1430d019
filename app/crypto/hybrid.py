"""age's post-quantum hybrid recipient type, ``mlkem768x25519`` (ML-KEM-768 with X25519).

Construction (c2sp.org/age, "The MLKEM768-X25519 hybrid post-quantum recipient type")::

    identity  = 32 random bytes, Bech32 "AGE-SECRET-KEY-PQ-1…" (uppercase)
    recipient = the HPKE MLKEM768-X25519 public key of the identity (1216 bytes),
                Bech32 "age1pq1…" (lowercase)
    stanza    = "-> mlkem768x25519 <enc, base64>" then the body, where
                enc, body = HPKE SealBase(pkR = recipient, aad = "", plaintext = file key,
                                          info = "age-encryption.org/mlkem768x25519")

with the KEM, KDF and AEAD of :mod:`app.crypto.hpke` (X-Wing, HKDF-SHA256, ChaCha20Poly1305).
The stanza is ignored unless its type is exactly ``mlkem768x25519``; otherwise anything but one
canonical 1120-byte enc, a 32-byte body, or an X25519 half that gives the all-zero value is a
:class:`HeaderError`, and a body that fails authentication is simply not for this identity.
A file should not be encrypted to this type and a classical one at once (the classical key would
decide its strength): :attr:`HybridRecipient.labels` carries age's ``postquantum`` label so that
the writer refuses the mix, as age does.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from app.crypto import bech32, hpke
from app.crypto.header import Stanza, b64decode, b64encode
from app.crypto.recipients import FILE_KEY_SIZE
from app.errors import HeaderError, KeyFormatError

HYBRID_TAG = "mlkem768x25519"
HYBRID_LABEL = b"age-encryption.org/mlkem768x25519"
RECIPIENT_HRP = "age1pq"
RECIPIENT_PREFIX = RECIPIENT_HRP + "1"
IDENTITY_HRP = "age-secret-key-pq-"
POSTQUANTUM = "postquantum"
_BODY_SIZE = FILE_KEY_SIZE + 16


def _decode(text: str, hrp: str, size: int, kind: str, example: str) -> bytes:
    try:
        found, data = bech32.decode(text)
    except KeyFormatError as exc:
        raise KeyFormatError(f"not a valid age {kind}: {exc}") from None
    if found != hrp or len(data) != size:
        raise KeyFormatError(f"not a valid age {kind} (expected '{example}')")
    return data


class HybridRecipient:
    """A post-quantum public key, ``age1pq1…``: anyone can encrypt to it."""

    labels = frozenset({POSTQUANTUM})

    def __init__(self, public: bytes) -> None:
        if len(public) != hpke.PUBLIC_SIZE:
            raise KeyFormatError("a hybrid recipient is 1216 bytes")
        if not hpke.is_valid_public(public):
            # Fail at parse time, not on the first tip: a malformed ML-KEM key or a low-order
            # X25519 point can never be encrypted to.
            raise KeyFormatError("not a valid age hybrid recipient: bad public key")
        self.public = public
        self._text = ""  # its Bech32 form, made once: ~1,960 characters, compared per item

    @classmethod
    def parse(cls, text: str) -> HybridRecipient:
        """Parse an ``age1pq1…`` string; raise :class:`KeyFormatError` if it is not one."""
        text = text.strip()
        if text.lower() != text:
            raise KeyFormatError("a recipient is written in lowercase")
        return cls(_decode(text, RECIPIENT_HRP, hpke.PUBLIC_SIZE, "recipient", "age1pq1…"))

    def __str__(self) -> str:
        if not self._text:
            self._text = bech32.encode(RECIPIENT_HRP, self.public)
        return self._text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HybridRecipient) and other.public == self.public

    def __hash__(self) -> int:
        return hash(self.public)

    def wrap(self, file_key: bytes) -> Stanza:
        """Wrap ``file_key`` to this key with a fresh encapsulation."""
        shared, enc = hpke.encapsulate(self.public)
        key, nonce = hpke.key_schedule(shared, HYBRID_LABEL)
        body = ChaCha20Poly1305(key).encrypt(nonce, file_key, b"")
        return Stanza(HYBRID_TAG, (b64encode(enc),), body)


class HybridIdentity:
    """A post-quantum secret key, ``AGE-SECRET-KEY-PQ-1…``: a 32-byte seed."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != hpke.SEED_SIZE:
            raise KeyFormatError("a hybrid identity is 32 bytes")
        self._seed = bytes(seed)
        self._keys = hpke.expand(self._seed)
        self.recipient = HybridRecipient(self._keys.public)

    @classmethod
    def generate(cls) -> HybridIdentity:
        """A new random identity."""
        return cls(os.urandom(hpke.SEED_SIZE))

    @classmethod
    def parse(cls, text: str) -> HybridIdentity:
        """Parse an ``AGE-SECRET-KEY-PQ-1…`` string; raise :class:`KeyFormatError` otherwise."""
        text = text.strip()
        if text.upper() != text:
            raise KeyFormatError("an identity is written in uppercase")
        return cls(_decode(text, IDENTITY_HRP, hpke.SEED_SIZE, "identity", "AGE-SECRET-KEY-PQ-1…"))

    def secret_bytes(self) -> bytes:
        """The raw 32-byte seed."""
        return self._seed

    def __str__(self) -> str:
        return bech32.encode(IDENTITY_HRP, self._seed).upper()

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key if ``stanza`` was wrapped to this identity, else ``None``."""
        if stanza.tag != HYBRID_TAG:
            return None
        if len(stanza.args) != 1:
            raise HeaderError("invalid mlkem768x25519 stanza: wrong number of arguments")
        enc = b64decode(stanza.args[0])
        if len(enc) != hpke.ENC_SIZE:
            raise HeaderError("invalid mlkem768x25519 stanza: wrong enc size")
        # Checked before any decryption: a partitioning oracle needs bodies of other sizes.
        if len(stanza.body) != _BODY_SIZE:
            raise HeaderError("invalid mlkem768x25519 stanza: wrong file key size")
        try:
            shared = hpke.decapsulate(self._keys, enc)
        except hpke.LowOrderError:
            raise HeaderError("invalid mlkem768x25519 stanza: low-order X25519 share") from None
        key, nonce = hpke.key_schedule(shared, HYBRID_LABEL)
        try:
            return ChaCha20Poly1305(key).decrypt(nonce, stanza.body, b"")
        except InvalidTag:
            return None
