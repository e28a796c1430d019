"""The folder index of ``tipbox open``: which items a folder holds, so a bundle opens only once.

``OUT/tipbox-index.jsonl`` is one JSON object a line, only ever appended to::

    {"run": 2, "day": "2026-11-22", "recipients": ["age1…"]}           a run that added items
    {"source": {"designation": …, "reply_recipient": …, "last_active_day": …}}
    {"item": {"id": …, "source": …, "seq": 3, "submission": 1, "kind": "file",
              "day": …, "name": "0003 file with 0001 scan.jpg", "size": 1234, "run": 2}}
    {"metadata": {"id": …, "verdict": "identifying", "fields": […], "report": "metadata/…"}}

An item's line is appended right after its file is complete, so a killed run loses at most the
line of the file it had just written (then found under its name next time: see ``open.py``).
Appending keeps a run linear in its new items, where rewriting a JSON file per item would be
quadratic. The last line of a killed run may be cut short: it is ignored. The index is the
newsroom's plaintext side (file names), so it lives with the plaintext, mode 0600.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.bundle import BundleItem, BundleSource, Manifest
from app.container import safe_name
from app.errors import BundleError

INDEX_NAME = "tipbox-index.jsonl"
VERDICTS = ("identifying", "none", "unreadable", "unchecked")


@dataclass
class Entry:
    """One item the folder holds."""

    id: str
    source: str
    seq: int
    submission: int
    kind: str
    day: str
    name: str
    size: int
    run: int
    verdict: str = "unchecked"
    fields: list[str] = field(default_factory=list)
    report: str | None = None


@dataclass
class Held:
    """A source as the folder knows it: its reply key, last day and items in order."""

    designation: str
    reply_recipient: str
    last_active_day: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def folder(self) -> str:
        """The source's folder name (as in the bundle)."""
        return "-".join(self.designation.split())


def item_name(item: BundleItem, member_name: str) -> str:
    """An item's file name: its number first, so the folder lists the conversation in order;
    a file always says ``file`` (a file named ``message.txt`` cannot pass for a message)."""
    if item.kind != "file":
        return f"{item.seq:04d} {item.kind}.txt"
    joined = f" with {item.submission:04d}" if item.submission != item.seq else ""
    return safe_name(f"{item.seq:04d} file{joined} {safe_name(member_name)}")


class FolderIndex:
    """The index of one output folder, read whole at the start and appended to as items land."""

    def __init__(self, out: Path) -> None:
        self.path = out / INDEX_NAME
        self.sources: dict[str, Held] = {}
        self.ids: dict[str, Entry] = {}
        self.run = 0
        self.recipients: tuple[str, ...] = ()
        self._handle: IO[str] | None = None
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        with self.path.open(encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line) if line else None
            except ValueError:
                if number == len(lines):  # the last line of a killed run
                    break
                raise BundleError(f"{self.path} is damaged (line {number})") from None
            try:
                self._apply(record)
            except (KeyError, TypeError, AttributeError):
                raise BundleError(f"{self.path} is damaged (line {number})") from None

    def _apply(self, record: Any) -> None:
        if record is None:
            return
        if "run" in record:
            self.run, self.recipients = record["run"], tuple(record["recipients"])
        elif "source" in record:
            source = record["source"]
            held = self.sources.get(source["designation"])
            if held is None:
                self.sources[source["designation"]] = Held(**source)
            else:
                held.reply_recipient = source["reply_recipient"]
                held.last_active_day = source["last_active_day"]
        elif "item" in record:
            entry = Entry(**record["item"])
            self.ids[entry.id] = entry
            self.sources[entry.source].entries.append(entry)
        elif "metadata" in record:
            found = record["metadata"]
            entry = self.ids[found.pop("id")]
            entry.verdict, entry.fields, entry.report = (
                found["verdict"],
                found["fields"],
                found["report"],
            )

    def _append(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            self._handle = os.fdopen(fd, "w", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the index file (every line already flushed)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def new_items(self, manifest: Manifest) -> list[tuple[BundleSource, list[BundleItem]]]:
        """Each source of the bundle with the items this folder does not hold yet."""
        found = [(s, [i for i in s.items if i.id not in self.ids]) for s in manifest.sources]
        return [(source, items) for source, items in found if items]

    def begin(self, manifest: Manifest) -> None:
        """Start a run that adds items: it gets the next run number."""
        self.run += 1
        self.recipients = manifest.recipients
        self._append({"run": self.run, "day": manifest.day, "recipients": list(self.recipients)})

    def source(self, source: BundleSource) -> Held:
        """Record a source (new, or with a newer reply key or last day); return it."""
        held = self.sources.get(source.designation)
        fields = (source.reply_recipient, source.last_active_day)
        if held is None or (held.reply_recipient, held.last_active_day) != fields:
            self._apply({"source": self._source_record(source)})
            self._append({"source": self._source_record(source)})
        return self.sources[source.designation]

    @staticmethod
    def _source_record(source: BundleSource) -> dict[str, str]:
        keys = ("designation", "reply_recipient", "last_active_day")
        return {key: getattr(source, key) for key in keys}

    def add(self, source: BundleSource, item: BundleItem, name: str, size: int) -> Entry:
        """Record an item whose file is complete."""
        entry = Entry(
            item.id, source.designation, item.seq, item.submission, item.kind, item.day, name,
            size, self.run,
        )  # fmt: skip
        record = {key: value for key, value in vars(entry).items() if key not in _METADATA}
        self._append({"item": record})
        self._apply({"item": record})
        return entry

    def verdict(self, entry: Entry, verdict: str, fields: list[str], report: str | None) -> None:
        """Record what mat2 found in an item's file."""
        record = {"id": entry.id, "verdict": verdict, "fields": fields, "report": report}
        self._append({"metadata": record})
        self._apply({"metadata": record})

    def manifest(self) -> Manifest:
        """What ``tipbox reply`` needs, as a manifest: every source with its reply key."""
        if not self.recipients:
            raise BundleError(f"{self.path} names no newsroom recipients")
        sources = tuple(
            BundleSource(h.designation, h.reply_recipient, h.last_active_day, ())
            for h in self.sources.values()
        )
        return Manifest("1970-01-01", self.recipients, sources)


_METADATA = ("verdict", "fields", "report")
