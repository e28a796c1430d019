"""``tipbox open``: a bundle decrypted on the air-gapped machine, a conversation per source.

Every item goes into its source's folder under its number, so names sort as it happened::

    OUT/index.html, OUT/<designation-words>/conversation.html   the reading view (reading.py)
    OUT/tipbox-index.jsonl                  the items the folder holds (index.py)
    OUT/<designation-words>/0001 message.txt
    OUT/<designation-words>/0002 file with 0001 invoice.pdf      sent with message 0001
    OUT/<designation-words>/0003 reply.txt
    OUT/<designation-words>/0004 file scan.jpg                   a submission of files alone
    OUT/<designation-words>/metadata/<name>.txt                  mat2's whole report

A file's name always says ``file``, so a file called ``message.txt`` cannot pass for a message.
An item the folder already holds is skipped, so opening a bundle again writes nothing and a
later bundle adds only what is new. A file appears only once its whole item has authenticated
(``app.files.atomic_write``); nothing is overwritten. A damaged item, or one no identity given
opens, is reported and skipped; the others are still written. Air-gapped: core only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app import crypto
from app.bundle import BundleItem, BundleSource, Manifest, ReadItem, read_bundle
from app.cli import reading
from app.cli.age import load_identity_files, sniff
from app.cli.index import Entry, FolderIndex, item_name
from app.cli.metadata import check_files
from app.cli.summary import Summary, check_identities, plural, reason
from app.cli.terminal import Bar, Progress, say
from app.container import safe_name
from app.crypto import Identity
from app.crypto.stream import Readable
from app.errors import BundleError, TipboxError, UsageError
from app.files import atomic_write, contained, free_path, remove_leftovers
from app.item import reading as read_member

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


def extract(
    src: Readable,
    identities: Sequence[Identity],
    place: Callable[[str], Path],
    tick: Callable[[int], None],
    pool: ThreadPoolExecutor | None = None,
) -> tuple[Path, int]:
    """Decrypt one item and write its member to ``place(member name)``; return (path, size).

    The file is committed only after the whole payload, padding included, has authenticated.
    """
    with read_member(crypto.open_payload(src, identities, pool), tick) as member:
        path = place(member.name)
        with atomic_write(path, 0o600, durable=False) as out:
            member.copy(out)
            member.authenticate()
    return path, member.size


# --- a whole bundle --------------------------------------------------------------------------


def _placer(folder: Path, item: BundleItem) -> Callable[[str], Path]:
    # The name is new unless a killed run wrote the file but not its index line: then the
    # journalist's folder keeps that copy and this one gets the next free name.
    return lambda member_name: free_path(folder, item_name(item, member_name))


class _Run:
    """One ``tipbox open``: the items it writes, what failed, and the progress bar."""

    def __init__(
        self,
        read_item: ReadItem,
        identities: Sequence[Identity],
        bar: Bar,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.read_item, self.identities, self.bar, self.pool = read_item, identities, bar, pool
        self.done = 0
        self.entries: list[Entry] = []
        self.failures: list[str] = []

    def tick(self, plain: int) -> None:
        self.bar(self.done + plain)

    def source(
        self, index: FolderIndex, source: BundleSource, items: Sequence[BundleItem], out: Path
    ) -> None:
        folder = _folder(out, source.folder)
        index.source(source)
        for item in items:
            try:
                with self.read_item(item) as src:
                    place = _placer(folder, item)
                    path, size = extract(src, self.identities, place, self.tick, self.pool)
            except (TipboxError, OSError) as exc:  # a damaged tar is app.item's ItemError
                # One item's failure (a damaged item, a missing key, a full disk…) is reported
                # at the end; it never stops the others from being written.
                what = f"item {item.id} ({item.kind} {item.seq} of {source.designation!r})"
                self.failures.append(f"{what}: {reason(exc, item)}")
            else:
                self.entries.append(index.add(source, item, path.name, size))
            self.done += item.size
            self.bar(self.done)


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


def _remove_leftovers(out: Path) -> None:
    """Remove the half-written (plaintext) files of a run that was killed, and say so."""
    folders = [out, *(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())]
    removed = sum(remove_leftovers(folder) for folder in folders)
    if removed:
        text = f"removed {plural(removed, 'unfinished file')} left in {out} by an interrupted run"
        say("warning", text)


def open_bundle(
    bundle: Path,
    identities: Sequence[Identity],
    out: Path,
    progress: Callable[[str, int], Bar],
    clean: bool = False,
) -> None:
    """Decrypt the items of ``bundle`` that ``out`` does not hold yet; write the reading view.

    :raises BundleError: after writing everything it could, if any item failed.
    """
    manifest, read_item = read_bundle(bundle)
    check_identities(manifest, identities)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _holding(out):
        _remove_leftovers(out)
        index = FolderIndex(out)
        try:
            run = _write_new(index, manifest, read_item, identities, out, progress, clean)
        finally:
            index.close()
    if run.failures:
        raise BundleError(
            f"{plural(len(run.failures), 'item')} could not be opened (see above); "
            "everything else was written"
        )


def _write_new(
    index: FolderIndex,
    manifest: Manifest,
    read_item: ReadItem,
    identities: Sequence[Identity],
    out: Path,
    progress: Callable[[str, int], Bar],
    clean: bool,
) -> _Run:
    new = index.new_items(manifest)
    summary = Summary(index, out)
    bar = progress("opening", sum(i.size for _, items in new for i in items))
    with ThreadPoolExecutor(2) as pool:
        run = _Run(read_item, identities, bar, pool)
        if new:
            index.begin(manifest)
            for source, items in new:
                run.source(index, source, items, out)
            run.bar.finish()
    for failure in run.failures:
        say("error", failure)
    if run.entries:
        check_files(index, [e for e in run.entries if e.kind == "file"], out, clean)
    touched = {e.source for e in run.entries}
    if not (out / "index.html").exists():  # a first run, or pages a failed run never wrote
        touched = set(index.sources)
    if touched:
        reading.write_pages(index, out, touched)
    tried = sum(len(items) for _, items in new)
    summary.show(run.entries, manifest, tried, len(run.failures))
    return run


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The options of ``tipbox open``."""
    p.add_argument("bundle", metavar="BUNDLE", help="bundle file from the journalist app")
    p.add_argument(
        "-i", "--identity", action="append", required=True, metavar="IDENTITY",
        help="identity file; repeat it for every key the newsroom has used",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--clean", action="store_true", help="also write mat2-cleaned copies")
    p.set_defaults(run=cmd_open)


def cmd_open(args: argparse.Namespace) -> None:
    """Decrypt a bundle from the journalist app into a conversation per source."""
    if sniff(args.bundle) == "age":
        raise UsageError(
            f"{args.bundle} is a single age file, not a bundle",
            hint=f"use 'tipbox decrypt -i IDENTITY -o OUT {args.bundle}'",
        )
    identities: list[Identity] = list(load_identity_files(args.identity))
    open_bundle(Path(args.bundle), identities, Path(args.out), Progress, clean=args.clean)
