"""ASCII-armored age files: strict PEM (RFC 7468, Figure 3) with the label "AGE ENCRYPTED FILE".

Layout, as read and written here::

    -----BEGIN AGE ENCRYPTED FILE-----
    <padded base64 of the binary age file, 64 columns; the last line 1..64 columns>
    -----END AGE ENCRYPTED FILE-----

Lines end in LF or CRLF. Only whitespace (space, tab, CR, LF) may come before the first line and
after the last; no PEM headers, no blank or indented lines, no spaces at line ends, padding only
at the very end, canonical base64 only. Anything else is an :class:`ArmorError`: armor is
malleable unless the parser is this strict (c2sp.org/age, "ASCII armor"). Both directions stream,
a block of lines at a time, so an armored file costs no more memory than a binary one.
"""

from __future__ import annotations

import base64
import binascii
import re

from app.crypto.stream import Buffer, Readable, Writable
from app.errors import ArmorError

BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
END = b"-----END AGE ENCRYPTED FILE-----"
COLUMNS = 64
LINE_BYTES = COLUMNS // 4 * 3  # 48 bytes of data per full line
_BLOCK = 1024 * (COLUMNS + 2)  # about 48 KiB of data per read
_SPACE = b" \t\r\n"
_FULL_LINES = re.compile(rb"(?:[A-Za-z0-9+/]{64}\r?\n)+")
_LAST_LINE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class ArmorReader:
    """A readable that yields the binary age file inside an armored one, checking as it goes."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._text = bytearray()  # armored bytes read but not yet parsed
        self._data = bytearray()  # decoded bytes not yet handed out
        self._eof = False
        self._state = "begin"

    def _fill(self) -> bool:
        """Read one more block of armored text; ``False`` at the end of the source."""
        if self._eof:
            return False
        block = bytearray(_BLOCK)
        n = self._raw.readinto(block) or 0
        self._text += block[:n]
        self._eof = n == 0
        return n > 0

    def _line(self) -> bytes | None:
        """Take one line (EOL removed); ``None`` if the text ends without one."""
        while (end := self._text.find(b"\n")) < 0:
            if len(self._text) > COLUMNS + 2 or not self._fill():
                break
        if end < 0:
            line, self._text = bytes(self._text), bytearray()
            return line if line else None
        line = bytes(self._text[:end])
        del self._text[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _begin(self) -> None:
        while True:
            del self._text[: len(self._text) - len(self._text.lstrip(_SPACE))]
            if len(self._text) > len(BEGIN) or not self._fill():
                break
        if self._line() != BEGIN:
            raise ArmorError(
                "invalid armor: the first line is not '-----BEGIN AGE ENCRYPTED FILE-----'"
            )
        self._state = "body"

    def _body(self) -> None:
        """Decode the run of full lines at the front of the text, or the last line and END."""
        if len(self._text) < _BLOCK:
            self._fill()
        # A line cut by a short read must not be taken for the last line.
        while self._text.find(b"\n") < 0 and len(self._text) <= COLUMNS + 2 and self._fill():
            pass
        match = _FULL_LINES.match(self._text)
        if match:
            self._data += base64.b64decode(match.group().translate(None, b"\r\n"))
            del self._text[: match.end()]
            return
        line = self._line()
        if line is not None and line != END:
            self._data += _decode_last(line)
            line = self._line()
        if line is None:
            raise ArmorError("invalid armor: the file ends before its END line")
        if line != END:
            raise ArmorError(
                "invalid armor: the last line is not '-----END AGE ENCRYPTED FILE-----'"
            )
        self._state = "end"

    def _end(self) -> None:
        """Only whitespace may follow the END line."""
        while True:
            if self._text.strip(_SPACE):
                raise ArmorError("invalid armor: data after the END line")
            self._text.clear()
            if not self._fill():
                self._state = "done"
                return

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        while not self._data and self._state != "done":
            {"begin": self._begin, "body": self._body, "end": self._end}[self._state]()
        n = min(len(buffer), len(self._data))
        buffer[:n] = self._data[:n]
        del self._data[:n]
        return n


def _decode_last(line: bytes) -> bytes:
    if not 0 < len(line) <= COLUMNS or len(line) % 4 or not _LAST_LINE.fullmatch(line):
        raise ArmorError("invalid armor: malformed base64 line")
    try:
        data = base64.b64decode(line, validate=True)
    except binascii.Error:
        raise ArmorError("invalid armor: malformed base64 line") from None
    if base64.b64encode(data) != line:
        raise ArmorError("invalid armor: non-canonical base64")
    return data


class _Peeked:
    """A readable that first gives back bytes already read from ``raw``."""

    def __init__(self, head: bytes, raw: Readable) -> None:
        self._head = head
        self._raw = raw

    def readinto(self, buffer: bytearray | memoryview, /) -> int | None:
        if not self._head:
            return self._raw.readinto(buffer)
        n = min(len(buffer), len(self._head))
        buffer[:n] = self._head[:n]
        self._head = self._head[n:]
        return n


def dearmor(src: Readable) -> Readable:
    """``src`` itself (as a readable) if it is a binary age file, or its armored content decoded.

    Armor is recognised the way ``age -d`` does: the first line after any leading whitespace
    starts with ``-----BEGIN``.
    """
    head = bytearray()
    while len(head.lstrip(_SPACE)) < len(b"-----BEGIN") and len(head) < _BLOCK:
        block = bytearray(256)
        n = src.readinto(block)
        if not n:
            break
        head += block[:n]
    peeked = _Peeked(bytes(head), src)
    if head.lstrip(_SPACE).startswith(b"-----BEGIN"):
        return ArmorReader(peeked)
    return peeked


class ArmorWriter:
    """A writable that armors everything written to it into ``dst``; :meth:`close` ends it."""

    def __init__(self, dst: Writable) -> None:
        self._dst = dst
        self._pending = bytearray()
        self._dst.write(BEGIN + b"\n")
        self.closed = False

    def write(self, data: Buffer, /) -> int:
        """Encode every full line's worth of ``data``; keep the rest for the next call."""
        if self.closed:
            raise ValueError("write to a closed ArmorWriter")
        self._pending += data
        full = len(self._pending) // LINE_BYTES * LINE_BYTES
        if full:
            self._dst.write(_lines(bytes(self._pending[:full])))
            del self._pending[:full]
        return len(data)

    def close(self) -> None:
        """Write the last (short) line and the END line. Does not close ``dst``."""
        if not self.closed:
            self._dst.write(_lines(bytes(self._pending)) + END + b"\n")
            self.closed = True


def _lines(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i : i + COLUMNS] + b"\n" for i in range(0, len(text), COLUMNS))
