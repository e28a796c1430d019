"""The inner container of every stored item: a POSIX (pax) tar stream with one member.

Why tar: a journalist with nothing but standard tools reads any item with
``age -d -i identity item | tar -x`` (or ``| tar -xO`` to print a message), and the original
file name and content type travel inside the ciphertext only.

Layout of the plaintext (every part a multiple of 512 bytes except the padding)::

    pax header block   typeflag 'x'
    pax records        path=<name>, size=<n>, SCHILY.xattr.user.mime_type=<type>,
                       comment=<filler>: the filler makes the whole head a fixed length
                       that is known before the size is, so uploads can stream
    ustar header       the member itself
    data               <n> bytes, then zeros to a 512-byte boundary
    end of archive     two zero blocks
    padding            zeros, so the stored size says only which size bucket the item is in

``tar`` stops reading at the end-of-archive blocks, so the padding is invisible to it. (Padding
*inside* the archive, as pax global headers, was tried: Python's tarfile refuses a pax header
followed by the end of the archive, so it would take a junk member; zeros after the end are
what every tar reads without complaint.) Pure functions, no I/O.
"""

from __future__ import annotations

import re
import tarfile
import unicodedata
from collections.abc import Iterator

BLOCK = 512
END_OF_ARCHIVE = 2 * BLOCK
MAX_NAME_BYTES = 255
_MAX_SIZE_DIGITS = 20
_FILLER_MIN = len(b"99 comment=\n")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def safe_name(name: str, fallback: str = "file") -> str:
    """A file name with no directories, control characters or surprises, at most 255 bytes.

    A backslash stays: in a POSIX (and tar) name it is an ordinary character, which a source's
    own file name may hold (``Q3\\Q4.pdf``), and Windows browsers send only a file's last
    component. Only ``/`` separates folders, so only what follows the last one is kept.
    """
    name = unicodedata.normalize("NFC", name).rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[:-1]}.{ext}" if dot and len(ext) < 16 and stem else name[:-1]
    return name or fallback


# What tarfile raises, besides TarError, on damaged pax headers (numbers that are not numbers,
# record lengths past any buffer): found by the property tests (``make fuzz``).
DAMAGED_TAR = (ValueError, OverflowError)


def is_plain_file(member: tarfile.TarInfo) -> bool:
    """Whether a member is what :func:`head` writes: a regular file, and not a sparse one.

    A sparse member (GNU tar's PAX formats) is regular by type, but a reader expands its holes:
    a few kilobytes of payload became a 1 GiB file. Links, folders and devices are refused too.
    """
    return member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and not member.issparse()


def safe_content_type(value: str | None) -> str:
    """The bare ``type/subtype`` of a content type, or ``application/octet-stream``."""
    bare = (value or "").split(";", 1)[0].strip().lower()
    return bare if _CONTENT_TYPE.fullmatch(bare) else DEFAULT_CONTENT_TYPE


def _record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode("ascii") + body


def _records(name: str, content_type: str, size: int) -> bytes:
    return (
        _record("path", name.encode("utf-8"))
        + _record("size", str(size).encode("ascii"))
        + _record("SCHILY.xattr.user.mime_type", content_type.encode("ascii"))
    )


def _pax_length(name: str, content_type: str) -> int:
    widest = len(_records(name, content_type, 10**_MAX_SIZE_DIGITS - 1)) + _FILLER_MIN
    return -(-widest // BLOCK) * BLOCK


def head_size(name: str, content_type: str) -> int:
    """The fixed length of the head for this name and type, whatever the data size."""
    return BLOCK + _pax_length(safe_name(name), safe_content_type(content_type)) + BLOCK


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode("ascii") + b"\0"


def _ustar(name: bytes, size: int, mtime: int, typeflag: bytes) -> bytes:
    fields = [
        name[:100].ljust(100, b"\0"),
        _octal(0o644, 8),
        _octal(0, 8),
        _octal(0, 8),
        _octal(size if size < 8**11 else 0, 12),  # larger sizes live in the pax record
        _octal(mtime, 12),
        b" " * 8,  # checksum placeholder, counted as spaces
        typeflag,
        b"\0" * 100,
        b"ustar\x0000",
        b"\0" * 32,
        b"\0" * 32,
        _octal(0, 8),
        _octal(0, 8),
        b"\0" * 155,
    ]
    block = b"".join(fields).ljust(BLOCK, b"\0")
    checksum = f"{sum(block):06o}".encode("ascii") + b"\0 "
    return block[:148] + checksum + block[156:]


def _ascii_name(name: str) -> bytes:
    text = name.encode("ascii", errors="replace").replace(b"?", b"_")
    return text[:100] or b"file"


def head(name: str, content_type: str, size: int, mtime: int) -> bytes:
    """The head (pax header, records, ustar header) for a member of ``size`` bytes."""
    name, content_type = safe_name(name), safe_content_type(content_type)
    pax_length = _pax_length(name, content_type)
    records = _records(name, content_type, size)
    filler = pax_length - len(records)
    # A record's length prefix counts its own digits: the value that makes it exactly `filler`.
    # Spelled out, not via _record: for a filler of 100 (or 1000) bytes _record settles on the
    # shorter self-consistent length (99), and the head would come out one byte short.
    digits = str(filler).encode("ascii")
    records += digits + b" comment=" + b"x" * (filler - len(digits) - len(b" comment=\n")) + b"\n"
    if len(records) != pax_length:
        raise RuntimeError("pax filler arithmetic")  # unreachable: filler >= 12 by construction
    pax = _ustar(b"././@PaxHeader", pax_length, mtime, b"x")
    return pax + records + _ustar(_ascii_name(name), size, mtime, b"0")


_ZEROS = memoryview(bytes(1 << 20))  # shared, read-only: padding is fed from it


def tail_size(size: int) -> int:
    """The shortest trailer: zeros to the block boundary and the end-of-archive blocks."""
    return -size % BLOCK + END_OF_ARCHIVE


def trailer(size: int, length: int) -> Iterator[memoryview]:
    """Exactly ``length`` bytes to follow ``size`` bytes of data: block padding, end of archive,
    then zeros (``length`` must be at least :func:`tail_size`)."""
    zeros = length - tail_size(size)
    if zeros < 0:
        raise ValueError("no room for the end of the archive")
    yield _ZEROS[: tail_size(size)]
    while zeros > 0:
        yield _ZEROS[: min(zeros, len(_ZEROS))]
        zeros -= len(_ZEROS)
