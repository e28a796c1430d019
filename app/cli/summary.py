"""What ``tipbox open`` says: why an item failed, which keys it needs, and at the end the new
items per source, then one line.

Keys are named by their six-word fingerprints (``app.words.fingerprint``), the words journalists
compare by voice when a key is installed, never by ``age1…``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from app import words
from app.bundle import KINDS, BundleItem, Manifest
from app.cli.index import Entry, FolderIndex
from app.cli.terminal import printable
from app.crypto import Identity
from app.errors import NoIdentityMatchError, TipboxError

_PLURALS = {"reply": "replies"}


def plural(count: int, word: str) -> str:
    """``1 file``, ``2 files``, ``3 replies``."""
    return f"{count} {word if count == 1 else _PLURALS.get(word, word + 's')}"


def size(count: int) -> str:
    """A byte count for people."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit}"
    return plural(count, "byte")


def fingerprints(recipients: Iterable[str]) -> str:
    """Keys by their word fingerprints, ``'a b c d e f' or 'g h i j k l'``."""
    names = [" ".join(words.fingerprint(r.encode())) for r in dict.fromkeys(recipients) if r]
    return " or ".join(names) or "no key"


def counts(entries: Iterable[Entry]) -> str:
    """``2 messages, 1 file``: the kinds present, in a fixed order."""
    found = Counter(e.kind for e in entries)
    return ", ".join(plural(found[kind], kind) for kind in KINDS if found[kind])


def reason(exc: Exception, item: BundleItem) -> str:
    """What went wrong with an item, in the CLI's words (lowercase; an OSError names its file)."""
    if isinstance(exc, NoIdentityMatchError):
        return f"no identity given opens it; it is encrypted to {fingerprints(item.recipients)}"
    if isinstance(exc, TipboxError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror.lower()
        return f"{printable(str(exc.filename))}: {text}" if exc.filename else text
    return str(exc).lower()


def _recipient(identity: Identity) -> str:
    return str(getattr(identity, "recipient", ""))


def check_identities(manifest: Manifest, identities: Sequence[Identity]) -> None:
    """Refuse at once keys that open nothing in the bundle (an old key alone still may)."""
    wanted = set(manifest.recipients) | {r for _, i in manifest.items() for r in i.recipients}
    if not {_recipient(i) for i in identities} & wanted:
        given = fingerprints(_recipient(i) for i in identities)
        raise NoIdentityMatchError(
            f"no identity given ({given}) is a recipient of this bundle",
            hint=f"use the newsroom identity of {fingerprints(manifest.recipients)}",
        )


class Summary:
    """The folder's sources before the run, to tell new sources from known ones."""

    def __init__(self, index: FolderIndex, out: Path) -> None:
        self.known, self.out = set(index.sources), out

    def show(self, entries: Sequence[Entry], manifest: Manifest, tried: int, failed: int) -> None:
        """Print a line per source with new items, then the summary line (always last)."""
        if not entries:
            held = plural(sum(1 for _ in manifest.items()) - tried, "item")
            if failed:
                print(f"nothing opened: {plural(failed, 'failure')} (see above)")
            else:
                print(f"nothing new: {self.out} holds {held} of this bundle, no other was opened")
            return
        by_source: dict[str, list[Entry]] = {}
        for entry in entries:
            by_source.setdefault(entry.source, []).append(entry)
        for designation, found in by_source.items():
            new = "" if designation in self.known else " (new source)"
            print(f"  {designation}: {counts(found)}{new}")
        total = size(sum(e.size for e in entries))
        print(
            f"opened {plural(len(entries), 'new item')} ({counts(entries)}, {total}) "
            f"from {plural(len(by_source), 'source')} into {self.out}; "
            f"read {self.out / 'index.html'}" + (f"; {plural(failed, 'failure')}" if failed else "")
        )
