"""Helpers for the container, envelope, store and upload tests: age, GNU tar, tar reading, scans."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sqlite3
import subprocess
import tarfile
from pathlib import Path

from app.crypto import X25519Identity, decrypt
from app.server.incoming import TEMP_PREFIX
from app.server.store import Store

AGE = "/usr/bin/age"
TIMEOUT = 60
# GNU tar prints and restores names in the locale's charset: use UTF-8, never "C".
UTF8_ENV = {**os.environ, "LC_ALL": "C.UTF-8"}
ITEM_NAME = re.compile(r"(\.incoming-)?[0-9a-f]{32}")


def identity_file(directory: Path, identity: X25519Identity) -> Path:
    """Write ``identity`` as an age identity file, as ``age-keygen`` would; return its path."""
    path = directory / "identity.txt"
    path.write_text(f"{identity}\n", encoding="ascii")
    path.chmod(0o600)
    return path


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _blocks(data: bytes) -> bytes:
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def pax_container(records: bytes, data: bytes = b"x") -> bytes:
    """A container whose one member has a pax header of ``records`` (any bytes) before it."""
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(records)
    member = tarfile.TarInfo("x")
    member.size = len(data)
    head = pax.tobuf(tarfile.USTAR_FORMAT) + _blocks(records) + member.tobuf(tarfile.USTAR_FORMAT)
    return head + _blocks(data) + bytes(2 * tarfile.BLOCKSIZE)


def sparse_member(name: str, real_size: int, data: bytes = b"x") -> bytes:
    """A tar member that is a PAX 1.0 sparse file (as GNU tar writes them): a few blocks that
    a tar reader expands to ``real_size`` bytes, ``data`` at the end and holes before it."""
    records = b"".join(
        _pax_record(key, str(value))
        for key, value in [
            ("GNU.sparse.major", 1),
            ("GNU.sparse.minor", 0),
            ("GNU.sparse.name", name),
            ("GNU.sparse.realsize", real_size),
        ]
    )
    sparse_map = _blocks(f"1\n{real_size - len(data)}\n{len(data)}\n".encode())
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(records)
    member = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
    member.size = len(sparse_map) + len(data)
    head = pax.tobuf(tarfile.USTAR_FORMAT) + _blocks(records) + member.tobuf(tarfile.USTAR_FORMAT)
    return head + _blocks(sparse_map + data)


def sparse_container(name: str, real_size: int, data: bytes = b"x") -> bytes:
    """A container whose one member is a sparse file (:func:`sparse_member`)."""
    return sparse_member(name, real_size, data) + bytes(2 * tarfile.BLOCKSIZE)


def symlink_container(name: str) -> bytes:
    """A container whose one member is a symbolic link to /etc/passwd."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info.tobuf(tarfile.PAX_FORMAT) + bytes(2 * tarfile.BLOCKSIZE)


def age_decrypt(item: Path, key_file: Path) -> bytes:
    """The plaintext of ``item`` according to Debian's ``age -d``."""
    proc = subprocess.run(
        [AGE, "-d", "-i", key_file, item], capture_output=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    return proc.stdout


def age_into_tar(item: Path, key_file: Path, dest: Path) -> None:
    """Run ``age -d -i key_file item | tar -x -C dest`` as a real pipe."""
    with subprocess.Popen(
        [AGE, "-d", "-i", key_file, item], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as age:
        tar = subprocess.run(
            ["tar", "-x", "-C", dest],
            stdin=age.stdout,
            capture_output=True,
            env=UTF8_ENV,
            timeout=TIMEOUT,
            check=False,
        )
        age.stdout.close()  # type: ignore[union-attr]
        age_err = age.stderr.read()  # type: ignore[union-attr]
        age.stderr.close()  # type: ignore[union-attr]
    # tar stops reading at the end-of-archive blocks, so age may die of SIGPIPE while it writes
    # the padding: a shell reports the pipeline's status as tar's, and so do we.
    assert age.returncode in (0, -signal.SIGPIPE), age_err
    assert tar.returncode == 0, tar.stderr


def tar_stdin(args: list[str], stream: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run GNU ``tar ARGS`` reading the archive from stdin (a pipe: no seeking possible)."""
    proc = subprocess.run(
        ["tar", *args], input=stream, capture_output=True, env=UTF8_ENV, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"", proc.stderr  # no warnings either
    return proc


def tree(root: Path) -> list[str]:
    """Every path under ``root``, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def read_member(plain: bytes) -> tuple[str, bytes, str | None]:
    """Read a container with Python's tarfile in stream mode: (name, data, mime type)."""
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r|") as archive:
        member = archive.next()
        assert member is not None
        assert member.isfile()
        assert member.mtime == 0  # no time inside the ciphertext either
        extracted = archive.extractfile(member)
        assert extracted is not None
        data = extracted.read()
        assert archive.next() is None  # exactly one member, the padding is invisible
    return member.name, data, member.pax_headers.get("SCHILY.xattr.user.mime_type")


def decrypt_path(path: Path, identity: X25519Identity) -> bytes:
    """The plaintext of the age file at ``path``, decrypted by ``app.crypto``."""
    out = io.BytesIO()
    with path.open("rb") as handle:
        decrypt(handle, out, [identity])
    return out.getvalue()


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every regular file under ``root`` whose bytes contain ``needle`` (read in blocks)."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        tail = b""
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                if needle in tail + block:
                    found.append(path)
                    break
                tail = block[-len(needle) :]
    return found


def temp_files(store: Store) -> list[str]:
    """Names of the store's temporary (uncommitted) item files."""
    return sorted(p.name for p in store.items.glob(f"{TEMP_PREFIX}*"))


def all_rows(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the store's database, read directly with sqlite3."""
    with contextlib.closing(sqlite3.connect(store.db_path)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}  # noqa: S608
