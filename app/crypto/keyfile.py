"""Key files as age writes them: identity files, recipient files, passphrase-protected identities.

An identity file holds ``AGE-SECRET-KEY-1…`` (X25519) or ``AGE-SECRET-KEY-PQ-1…`` (hybrid) lines;
a recipient file holds ``age1…`` or ``age1pq1…`` lines; both allow ``#`` comments and blank
lines. A passphrase-protected identity is the identity file's text encrypted to a single scrypt
stanza (``age -p``), which ``age -d -i`` opens after asking for the passphrase. Everything here
works on bytes and strings; reading files is the caller's job.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable

from app.crypto import bech32
from app.crypto.envelope import decrypt, encrypt
from app.crypto.header import VERSION_LINE
from app.crypto.hybrid import HybridIdentity, HybridRecipient
from app.crypto.recipients import (
    DEFAULT_WORK_FACTOR,
    IDENTITY_HRP,
    ScryptIdentity,
    ScryptRecipient,
    X25519Identity,
    X25519Recipient,
)
from app.errors import KeyFormatError, NoIdentityMatchError, PassphraseError

KeyRecipient = X25519Recipient | HybridRecipient
KeyIdentity = X25519Identity | HybridIdentity


def _lines(text: str) -> list[tuple[int, str]]:
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


@functools.lru_cache(maxsize=1024)
def parse_recipient(text: str) -> KeyRecipient:
    """One ``age1pq1…`` (hybrid) or ``age1…`` (X25519) recipient.

    Cached: recipients are immutable values, and a bundle's manifest names the same few
    newsroom keys once per item (a hybrid one is ~1,960 characters to decode and check).
    """
    if text.strip().startswith("age1pq1"):
        return HybridRecipient.parse(text)
    return X25519Recipient.parse(text)


def parse_identity(text: str) -> KeyIdentity:
    """One ``AGE-SECRET-KEY-PQ-1…`` (hybrid) or ``AGE-SECRET-KEY-1…`` (X25519) identity."""
    if text.strip().startswith("AGE-SECRET-KEY-PQ-1"):
        return HybridIdentity.parse(text)
    return X25519Identity.parse(text)


def is_post_quantum(recipient: KeyRecipient) -> bool:
    """Whether a file encrypted to ``recipient`` stays sealed against a quantum computer."""
    return isinstance(recipient, HybridRecipient)


def parse_recipients(text: str) -> list[KeyRecipient]:
    """Every recipient in a recipients file; raise on the first bad line, naming it."""
    out = []
    for number, line in _lines(text):
        try:
            out.append(parse_recipient(line))
        except KeyFormatError as exc:
            raise KeyFormatError(f"line {number}: {exc}") from None
    if not out:
        raise KeyFormatError("no recipient found (expected lines starting with 'age1')")
    return out


def parse_identities(text: str) -> list[KeyIdentity]:
    """Every identity in an identity file; raise on the first bad line, naming it."""
    out = []
    for number, line in _lines(text):
        try:
            out.append(parse_identity(line))
        except KeyFormatError as exc:
            raise KeyFormatError(f"line {number}: {exc}") from None
    if not out:
        raise KeyFormatError("no identity found (expected lines starting with 'AGE-SECRET-KEY-')")
    return out


_SECRET_KEY = re.compile(IDENTITY_HRP + "(?:pq-)?1[" + bech32.CHARSET + "]{58}", re.IGNORECASE)


def contains_secret_key(data: bytes) -> bool:
    """Whether ``data`` holds anything that parses as an age secret key, in any case,
    even glued to other text (``KEY=AGE-SECRET-KEY-1…``, quoted, in a comment)."""
    text = data.decode("utf-8", errors="replace")
    for match in _SECRET_KEY.finditer(text):
        try:
            parse_identity(match.group().upper())
        except KeyFormatError:
            continue
        return True
    return False


def is_age_file(data: bytes) -> bool:
    """Whether ``data`` starts like an age v1 file (for example a protected identity)."""
    return data.startswith(VERSION_LINE + b"\n")


def identity_file_text(identity: KeyIdentity, created: str) -> str:
    """The text of an identity file, in age-keygen's layout."""
    return f"# created: {created}\n# public key: {identity.recipient}\n{identity}\n"


def encrypt_identity(text: str, passphrase: str, work_factor: int = DEFAULT_WORK_FACTOR) -> bytes:
    """Protect an identity file's text with a passphrase, as ``age -p`` would."""
    out = io.BytesIO()
    encrypt(io.BytesIO(text.encode("utf-8")), out, [ScryptRecipient(passphrase, work_factor)])
    return out.getvalue()


def decrypt_identity(data: bytes, passphrase: str) -> str:
    """Open a passphrase-protected identity file; raise :class:`PassphraseError` if wrong."""
    out = io.BytesIO()
    try:
        decrypt(io.BytesIO(data), out, [ScryptIdentity(passphrase)])
    except NoIdentityMatchError:
        raise PassphraseError("wrong passphrase for the identity file") from None
    return out.getvalue().decode("utf-8")


def load_identities(data: bytes, passphrase: Callable[[], str] | None = None) -> list[KeyIdentity]:
    """Identities from an identity file's bytes; ``passphrase()`` is asked only if protected."""
    if is_age_file(data):
        if passphrase is None:
            raise PassphraseError("the identity file is passphrase-protected")
        return parse_identities(decrypt_identity(data, passphrase()))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFormatError("the identity file is not text") from None
    return parse_identities(text)
