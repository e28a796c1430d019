"""``tipbox reply``: a reply to a source, written on the air-gapped machine.

The source and its reply key come from a bundle's manifest, or from the index ``tipbox open``
keeps in its folder (every source it ever opened there; ``manifest.json`` in older folders);
the file itself is made by :func:`app.reply.make_reply` and is uploaded through the journalist
app, which checks it (:func:`app.reply.check_reply`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.bundle import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    BundleSource,
    Manifest,
    parse_manifest,
    read_bundle,
)
from app.cli.index import INDEX_NAME, FolderIndex
from app.container import safe_name
from app.crypto.keyfile import parse_recipient
from app.errors import BundleError, ReplyError
from app.files import atomic_write, free_path
from app.reply import MAX_TEXT_BYTES, make_reply


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The options of ``tipbox reply``."""
    p.add_argument("target", metavar="BUNDLE-OR-DIR", help="bundle, or folder 'open' wrote")
    p.add_argument("--source", required=True, metavar="DESIGNATION", help="e.g. 'amber falcon'")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--message", metavar="TEXT", help="the reply's text")
    given.add_argument("--file", metavar="PATH", help="a UTF-8 text file holding the reply")
    p.add_argument("-o", "--output", metavar="OUT", help="reply file (default reply-NAME.age)")
    p.set_defaults(run=cmd_reply)


def cmd_reply(args: argparse.Namespace) -> None:
    """Encrypt a reply to a source of a bundle, for upload through the journalist app."""
    text = reply_text(args.message, Path(args.file) if args.file else None)
    output = Path(args.output) if args.output else None
    source, path = write_reply(Path(args.target), args.source, text, output)
    print(f"reply for {source.designation!r} written to {path}: upload it in the journalist app")


def load_manifest(target: Path) -> Manifest:
    """The manifest of a bundle, or of a folder written by ``tipbox open``."""
    if not target.is_dir():
        return read_bundle(target)[0]
    if (target / INDEX_NAME).is_file():
        return FolderIndex(target).manifest()
    path = target / MANIFEST_NAME  # a folder an older tipbox open wrote
    if not path.is_file():
        raise BundleError(
            f"{path} does not exist", hint="give the bundle, or the folder 'tipbox open' wrote"
        )
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is too large")
    return parse_manifest(path.read_bytes())


def find_source(manifest: Manifest, designation: str) -> BundleSource:
    """The source called ``designation`` (its words, or its folder name)."""
    wanted = "-".join(designation.lower().split())
    for source in manifest.sources:
        if source.folder == wanted:
            return source
    names = ", ".join(repr(s.designation) for s in manifest.sources[:10]) or "none"
    raise ReplyError(f"no source {designation!r} in this bundle", hint=f"its sources: {names}")


def reply_text(message: str | None, file: Path | None) -> str:
    """The reply's text, from ``--message`` or from a UTF-8 text file."""
    if file is not None:
        if file.stat().st_size > MAX_TEXT_BYTES:
            raise ReplyError(f"{file} is too long (at most {MAX_TEXT_BYTES >> 20} MiB of text)")
        try:
            message = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ReplyError(f"{file} is not UTF-8 text") from None
    if not message or not message.strip():
        raise ReplyError("the reply is empty")
    return message


def write_reply(
    target: Path, designation: str, text: str, output: Path | None
) -> tuple[BundleSource, Path]:
    """Encrypt a reply for a source of ``target``'s manifest; return the source and the file."""
    manifest = load_manifest(target)
    source = find_source(manifest, designation)
    keys = [parse_recipient(r) for r in (source.reply_recipient, *manifest.recipients)]
    data = make_reply(text, keys)
    path = output or free_path(Path.cwd(), f"reply-{safe_name(source.folder)}.age")
    with atomic_write(path, 0o644, overwrite=output is not None, durable=False) as handle:
        handle.write(data)
    return source, path
