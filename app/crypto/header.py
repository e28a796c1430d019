"""The age v1 header: version line, recipient stanzas, and the HMAC that seals them.

Parsing is strict on purpose (canonical base64, LF only, 64-column bodies): a lax parser is how
two implementations come to disagree about what a file says.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import HeaderError, HeaderMACError, UnsupportedVersionError

VERSION_LINE = b"age-encryption.org/v1"
HEADER_MAC_LABEL = b"header"
COLUMNS = 64
MAX_HEADER_BYTES = 1 << 20
MAX_STANZAS = 1000
_ARG = re.compile(rb"[\x21-\x7e]+")
_B64 = re.compile(r"[A-Za-z0-9+/]*")


def b64encode(data: bytes) -> str:
    """Standard base64 without padding, as age writes it."""
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Decode unpadded canonical base64 or raise :class:`HeaderError`."""
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise HeaderError("malformed base64 in the header")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise HeaderError("malformed base64 in the header") from None
    if b64encode(data) != text:
        raise HeaderError("non-canonical base64 in the header")
    return data


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA-256, the only KDF age uses besides scrypt."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: a type tag, its arguments and the wrapped file key."""

    tag: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        """Serialise the stanza, body wrapped at 64 columns with a final short line."""
        line = " ".join(("->", self.tag, *self.args)).encode("ascii")
        text = b64encode(self.body)
        rows = [text[i : i + COLUMNS] for i in range(0, len(text), COLUMNS)]
        if not rows or len(rows[-1]) == COLUMNS:
            rows.append("")
        return line + b"\n" + "".join(r + "\n" for r in rows).encode("ascii")


class LineSource(Protocol):
    """What the header parser reads from: whole lines, LF included."""

    def readline(self, limit: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Header:
    """A parsed header; ``sealed`` is the exact bytes the MAC covers."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    sealed: bytes

    def verify(self, file_key: bytes) -> None:
        """Check the header MAC under ``file_key``; raise :class:`HeaderMACError`."""
        if not hmac.compare_digest(header_mac(file_key, self.sealed), self.mac):
            raise HeaderMACError()


def header_mac(file_key: bytes, sealed: bytes) -> bytes:
    """HMAC-SHA-256 of the header up to and including ``---``."""
    return hmac.new(hkdf(file_key, b"", HEADER_MAC_LABEL), sealed, sha256).digest()


def encode_header(file_key: bytes, stanzas: Sequence[Stanza]) -> bytes:
    """Return the complete header, MAC line included."""
    sealed = VERSION_LINE + b"\n" + b"".join(s.encode() for s in stanzas) + b"---"
    return sealed + b" " + b64encode(header_mac(file_key, sealed)).encode("ascii") + b"\n"


def _read_line(src: LineSource, budget: list[int]) -> bytes:
    line = src.readline(budget[0] + 1)
    budget[0] -= len(line)
    if budget[0] < 0:
        raise HeaderError("the header is too large")
    if not line.endswith(b"\n"):
        raise HeaderError("the header ends early: the file is truncated or not an age file")
    return line[:-1]


def _parse_stanza(line: bytes, src: LineSource, budget: list[int]) -> Stanza:
    parts = line.split(b" ")
    if parts[0] != b"->" or len(parts) < 2 or not all(_ARG.fullmatch(p) for p in parts[1:]):
        raise HeaderError("malformed recipient stanza")
    args = tuple(p.decode("ascii") for p in parts[1:])
    rows: list[str] = []
    while True:
        row = _read_line(src, budget)
        if len(row) > COLUMNS:
            raise HeaderError("malformed recipient stanza body: line too long")
        try:
            rows.append(row.decode("ascii"))
        except UnicodeDecodeError:
            raise HeaderError("malformed recipient stanza body") from None
        if len(row) < COLUMNS:
            break
    return Stanza(args[0], args[1:], b64decode("".join(rows)))


def parse_header(src: LineSource) -> Header:
    """Read and parse a header from ``src``, leaving it positioned at the payload nonce."""
    budget = [MAX_HEADER_BYTES]
    first = src.readline(len(VERSION_LINE) + 1)
    if not first:
        raise HeaderError("the file is empty")
    if first.rstrip(b"\n") != VERSION_LINE:
        if first.startswith(b"age-encryption.org/"):
            raise UnsupportedVersionError()
        if first.startswith(b"-----BEGIN AGE"):
            raise HeaderError("ASCII-armored age files are not supported; use 'age -d' first")
        raise HeaderError()
    if not first.endswith(b"\n"):
        raise HeaderError("the header ends early: the file is truncated or not an age file")
    sealed = [first]
    stanzas: list[Stanza] = []
    while True:
        line = _read_line(src, budget)
        if line.startswith(b"---"):
            if not line.startswith(b"--- ") or len(line) != 4 + 43:
                raise HeaderError("malformed header MAC line")
            sealed.append(b"---")
            return Header(tuple(stanzas), b64decode(line[4:].decode("ascii")), b"".join(sealed))
        if len(stanzas) >= MAX_STANZAS:
            raise HeaderError("too many recipient stanzas")
        sealed.append(line + b"\n")
        stanzas.append(_parse_stanza(line, _Recorder(src, sealed), budget))


class _Recorder:
    """Passes lines through while keeping a copy, so the MAC covers exactly what was read."""

    def __init__(self, src: LineSource, sink: list[bytes]) -> None:
        self._src = src
        self._sink = sink

    def readline(self, limit: int = -1, /) -> bytes:
        line = self._src.readline(limit)
        self._sink.append(line)
        return line
