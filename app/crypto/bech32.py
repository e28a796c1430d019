"""Bech32 (BIP 173) as age uses it for keys: no length limit, one case per string."""

from __future__ import annotations

import base64
import re

from app.errors import KeyFormatError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_REVERSE = {c: i for i, c in enumerate(CHARSET)}
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CHARSET)
_TO_DIGITS = str.maketrans(CHARSET, "0123456789abcdefghijklmnopqrstuv")
_PRINTABLE = re.compile(r"[\x21-\x7e]*")
_DATA = re.compile(f"[{CHARSET}]*")
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


# What the five top bits of the checksum contribute, for each of their 32 values: one lookup per
# character instead of five tests (a hybrid recipient is about 1,960 characters long).
_TOP = [0] * 32
for _top in range(32):
    for _i, _gen in enumerate(_GENERATOR):
        if (_top >> _i) & 1:
            _TOP[_top] ^= _gen


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        chk = ((chk & 0x1FFFFFF) << 5) ^ value ^ _TOP[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _to_base32(data: bytes) -> str:
    """``data`` as 5-bit groups in Bech32's alphabet, the last one padded with zero bits."""
    return base64.b32encode(data).decode("ascii").rstrip("=").translate(_FROM_RFC4648)


def _from_base32(text: str) -> bytes:
    """The bytes of Bech32 characters (5 bits each); the leftover bits must be fewer than 5
    and all zero, as BIP 173 requires."""
    if not text:
        return b""
    bits = 5 * len(text)
    spare = bits % 8
    number = int(text.translate(_TO_DIGITS), 32)  # C speed: a recipient is ~1,950 characters
    if spare >= 5 or number & ((1 << spare) - 1):
        raise KeyFormatError("invalid key encoding: non-zero padding")
    return (number >> spare).to_bytes(bits // 8, "big")


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under the human-readable part ``hrp`` (lowercase)."""
    text = _to_base32(data)
    checksum_input = _hrp_expand(hrp) + [_REVERSE[c] for c in text] + [0] * 6
    polymod = _polymod(checksum_input) ^ 1
    checksum = "".join(CHARSET[(polymod >> 5 * (5 - i)) & 31] for i in range(6))
    return hrp + "1" + text + checksum


def decode(text: str) -> tuple[str, bytes]:
    """Return ``(hrp, data)`` from a Bech32 string, lowercased; raise on any defect."""
    if text.lower() != text and text.upper() != text:
        raise KeyFormatError("invalid key encoding: mixed case")
    if not _PRINTABLE.fullmatch(text):
        raise KeyFormatError("invalid key encoding: unexpected character")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise KeyFormatError("invalid key encoding: separator misplaced")
    hrp, rest = text[:pos], text[pos + 1 :]
    if not _DATA.fullmatch(rest):
        raise KeyFormatError("invalid key encoding: character outside Bech32")
    if _polymod(_hrp_expand(hrp) + [_REVERSE[c] for c in rest]) != 1:
        raise KeyFormatError("invalid key encoding: checksum mismatch (a typo?)")
    return hrp, _from_base32(rest[:-6])
