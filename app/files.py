"""Atomic file output: a file appears under its name complete, or not at all.

Used by the CLI (decrypted output on the air-gapped machine) and by the store (ciphertext on the
server). The temporary file lives in the target directory, so the final rename never crosses a
file system; it is created 0600 and removed on any failure, so no half-written file survives.
Standard library only: the air-gapped command imports this.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

NAME_MAX = 255  # bytes in one file name, on every Linux file system
_TEMP_EXTRA = len("..") + 16 + len(".part")  # what a temporary name adds to its file's
_TEMPORARY = re.compile(r"\..*\.[0-9a-f]{16}\.part", re.DOTALL)

MAX_NAME_BYTES = 255  # most file systems' limit on one name


def temporary_name(name: str) -> str:
    """``.NAME.<16 hex digits>.part``, with NAME cut to keep it within ``NAME_MAX`` bytes.

    A file name may use all 255 bytes; its temporary name must still fit (a 233-byte name made
    a 256-byte one, and the write failed). The random digits keep it unique however it is cut;
    the cut counts UTF-8 bytes and never splits a character.
    """
    room = NAME_MAX - _TEMP_EXTRA
    short = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f".{short}.{secrets.token_hex(8)}.part"


def remove_leftovers(directory: Path) -> int:
    """Remove the temporary files of atomic writes that never finished; return how many.

    A process killed outright (``kill -9``, a power cut) cannot remove its own. Call this only
    while nothing else writes in ``directory``: a write in progress looks just the same.
    """
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if _TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_write(
    path: Path, mode: int = 0o600, *, overwrite: bool = False, durable: bool = True
) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block finishes without error.

    ``durable`` also flushes the data and the directory entry to disk before returning (the
    store wants that); the CLI turns it off, like ``age`` and ``cp``, for speed on big files.
    """
    directory = path.parent
    tmp = directory / temporary_name(path.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:  # name the user's path, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the name exists, where rename() would silently replace it.
            os.link(tmp, path)
            os.unlink(tmp)
        if durable:
            _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def contained(root: Path, *parts: str) -> Path:
    """``root / parts`` resolved, refusing anything that would land outside ``root``."""
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise ValueError("path escapes its root")
    return target


def numbered(name: str, number: int) -> str:
    """``name`` with `` (number)`` before its extension, within 255 bytes."""
    stem, dot, ext = name.rpartition(".")
    if not (dot and stem and len(ext) <= 16):
        stem, ext = name, ""
    suffix, ext = f" ({number})", f".{ext}" if ext else ""
    while len(f"{stem}{suffix}{ext}".encode()) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return f"{stem}{suffix}{ext}"


def free_path(directory: Path, name: str) -> Path:
    """The first of ``name``, ``name (2)``… that does not exist in ``directory``."""
    candidate, number = name, 1
    while os.path.lexists(directory / candidate):
        number += 1
        candidate = numbered(name, number)
    return directory / candidate
