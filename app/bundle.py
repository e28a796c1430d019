"""Bundles: what a journalist carries from the server to the air-gapped machine.

A bundle is one uncompressed POSIX tar file: ``manifest.json`` first, then ``items/<id>.age`` for
every item the manifest lists, each the stored age file byte for byte (``docs/bundle.md`` is the
format's reference). It holds nothing the server could not already read: ciphertext, two-word
designations, public keys, days and padded sizes. No Flask and no SQLite here: the writer
streams from file objects to any writable (or a generator, for a WSGI response), and the reader
checks a bundle strictly before anything is decrypted.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from app.crypto.keyfile import parse_recipient
from app.crypto.stream import Writable
from app.days import today
from app.errors import BundleError, KeyFormatError

if TYPE_CHECKING:  # types only: the air-gapped side must not import sqlite3
    from _typeshed import WriteableBuffer


FORMAT = "tipbox-bundle/2"
FORMATS = ("tipbox-bundle/1", FORMAT)  # version 1 lacks seq and submission: still read
MANIFEST_NAME = "manifest.json"
KINDS = ("message", "file", "reply")
BLOCK = 512
READ_SIZE = 1 << 20
MAX_MANIFEST_BYTES = 64 << 20
MAX_TRAILER = 1 << 20  # zeros accepted after the last member (tar pads to its record size)
_ID = re.compile(r"[0-9a-f]{32}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


@dataclass(frozen=True)
class BundleItem:
    """One stored age file: what the server knows of it."""

    id: str
    kind: str
    day: str
    size: int
    recipients: tuple[str, ...]
    seq: int = 0  # the server's per-source number; 0 until numbered (see :func:`in_order`)
    submission: int = 0  # the seq of the first item sent with it

    @property
    def path(self) -> str:
        """Where the item lives inside the bundle."""
        return f"items/{self.id}.age"


@dataclass(frozen=True)
class BundleSource:
    """A source by its designation, with its items in the order they were stored."""

    designation: str
    reply_recipient: str
    last_active_day: str
    items: tuple[BundleItem, ...]

    @property
    def folder(self) -> str:
        """The designation as one file name: its words joined with '-'."""
        return "-".join(self.designation.split())


@dataclass(frozen=True)
class Manifest:
    """The bundle's table of contents."""

    day: str
    recipients: tuple[str, ...]
    sources: tuple[BundleSource, ...]

    def items(self) -> Iterator[tuple[BundleSource, BundleItem]]:
        """Every item with its source, in bundle order."""
        return ((s, i) for s in self.sources for i in s.items)

    def to_json(self) -> bytes:
        """The manifest as ``manifest.json`` holds it."""
        sources = [
            {
                "designation": s.designation,
                "reply_recipient": s.reply_recipient,
                "last_active_day": s.last_active_day,
                "items": [
                    {**vars(i), "recipients": list(i.recipients), "path": i.path} for i in s.items
                ],
            }
            for s in self.sources
        ]
        document = {"format": FORMAT, "day": self.day, "recipients": list(self.recipients)}
        return json.dumps({**document, "sources": sources}, indent=1).encode("ascii") + b"\n"


def in_order(items: Sequence[BundleItem]) -> tuple[BundleItem, ...]:
    """Number unnumbered items by position and group each file with the submission before it.

    The store records a number per item but not which items came in one submission; items of
    one submission are committed together, message first. So a file joins the item just before
    it when that one is a message or a file of the same day with the number just below; two
    file-only submissions of one day in a row read as one (docs/bundle.md says so).
    """
    done: list[BundleItem] = []
    for position, item in enumerate(items, start=1):
        seq = item.seq or (done[-1].seq + 1 if done else position)
        submission = item.submission or _submission(done[-1] if done else None, item, seq)
        done.append(replace(item, seq=seq, submission=submission))
    return tuple(done)


def _submission(before: BundleItem | None, item: BundleItem, seq: int) -> int:
    joins = before is not None and before.kind != "reply" and before.seq == seq - 1
    if joins and before is not None and item.kind == "file" and before.day == item.day:
        return before.submission
    return seq


OpenItem = Callable[[BundleItem], BinaryIO]  # the writer's source of each item's ciphertext
ReadItem = Callable[[BundleItem], io.BufferedReader]  # the reader's access to each item


# --- checking a manifest ---------------------------------------------------------------------


def escapes(path: str) -> bool:
    """Whether a member name is absolute or climbs out with ``..``."""
    return path.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", path)


def _invalid(where: str, what: str) -> BundleError:
    return BundleError(f"invalid manifest: {where} {what}")


def _object(value: object, keys: Sequence[str], where: str) -> Mapping[str, object]:
    if not isinstance(value, dict) or sorted(value) != sorted(keys):
        raise _invalid(where, f"must be an object with exactly: {', '.join(keys)}")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise _invalid(where, "must be a list")
    return value


def _day(value: object, where: str) -> str:
    try:
        if isinstance(value, str) and _DAY.fullmatch(value) and date.fromisoformat(value):
            return value
    except ValueError:
        pass
    raise _invalid(where, "must be a day, YYYY-MM-DD")


def _recipient(value: object, where: str) -> str:
    try:
        if isinstance(value, str) and str(parse_recipient(value)) == value:
            return value
    except KeyFormatError:
        pass
    raise _invalid(where, "must be an age recipient (age1… or age1pq1…)")


def _recipients(value: object, where: str) -> tuple[str, ...]:
    keys = tuple(_recipient(r, f"{where}[{n}]") for n, r in enumerate(_list(value, where)))
    if not keys or len(set(keys)) != len(keys):
        raise _invalid(where, "must list one or more distinct recipients")
    return keys


def _designation(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > 100 or value.lower() != value:
        raise _invalid(where, "must be lowercase words separated by single spaces")
    if not all(_WORD.fullmatch(word) for word in value.split(" ")):
        raise _invalid(where, "must be lowercase words separated by single spaces")
    return value


def _whole(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 50:
        raise _invalid(where, "must be a positive whole number")
    return value


def _item(value: object, where: str, numbered: bool) -> BundleItem:
    keys = ("id", "kind", "day", "size", "recipients", "path")
    fields = _object(value, (*keys, "seq", "submission") if numbered else keys, where)
    item_id, kind, size, path = fields["id"], fields["kind"], fields["size"], fields["path"]
    if not isinstance(item_id, str) or not _ID.fullmatch(item_id):
        raise _invalid(f"{where}.id", "must be 32 lowercase hexadecimal digits")
    if kind not in KINDS:
        raise _invalid(f"{where}.kind", f"must be one of {', '.join(KINDS)}")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size < 1 << 50:
        raise _invalid(f"{where}.size", "must be a positive whole number of bytes")
    expected = f"items/{item_id}.age"
    if path != expected:
        outside = " (it points outside the bundle)" if escapes(str(path)) else ""
        raise _invalid(f"{where}.path", f"must be {expected!r}, not {path!r}{outside}")
    recipients = _recipients(fields["recipients"], f"{where}.recipients")
    item = BundleItem(item_id, str(kind), _day(fields["day"], f"{where}.day"), size, recipients)
    if not numbered:
        return item
    seq = _whole(fields["seq"], f"{where}.seq")
    return replace(item, seq=seq, submission=_whole(fields["submission"], f"{where}.submission"))


def _numbers(items: Sequence[BundleItem], where: str) -> None:
    """Numbers increase through a source; a submission starts at an item before (or at) it."""
    seen: set[int] = set()
    for n, item in enumerate(items):
        if seen and item.seq <= max(seen):
            raise _invalid(f"{where}.items[{n}].seq", "must increase through the source")
        seen.add(item.seq)
        if item.submission not in seen:
            raise _invalid(f"{where}.items[{n}].submission", "must be the seq of an earlier item")


def _source(value: object, where: str, numbered: bool) -> BundleSource:
    keys = ("designation", "reply_recipient", "last_active_day", "items")
    fields = _object(value, keys, where)
    listed = _list(fields["items"], f"{where}.items")
    items = [_item(item, f"{where}.items[{n}]", numbered) for n, item in enumerate(listed)]
    if numbered:
        _numbers(items, where)
    return BundleSource(
        _designation(fields["designation"], f"{where}.designation"),
        _recipient(fields["reply_recipient"], f"{where}.reply_recipient"),
        _day(fields["last_active_day"], f"{where}.last_active_day"),
        tuple(items) if numbered else in_order(items),
    )


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise BundleError("invalid manifest: a key appears twice in one object")
    return dict(pairs)


def _no_constant(name: str) -> object:
    raise BundleError(f"invalid manifest: {name} is not a number")


def _load(data: bytes) -> object:
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except ValueError as exc:  # bad UTF-8, bad JSON, absurdly long numbers
        raise BundleError(f"invalid manifest: not JSON ({exc})") from None
    except RecursionError:  # the parser recurses per level: a real manifest has six
        raise BundleError("invalid manifest: nested too deeply") from None


def parse_manifest(data: bytes) -> Manifest:
    """Check ``manifest.json``'s bytes against every rule of the format; return it.

    :raises BundleError: naming the first field that breaks a rule.
    """
    document = _load(data)
    if isinstance(document, dict) and document.get("format") not in FORMATS:
        found = document.get("format")
        raise BundleError(
            f"unsupported bundle format {found!r} (this tipbox reads {FORMAT!r})",
            hint="use the same Tipbox version on the server and on this machine",
        )
    fields = _object(document, ("format", "day", "recipients", "sources"), "the manifest")
    numbered = fields["format"] == FORMAT
    listed = _list(fields["sources"], "sources")
    sources = tuple(_source(s, f"sources[{n}]", numbered) for n, s in enumerate(listed))
    manifest = Manifest(
        _day(fields["day"], "day"), _recipients(fields["recipients"], "recipients"), sources
    )
    ids = [item.id for _, item in manifest.items()]
    names = [s.folder for s in sources]
    if len(set(ids)) != len(ids) or len(set(names)) != len(names):
        raise BundleError("invalid manifest: an item or a designation appears twice")
    return manifest


# --- writing ---------------------------------------------------------------------------------


def _member_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uname = info.gname = ""
    # PAX only adds an extended header when a field does not fit ustar (items over 8 GiB).
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def _copy(src: BinaryIO, item: BundleItem) -> Iterator[bytes]:
    left = item.size
    while left > 0:
        block = src.read(min(left, READ_SIZE))
        if not block:
            raise BundleError(f"item {item.id} is shorter than the size the store recorded")
        left -= len(block)
        yield block
    if src.read(1):
        raise BundleError(f"item {item.id} is longer than the size the store recorded")


def iter_bundle(
    sources: Sequence[BundleSource],
    open_item: OpenItem,
    *,
    recipients: Sequence[str],
    day: str | None = None,
) -> Iterator[bytes]:
    """Yield a bundle as blocks of at most 1 MiB; ``open_item`` gives each item's ciphertext.

    The manifest is checked with the reader's own rules before the first byte is produced. An
    item whose length differs from its recorded size raises :class:`BundleError` mid-stream:
    the bundle is then cut short, and the reader refuses it as truncated.
    """
    numbered = (replace(s, items=in_order(s.items)) for s in sources)
    draft = Manifest(day or today(), tuple(recipients), tuple(numbered))
    manifest = parse_manifest(draft.to_json())
    data = manifest.to_json()
    yield _member_header(MANIFEST_NAME, len(data)) + data + _padding(len(data))
    for _, item in manifest.items():
        yield _member_header(item.path, item.size)
        with open_item(item) as src:
            yield from _copy(src, item)
        yield _padding(item.size)
    yield bytes(2 * BLOCK)


def write_bundle(
    dst: Writable,
    sources: Sequence[BundleSource],
    open_item: OpenItem,
    *,
    recipients: Sequence[str],
    day: str | None = None,
) -> int:
    """Stream a bundle into ``dst`` (which need not be seekable); return the bytes written."""
    total = 0
    for block in iter_bundle(sources, open_item, recipients=recipients, day=day):
        dst.write(block)
        total += len(block)
    return total


# --- reading ---------------------------------------------------------------------------------


_KINDS = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link", tarfile.DIRTYPE: "folder"}


def _check_member(member: tarfile.TarInfo, end: int, seen: set[str]) -> None:
    name = member.name
    if escapes(name):
        raise BundleError(f"the bundle's member {name!r} points outside the bundle: refused")
    if member.issparse():  # regular by type, but a reader would expand its holes
        raise BundleError(f"the bundle holds a sparse file ({name!r}): refused")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = _KINDS.get(member.type, "special file")
        raise BundleError(f"the bundle holds a {kind} ({name!r}): refused")
    if name in seen:
        raise BundleError(f"the bundle holds {name!r} twice: refused")
    if member.offset_data + member.size > end:
        raise BundleError(f"the bundle is truncated: {name!r} is cut short")
    seen.add(name)


def _scan(handle: BinaryIO, end: int) -> tuple[list[tarfile.TarInfo], bytes]:
    """Every member (checked) and the manifest's bytes."""
    try:
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            members: list[tarfile.TarInfo] = []
            seen: set[str] = set()
            for member in archive:
                _check_member(member, end, seen)
                members.append(member)
            if not members or members[0].name != MANIFEST_NAME:
                raise BundleError("the bundle does not start with manifest.json")
            if members[0].size > MAX_MANIFEST_BYTES:
                raise BundleError("the bundle's manifest is too large")
            extracted = archive.extractfile(members[0])
            data = extracted.read() if extracted else b""
    except (tarfile.TarError, ValueError, OverflowError) as exc:  # (damaged pax headers)
        raise BundleError(f"the file is not a bundle (or it is damaged): {exc}") from None
    return members, data


def _check_trailer(handle: BinaryIO, start: int, end: int) -> None:
    """After the last member: the end-of-archive zeros, and nothing else."""
    if end - start < 2 * BLOCK:
        raise BundleError("the bundle is truncated: its end-of-archive marker is missing")
    if end - start > MAX_TRAILER:
        raise BundleError("the bundle has unexpected data after its last item")
    handle.seek(start)
    if handle.read(end - start).strip(b"\0"):
        raise BundleError("the bundle has unexpected data after its last item")


def _locate(manifest: Manifest, members: Sequence[tarfile.TarInfo]) -> dict[str, tuple[int, int]]:
    """Where each item's bytes are, by id; every member listed, every listed item present."""
    by_name = {m.name: m for m in members[1:]}
    where: dict[str, tuple[int, int]] = {}
    for _, item in manifest.items():
        member = by_name.pop(item.path, None)
        if member is None:
            raise BundleError(f"the bundle is truncated or incomplete: item {item.id} is missing")
        if member.size != item.size:
            raise BundleError(f"item {item.id} does not have the size the manifest gives")
        where[item.id] = (member.offset_data, member.size)
    if by_name:
        raise BundleError(f"the bundle holds {min(by_name)!r}, which its manifest does not list")
    return where


def read_bundle(path: Path) -> tuple[Manifest, ReadItem]:
    """Check the bundle at ``path``; return its manifest and a function that opens an item.

    :raises BundleError: the bundle is truncated, damaged, or breaks a rule of the format.
    """
    with path.open("rb") as handle:
        end = os.fstat(handle.fileno()).st_size
        members, data = _scan(handle, end)
        manifest = parse_manifest(data)
        where = _locate(manifest, members)
        last = members[-1]
        _check_trailer(handle, last.offset_data + last.size + -last.size % BLOCK, end)
    return manifest, lambda item: _open_member(path, where, item)


def _open_member(
    path: Path, where: Mapping[str, tuple[int, int]], item: BundleItem
) -> io.BufferedReader:
    if item.id not in where:
        raise BundleError(f"item {item.id} is not in this bundle")
    start, size = where[item.id]
    handle = path.open("rb")
    handle.seek(start)
    return io.BufferedReader(_Slice(handle, size), READ_SIZE)


class _Slice(io.RawIOBase):
    """``size`` bytes of ``handle`` from where it stands; closing it closes ``handle``."""

    def __init__(self, handle: io.BufferedReader, size: int) -> None:
        self._handle, self._left = handle, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        with memoryview(buffer) as view:
            wanted = min(len(view), self._left)
            n = self._handle.readinto(view[:wanted])
        if wanted and not n:
            raise BundleError("the bundle changed or was cut short while it was being read")
        self._left -= n
        return n

    def close(self) -> None:
        self._handle.close()
        super().close()
