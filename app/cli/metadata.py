"""Metadata in opened files: what mat2 finds, what of it may identify a source, cleaned copies.

mat2 runs as a separate program on each file (never on the server): ``--show`` to list what it
finds, and, with ``tipbox open --clean``, once more to write ``NAME.cleaned.EXT`` beside it.
mat2 lists everything (a JPEG's colour profile alone is thirty lines), so only the fields that
can point at a person are shown (:data:`IDENTIFYING`: author, creator and software, GPS, device
make, model and serial, dates, comments); the whole report goes to a side file. A file mat2
cannot read is said so; it is never called clean.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.cli.index import Entry, FolderIndex
from app.cli.terminal import printable, say
from app.errors import BundleError
from app.files import atomic_write

MAT2_TIMEOUT = 300
# Matched against a field's name with spaces, dashes and underscores removed, lowercased.
IDENTIFYING = re.compile(
    r"author|artist|creator|producer|software|tool|owner|copyright|byline|writer|lastmodifiedby"
    r"|company|manager|user|email|hostcomputer|gps|latitude|longitude|altitude|location|city"
    r"|country|make|model|serial|bodyid|lensid|uniqueid|date|datetime|timestamp|createtime"
    r"|modifytime|comment|description|title|subject|keywords|note"
)
# A colour profile names the display it was made for and its maker: noise, not a person.
_PROFILE = re.compile(r"^(profile|device|cmm|primaryplatform|connectionspace|colorspace)")
REPORTS = "metadata"


@dataclass
class Finding:
    """What mat2 said of one file: ``identifying``, ``none``, or ``unreadable``."""

    verdict: str
    identifying: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)


def identifying(lines: list[str]) -> list[str]:
    """The ``Name: value`` lines of a mat2 report whose name may point at a person."""
    found = []
    for line in lines:
        name = re.sub(r"[\s_\-]", "", line.partition(":")[0]).lower()
        if IDENTIFYING.search(name) and not _PROFILE.match(name):
            found.append(line)
    return found


def mat2_show(mat2: str, path: Path) -> list[str] | None:
    """The metadata ``mat2 --show`` finds in ``path``; ``None`` if mat2 cannot check it."""
    proc = subprocess.run(  # noqa: S603 - mat2 from PATH, an absolute file name, no shell
        [mat2, "--show", "--", str(path.resolve())],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=MAT2_TIMEOUT,
        check=False,
    )
    lines = proc.stdout.decode("utf-8", "replace").splitlines()
    if proc.returncode != 0 or not lines or lines[0].startswith("[-]"):
        return None
    if not lines[0].startswith("[+]"):
        return []  # "No metadata found in …"
    return [printable(line.strip()) for line in lines[1:] if line.strip()]


def inspect(mat2: str, path: Path) -> Finding:
    """mat2's verdict on one file."""
    lines = mat2_show(mat2, path)
    if lines is None:
        return Finding("unreadable")
    found = identifying(lines)
    return Finding("identifying" if found else "none", found, lines)


def mat2_clean(mat2: str, path: Path) -> Path | None:
    """Have mat2 write a cleaned copy beside ``path`` (``NAME.cleaned.EXT``); return it."""
    proc = subprocess.run(  # noqa: S603 - as above
        [mat2, "--", str(path.resolve())],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=MAT2_TIMEOUT,
        check=False,
    )
    cleaned = path.with_name(f"{path.stem}.cleaned{path.suffix}")
    return cleaned if proc.returncode == 0 and cleaned.is_file() else None


def check_files(index: FolderIndex, entries: Sequence[Entry], out: Path, clean: bool) -> None:
    """Check new files with mat2: record each verdict, keep each report, warn about identifying
    fields only (a file mat2 cannot read is counted in one warning)."""
    mat2 = shutil.which("mat2")
    if mat2 is None:
        if entries:
            say("hint", "mat2 is not installed: files were not checked for identifying metadata")
        return
    unreadable = 0
    for entry in entries:
        path = out / index.sources[entry.source].folder / entry.name
        finding = inspect(mat2, path)
        report = _keep_report(path, finding) if finding.report else None
        index.verdict(entry, finding.verdict, finding.identifying, report)
        unreadable += finding.verdict == "unreadable"
        if finding.identifying:
            say("warning", f"{path} carries metadata that may identify the source:")
            for line in finding.identifying:
                print(f"    {line}", file=sys.stderr)
        if clean and finding.report:
            _clean(mat2, path)
    if unreadable:
        say("warning", f"mat2 cannot check {unreadable} of the new files: check them yourself")


def _keep_report(path: Path, finding: Finding) -> str:
    """Write mat2's whole report beside the file (``metadata/NAME.txt``); its relative name."""
    folder = path.parent / REPORTS
    if folder.is_symlink():  # planted to lead elsewhere: never followed
        raise BundleError(f"{folder} is a symbolic link", hint="choose another --out folder")
    folder.mkdir(mode=0o700, exist_ok=True)
    name = path.name.encode()[:200].decode("utf-8", "ignore") + ".txt"
    with atomic_write(folder / name, 0o600, overwrite=True, durable=False) as handle:
        handle.write("\n".join(finding.report).encode() + b"\n")
    return f"{REPORTS}/{name}"


def _clean(mat2: str, path: Path) -> None:
    cleaned = mat2_clean(mat2, path)
    if cleaned:
        print(f"cleaned copy: {cleaned}")
    else:
        say("warning", f"{path}: mat2 could not write a cleaned copy")
