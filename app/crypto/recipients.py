"""age recipient types: X25519 keys (``age1…``) and scrypt passphrases (hybrid keys: ``hybrid``).

A recipient wraps the 16-byte file key into a :class:`Stanza`; an identity unwraps it. Unwrapping
returns ``None`` when a stanza is simply not for this identity and raises :class:`HeaderError` when
a stanza of its own type is malformed, as the age reference implementation does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from app.crypto import bech32
from app.crypto.header import Stanza, b64decode, b64encode, hkdf
from app.errors import CryptoError, HeaderError, KeyFormatError

FILE_KEY_SIZE = 16
X25519_LABEL = b"age-encryption.org/v1/X25519"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"
DEFAULT_WORK_FACTOR = 18  # what `age -p` uses: about a second, 256 MiB
MAX_WORK_FACTOR = 22  # the reference decrypter's ceiling
_WORK_FACTOR = re.compile(r"[1-9][0-9]*")
_ZERO_NONCE = bytes(12)


class Recipient(Protocol):
    """Anything that can wrap a file key into a stanza."""

    def wrap(self, file_key: bytes) -> Stanza: ...


class Identity(Protocol):
    """Anything that can try to unwrap a file key from a stanza."""

    def unwrap(self, stanza: Stanza) -> bytes | None: ...


def _seal_key(key: bytes, file_key: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)


def _open_key(key: bytes, body: bytes, kind: str) -> bytes | None:
    if len(body) != FILE_KEY_SIZE + 16:
        raise HeaderError(f"invalid {kind} stanza: wrong file key size")
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


class X25519Recipient:
    """A public key, ``age1…``: anyone can encrypt to it."""

    def __init__(self, public: bytes) -> None:
        if len(public) != 32:
            raise KeyFormatError("an X25519 recipient is 32 bytes")
        self.public = public

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        """Parse an ``age1…`` string; raise :class:`KeyFormatError` if it is not one."""
        text = text.strip()
        if text.lower() != text:
            raise KeyFormatError("a recipient is written in lowercase")
        try:
            hrp, data = bech32.decode(text)
        except KeyFormatError as exc:
            raise KeyFormatError(f"not a valid age recipient: {exc}") from None
        if hrp != RECIPIENT_HRP or len(data) != 32:
            raise KeyFormatError("not a valid age recipient (expected 'age1…')")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other.public == self.public

    def __hash__(self) -> int:
        return hash(self.public)

    def wrap(self, file_key: bytes) -> Stanza:
        """Wrap ``file_key`` to this key with a fresh ephemeral share."""
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public))
        key = hkdf(shared, share + self.public, X25519_LABEL)
        return Stanza("X25519", (b64encode(share),), _seal_key(key, file_key))


class X25519Identity:
    """A secret key, ``AGE-SECRET-KEY-1…``: it opens what was encrypted to its recipient."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise KeyFormatError("an X25519 identity is 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(secret)
        self.recipient = X25519Recipient(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> X25519Identity:
        """A new random identity."""
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        """Parse an ``AGE-SECRET-KEY-1…`` string; raise :class:`KeyFormatError` otherwise."""
        text = text.strip()
        if text.upper() != text:
            raise KeyFormatError("an identity is written in uppercase")
        try:
            hrp, data = bech32.decode(text)
        except KeyFormatError as exc:
            raise KeyFormatError(f"not a valid age identity: {exc}") from None
        if hrp != IDENTITY_HRP or len(data) != 32:
            raise KeyFormatError("not a valid age identity (expected 'AGE-SECRET-KEY-1…')")
        return cls(data)

    def secret_bytes(self) -> bytes:
        """The raw 32-byte scalar."""
        return self._key.private_bytes_raw()

    def __str__(self) -> str:
        return bech32.encode(IDENTITY_HRP, self.secret_bytes()).upper()

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key if ``stanza`` was wrapped to this identity, else ``None``."""
        if stanza.tag != "X25519":
            return None
        if len(stanza.args) != 1:
            raise HeaderError("invalid X25519 stanza: wrong number of arguments")
        share = b64decode(stanza.args[0])
        if len(share) != 32:
            raise HeaderError("invalid X25519 stanza: wrong share size")
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError:
            # An all-zero shared secret: a low-order share, never produced honestly.
            raise HeaderError("invalid X25519 stanza: low-order share") from None
        key = hkdf(shared, share + self.recipient.public, X25519_LABEL)
        return _open_key(key, stanza.body, "X25519")


def _scrypt_key(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(passphrase)


class ScryptRecipient:
    """A passphrase; must be the only recipient of a file."""

    def __init__(self, passphrase: str, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        if not 1 <= work_factor <= MAX_WORK_FACTOR:
            raise KeyFormatError(f"scrypt work factor must be 1..{MAX_WORK_FACTOR}")
        self._passphrase = passphrase.encode("utf-8")
        self.work_factor = work_factor

    def wrap(self, file_key: bytes) -> Stanza:
        """Wrap ``file_key`` under a key derived from the passphrase with a fresh salt."""
        salt = os.urandom(16)
        key = _scrypt_key(self._passphrase, salt, self.work_factor)
        args = (b64encode(salt), str(self.work_factor))
        return Stanza("scrypt", args, _seal_key(key, file_key))


class ScryptIdentity:
    """A passphrase used to open a file encrypted with :class:`ScryptRecipient`."""

    def __init__(self, passphrase: str, max_work_factor: int = MAX_WORK_FACTOR) -> None:
        self._passphrase = passphrase.encode("utf-8")
        self.max_work_factor = max_work_factor

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key if the passphrase opens ``stanza``, else ``None``."""
        if stanza.tag != "scrypt":
            return None
        if len(stanza.args) != 2:
            raise HeaderError("invalid scrypt stanza: wrong number of arguments")
        salt = b64decode(stanza.args[0])
        if len(salt) != 16:
            raise HeaderError("invalid scrypt stanza: wrong salt size")
        if not _WORK_FACTOR.fullmatch(stanza.args[1]):
            raise HeaderError("invalid scrypt stanza: malformed work factor")
        work_factor = int(stanza.args[1])
        if work_factor > self.max_work_factor:
            raise HeaderError(f"scrypt work factor {work_factor} is too large to try")
        key = _scrypt_key(self._passphrase, salt, work_factor)
        return _open_key(key, stanza.body, "scrypt")


def check_mix(recipients: Sequence[Recipient]) -> None:
    """Refuse recipients that must not share a file, by age's rule: all must carry the same
    labels. A hybrid recipient is labelled ``postquantum`` and a classical one is not, so a
    file is never post-quantum in name only (its classical stanza would decide its strength)."""
    labels: set[frozenset[str]] = {getattr(r, "labels", frozenset()) for r in recipients}
    if len(labels) > 1:
        raise CryptoError(
            "post-quantum (age1pq1…) and classical (age1…) recipients cannot share a file"
        )


class Unlabelled:
    """A recipient whose labels are waived, for a file that cannot be post-quantum anyway.

    The one use: a reply to a source whose reply key is still X25519 (a source created before
    hybrid keys, not logged in since) must still open with a hybrid newsroom key. age's rule
    is there so that no file looks post-quantum while a classical key opens it; such a reply is
    classical whatever else it is encrypted to, and the journalist app says so.
    """

    labels: frozenset[str] = frozenset()

    def __init__(self, inner: Recipient) -> None:
        self.inner = inner

    def __str__(self) -> str:
        return str(self.inner)

    def wrap(self, file_key: bytes) -> Stanza:
        """The inner recipient's stanza."""
        return self.inner.wrap(file_key)


def unwrap_file_key(stanzas: Sequence[Stanza], identities: Sequence[Identity]) -> bytes | None:
    """Try every identity on every stanza; ``None`` when none matches."""
    if any(s.tag == "scrypt" for s in stanzas) and len(stanzas) != 1:
        raise HeaderError("a passphrase-encrypted file must have no other recipient")
    for identity in identities:
        for stanza in stanzas:
            file_key = identity.unwrap(stanza)
            if file_key is not None:
                return file_key
    return None
