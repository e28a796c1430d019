"""The services' onion keys and the journalists' client-authorization keys: formats and checks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import UsageError
from app.onion.errors import OnionKeyError
from app.onion.layout import Layout

LOCKED = "_locked"  # journalist names never start with "_"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
KEY_CHARS = 52  # 32 bytes in base32, padding removed
_PUBLIC_HEADER = b"== ed25519v1-public: type0 ==\x00\x00\x00"
_SECRET_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"


def onion_address(public_key: bytes) -> str:
    """The v3 address (``….onion``) of an ed25519 public key (rend-spec-v3, section 6)."""
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + b"\x03").digest()[:2]
    return base64.b32encode(public_key + checksum + b"\x03").decode().lower() + ".onion"


def service_address(hs_dir: Path) -> str | None:
    """The address of the keys in ``hs_dir``, checked; ``None`` while tor has made none.

    :raises OnionKeyError: a key file is damaged or the two halves do not match.
    """
    from nacl.bindings import crypto_scalarmult_ed25519_base

    secret_path = hs_dir / "hs_ed25519_secret_key"
    public_path = hs_dir / "hs_ed25519_public_key"
    hint = "restore this folder from a backup (make restore); without it the address is lost"
    if not secret_path.exists():
        if public_path.exists():
            raise OnionKeyError(f"{secret_path} is missing but its public key is there", hint=hint)
        return None
    secret = secret_path.read_bytes()
    if len(secret) != 96 or not secret.startswith(_SECRET_HEADER):
        raise OnionKeyError(f"{secret_path} is damaged: it is not a v3 onion key", hint=hint)
    # The file holds tor's expanded key: a clamped scalar, then the nonce half.
    public = crypto_scalarmult_ed25519_base(secret[32:64])
    if public_path.exists() and public_path.read_bytes() != _PUBLIC_HEADER + public:
        raise OnionKeyError(f"{public_path} does not match the secret key beside it", hint=hint)
    return onion_address(public)


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class ClientKey:
    """A journalist's client-authorization key: the public half, and the private one if known."""

    name: str
    public: str
    private: str | None = field(default=None, repr=False)

    @classmethod
    def generate(cls, name: str) -> ClientKey:
        """A fresh x25519 pair."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        key = X25519PrivateKey.generate()
        private = key.private_bytes_raw()
        return cls(name, _b32(key.public_key().public_bytes_raw()), _b32(private))

    def auth_line(self) -> str:
        """The line tor reads from ``authorized_clients/NAME.auth``."""
        return f"descriptor:x25519:{self.public}"

    def auth_private_line(self, address: str) -> str:
        """The journalist's ``.auth_private`` line (tor's ClientOnionAuthDir format)."""
        if self.private is None:
            raise UsageError(f"the private key of {self.name!r} is not known here")
        return f"{address.removesuffix('.onion')}:descriptor:x25519:{self.private}"


def parse_public_key(text: str) -> str:
    """A base32 x25519 public key, bare or as ``descriptor:x25519:KEY``, normalised.

    :raises OnionKeyError: it is not 32 bytes of base32.
    """
    key = text.strip()
    key = key.removeprefix("descriptor:x25519:").strip().upper()
    try:
        raw = base64.b32decode(key + "====", casefold=False) if len(key) == KEY_CHARS else b""
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise OnionKeyError(
            "not a valid x25519 public key: expected 52 base32 characters (A-Z, 2-7)"
        )
    return key


def check_name(name: str) -> str:
    """A journalist's name as used for their key file.

    :raises UsageError: not 1 to 32 lower-case letters, digits, '-' or '_', starting with a
        letter or digit.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a valid name: use 1 to 32 lower-case letters, digits, '-' or '_'"
        )
    return name


def _read_client(path: Path) -> ClientKey:
    try:
        return ClientKey(path.stem, parse_public_key(path.read_text("ascii")))
    except (OnionKeyError, UnicodeDecodeError):
        raise OnionKeyError(
            f"{path} does not hold a valid client key",
            hint=f"remove it with 'tipbox access remove {path.stem}' and add it again",
        ) from None


def list_clients(layout: Layout) -> list[ClientKey]:
    """The journalists who hold a key to the journalist service, by name."""
    if not layout.clients_dir.is_dir():
        return []
    paths = sorted(layout.clients_dir.glob("*.auth"))
    return [_read_client(p) for p in paths if not p.stem.startswith("_")]
