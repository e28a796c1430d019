"""The files tor reads on a reload: written atomically, with tor's owner and private modes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from app.files import atomic_write
from app.onion.errors import TorConfigError, TorMissingError

if TYPE_CHECKING:
    from app.onion.layout import Layout


def _owner(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    with atomic_write(path, mode, overwrite=True) as handle:
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            os.fchown(handle.fileno(), *owner)
        handle.write(data)


def _restore(path: Path, data: bytes | None, mode: int, owner: tuple[int, int] | None) -> None:
    if data is None:
        path.unlink(missing_ok=True)
    else:
        _write(path, data, mode, owner)


def _tor_owner(layout: Layout) -> tuple[int, int]:
    if not layout.tor_dir.is_dir():
        raise TorMissingError(f"tor's data directory {layout.tor_dir} does not exist")
    return _owner(layout.tor_dir)


def _prepare_dir(path: Path, owner: tuple[int, int]) -> None:
    """A folder tree tor accepts as its own (tor exits on a reload if it does not): owned by
    tor's user, folders 0700, files 0600. Fixes what a restore or a hand copy got wrong."""
    path.mkdir(mode=0o700, exist_ok=True)
    for item in [path, *path.rglob("*")]:
        if item.is_symlink():
            raise TorConfigError(f"{item} is a symbolic link; tor wants plain files here")
        info = item.lstat()
        if (info.st_uid, info.st_gid) != owner:
            os.chown(item, *owner)
        mode = 0o700 if item.is_dir() else 0o600
        if info.st_mode & 0o777 != mode:
            item.chmod(mode)
