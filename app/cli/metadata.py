"""Metadata in opened files: what mat2 finds that may identify a source, and cleaned copies.

mat2 runs as a separate program on each file (never on the server): ``--show`` to list what it
finds, and, with ``tipbox open --clean``, once more to write ``NAME.cleaned.EXT`` beside it.
A file mat2 cannot read is said so; it is never called clean.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from app.cli.terminal import printable, say

MAT2_TIMEOUT = 300


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


def check_metadata(paths: Sequence[Path], clean: bool) -> None:
    """Warn about files that carry metadata which may identify the source."""
    mat2 = shutil.which("mat2")
    if paths and mat2 is None:
        say("hint", "mat2 is not installed: files were not checked for identifying metadata")
    for path in paths:
        if mat2 is None:
            break
        found = mat2_show(mat2, path)
        if found is None:
            say("warning", f"{path}: mat2 cannot check this kind of file; check it yourself")
        elif found:
            say("warning", f"{path} carries metadata that may identify the source:")
            for line in found:
                print(f"    {line}", file=sys.stderr)
            cleaned = mat2_clean(mat2, path) if clean else None
            if cleaned:
                print(f"cleaned copy: {cleaned}")
            elif clean:
                say("warning", f"{path}: mat2 could not write a cleaned copy")
