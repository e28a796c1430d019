"""``tipbox open``: a bundle decrypted on the air-gapped machine, into a folder per source.

Every item of the bundle goes into its source's folder::

    OUT/manifest.json                       the bundle's manifest, for 'tipbox reply OUT'
    OUT/<designation-words>/message-1.txt   messages, in the order the source sent them
    OUT/<designation-words>/files/<name>    files, under their (made safe) original names
    OUT/<designation-words>/replies/reply-1.txt

Nothing is ever overwritten (a taken name gets `` (2)``, `` (3)``…), and a file appears only once
its whole item has authenticated (``app.files.atomic_write``). Files live apart from messages so
that a file named ``message-1.txt`` cannot pass for a message. A damaged item is reported and
skipped; the others are still written. Air-gapped: it loads the core only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from app import crypto
from app.bundle import (
    KINDS,
    MANIFEST_NAME,
    BundleSource,
    Manifest,
    ReadItem,
    read_bundle,
)
from app.cli.metadata import check_metadata
from app.cli.terminal import Bar, Progress, asker, printable, say
from app.container import DAMAGED_TAR, is_plain_file, safe_name
from app.crypto.keyfile import KeyIdentity, load_identities
from app.crypto.stream import CHUNK_SIZE, Readable
from app.errors import BundleError, NoIdentityMatchError, TipboxError
from app.files import atomic_write, contained, free_path, remove_leftovers

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

FILES, REPLIES = "files", "replies"
_PLURALS = {"reply": "replies"}
_OTHER_OUT = "choose another --out folder"


def _folder(parent: Path, name: str) -> Path:
    try:
        path = contained(parent, safe_name(name, fallback="source"))
    except ValueError:  # a symbolic link already there points elsewhere: never follow it
        raise BundleError(f"{parent / name} leads outside {parent}", hint=_OTHER_OUT) from None
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise BundleError(f"{path} is not a folder", hint=_OTHER_OUT)
    return path


# --- one item --------------------------------------------------------------------------------


class Plaintext(io.RawIOBase):
    """An age file's authenticated plaintext as a readable, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[memoryview], tick: Callable[[int], None]) -> None:
        self._chunks, self._tick = chunks, tick
        self._pending = memoryview(b"")
        self.size = 0

    def readable(self) -> bool:
        return True

    def _next(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._pending = chunk  # valid until the next chunk is asked for
        self.size += len(chunk)
        self._tick(self.size)
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if not self._pending and not self._next():
            return 0
        with memoryview(buffer) as view:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        """Authenticate the rest of the payload (the container's padding)."""
        while self._next():
            pass


def extract(
    src: Readable,
    identities: Sequence[KeyIdentity],
    place: Callable[[str], Path],
    tick: Callable[[int], None],
    pool: ThreadPoolExecutor | None = None,
) -> tuple[Path, int]:
    """Decrypt one item and write its member to ``place(member name)``; return (path, size).

    The file is committed only after the whole payload, padding included, has authenticated.
    """
    return write_member(Plaintext(crypto.open_payload(src, identities, pool), tick), place)


def write_member(plain: Plaintext, place: Callable[[str], Path]) -> tuple[Path, int]:
    """Write the one member of a container to ``place(member name)``; return (path, size)."""
    try:
        with tarfile.open(fileobj=io.BufferedReader(plain, CHUNK_SIZE), mode="r|") as archive:
            member = archive.next()
            data = archive.extractfile(member) if member and is_plain_file(member) else None
            if member is None or data is None:
                raise BundleError("the item does not hold a regular file")
            path = place(member.name)
            with atomic_write(path, 0o600, durable=False) as out:
                copy_member(data, out, plain)
                plain.drain()
    except DAMAGED_TAR:
        raise BundleError("the item's container is damaged") from None
    return path, member.size


def copy_member(data: IO[bytes], out: BinaryIO, plain: Plaintext) -> None:
    """Copy a member's bytes, never more than the payload has given so far.

    Sparse members are refused before this; the bound holds whatever else a tar reader might
    expand, so an item of a few kilobytes can never fill the disk.
    """
    written = 0
    while block := data.read(CHUNK_SIZE):
        written += len(block)
        if written > plain.size:
            raise BundleError("the item's file holds more than its payload: refused")
        out.write(block)


# --- a whole bundle --------------------------------------------------------------------------


def _placer(folder: Path, kind: str, number: int) -> Callable[[str], Path]:
    """Where an item's member goes: by kind and number, or by its own name for a file."""

    def place(member_name: str) -> Path:
        if kind == "message":
            return free_path(folder, f"message-{number}.txt")
        if kind == "reply":
            return free_path(_folder(folder, REPLIES), f"reply-{number}.txt")
        return free_path(_folder(folder, FILES), safe_name(member_name))

    return place


class _Run:
    """One ``tipbox open``: what was written, what failed, and the progress bar."""

    def __init__(self, read_item: ReadItem, identities: Sequence[KeyIdentity], bar: Bar) -> None:
        self.read_item, self.identities, self.bar = read_item, identities, bar
        self.done = self.plain_bytes = 0
        self.counts: Counter[str] = Counter()
        self.files: list[Path] = []
        self.failures: list[str] = []

    def tick(self, plain: int) -> None:
        self.bar(self.done + plain)

    def source(self, source: BundleSource, out: Path, pool: ThreadPoolExecutor) -> None:
        folder = _folder(out, source.folder)
        numbers: Counter[str] = Counter()
        for item in source.items:
            numbers[item.kind] += 1
            try:
                with self.read_item(item) as src:
                    place = _placer(folder, item.kind, numbers[item.kind])
                    path, size = extract(src, self.identities, place, self.tick, pool)
            except (TipboxError, tarfile.TarError, OSError) as exc:
                # One item's failure (a damaged item, a full disk…) is reported at the end; it
                # never stops the others from being written.
                self.failures.append(
                    f"item {item.id} ({item.kind} of {source.designation!r}): {_reason(exc)}"
                )
            else:
                self.counts[item.kind] += 1
                self.plain_bytes += size
                if item.kind == "file":
                    self.files.append(path)
            self.done += item.size
            self.bar(self.done)

    def summary(self, manifest: Manifest, out: Path) -> str:
        parts = [_plural(len(manifest.sources), "source")]
        parts += [_plural(self.counts[kind], kind) for kind in KINDS]
        text = f"opened {', '.join(parts)}, {_size(self.plain_bytes)}, into {out}"
        return text + (f"; {_plural(len(self.failures), 'failure')}" if self.failures else "")


def _reason(exc: Exception) -> str:
    """What went wrong, in the CLI's words (lowercase; an OSError names its file)."""
    if isinstance(exc, TipboxError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror.lower()
        return f"{printable(str(exc.filename))}: {text}" if exc.filename else text
    return str(exc).lower()


def _plural(count: int, word: str) -> str:
    return f"{count} {word if count == 1 else _PLURALS.get(word, word + 's')}"


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit}"
    return _plural(count, "byte")


def _check_identities(manifest: Manifest, identities: Sequence[KeyIdentity]) -> None:
    if not {str(i.recipient) for i in identities} & set(manifest.recipients):
        raise NoIdentityMatchError(
            "the identity is not one of this bundle's newsroom recipients",
            hint=f"use the newsroom identity of {', '.join(manifest.recipients)}",
        )


@contextlib.contextmanager
def _holding(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run (a lock the kernel drops if the run is killed): a second run
    into the same folder would take this one's unfinished files for leftovers."""
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(
                f"another tipbox open is writing into {out}",
                hint=f"wait for it to finish, or {_OTHER_OUT}",
            ) from None
        yield
    finally:
        os.close(fd)


def _folder_here(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _remove_leftovers(out: Path) -> None:
    """Remove the half-written (plaintext) files of a run that was killed, and say so."""
    sources = [path for path in out.iterdir() if _folder_here(path)]
    subfolders = [path / sub for path in sources for sub in (FILES, REPLIES)]
    folders = [out, *sources, *filter(_folder_here, subfolders)]
    removed = sum(remove_leftovers(folder) for folder in folders)
    if removed:
        text = f"removed {_plural(removed, 'unfinished file')} left in {out} by an interrupted run"
        say("warning", text)


def open_bundle(
    bundle: Path,
    identities: Sequence[KeyIdentity],
    out: Path,
    progress: Callable[[str, int], Bar],
    clean: bool = False,
) -> None:
    """Decrypt every item of ``bundle`` into ``out``; print a summary, then metadata warnings.

    :raises BundleError: after writing everything it could, if any item failed.
    """
    manifest, read_item = read_bundle(bundle)
    _check_identities(manifest, identities)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    run = _Run(read_item, identities, progress("opening", sum(i.size for _, i in manifest.items())))
    with _holding(out), ThreadPoolExecutor(2) as pool:
        _remove_leftovers(out)
        with atomic_write(out / MANIFEST_NAME, 0o600, overwrite=True, durable=False) as handle:
            handle.write(manifest.to_json())
        for source in manifest.sources:
            run.source(source, out, pool)
    run.bar.finish()
    for failure in run.failures:
        say("error", failure)
    print(run.summary(manifest, out))
    check_metadata(run.files, clean)
    if run.failures:
        raise BundleError(
            f"{_plural(len(run.failures), 'item')} could not be opened (see above); "
            "everything else was written"
        )


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The options of ``tipbox open``."""
    p.add_argument("bundle", metavar="BUNDLE", help="bundle file from the journalist app")
    p.add_argument("-i", "--identity", action="append", required=True, metavar="IDENTITY")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--clean", action="store_true", help="also write mat2-cleaned copies")
    p.set_defaults(run=cmd_open)


def cmd_open(args: argparse.Namespace) -> None:
    """Decrypt a bundle from the journalist app into a folder per source."""
    identities: list[KeyIdentity] = []
    for name in args.identity:
        identities += load_identities(Path(name).read_bytes(), asker(f"Passphrase for {name}: "))
    open_bundle(Path(args.bundle), identities, Path(args.out), Progress, clean=args.clean)
