"""``tipbox open`` and ``tipbox reply`` end to end, and the server's check of a reply."""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from app import cli
from app.bundle import BundleItem, BundleSource, parse_manifest, read_bundle, write_bundle
from app.cli import open as opening
from app.crypto import (
    X25519Identity,
    encrypt_identity,
)
from app.crypto.keyfile import identity_file_text
from app.days import today
from app.errors import BundleError
from app.files import numbered
from app.reply import check_reply
from app.server.store import Item
from tests.helpers import (
    AIR_GAPPED_FORBIDDEN,
    PASSPHRASE,
    TIPBOX,
    assert_cli_error,
    encrypt_bytes,
    finish,
    leftovers,
    payload_offset,
    run,
    spawn,
    tipbox,
)
from tests.store_helpers import (
    AGE,
    UTF8_ENV,
    decrypt_path,
    pax_container,
    read_member,
    sparse_container,
)
from tests.test_bundle import DAY, Newsroom

TIMEOUT = 60
MAT2 = shutil.which("mat2")
needs_mat2 = pytest.mark.skipif(MAT2 is None, reason="mat2 is not installed (apt install mat2)")


@pytest.fixture
def newsroom(tmp_path: Path) -> Newsroom:
    return Newsroom(tmp_path)


def open_bundle(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return tipbox("open", "b.tar", "-i", "newsroom-identity.txt", "--out", "out", *args, cwd=cwd)


def folder(newsroom: Newsroom, source_id: str) -> str:
    """The folder ``tipbox open`` writes a source into: its designation's words joined by '-'."""
    return newsroom.designation(source_id).replace(" ", "-")


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- opening a bundle --------------------------------------------------------------------------

PDF, PDF2, BIG = os.urandom(70_000), os.urandom(3000), os.urandom(200_000)


def _busy(newsroom: Newsroom) -> tuple[str, str]:
    first = newsroom.submit("first ✓ message", [("Überweisung März.pdf", PDF), ("r.pdf", PDF2)])
    newsroom.submit("second message", [("r.pdf", BIG), ("報告.txt", "機密".encode())], first)
    newsroom.store.add_reply_text(first, "we read it")
    second = newsroom.submit(
        None, [("../../escape.sh", b"#!/bin/sh\n"), ("\x1b[31mred.txt", b""), ("..\\x.ini", b"[x]")]
    )
    return folder(newsroom, first), folder(newsroom, second)


def test_open_restores_everything(tmp_path: Path, newsroom: Newsroom) -> None:
    first, second = _busy(newsroom)
    newsroom.bundle(tmp_path / "b.tar")
    proc = open_bundle(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b"error" not in proc.stderr
    summary = proc.stdout.decode()
    assert "2 sources, 2 messages, 7 files, 1 reply" in summary
    assert files_under(tmp_path / "out") == {
        "manifest.json": (tmp_path / "out/manifest.json").read_bytes(),
        f"{first}/message-1.txt": "first ✓ message".encode(),
        f"{first}/message-2.txt": b"second message",
        f"{first}/files/Überweisung März.pdf": PDF,
        f"{first}/files/r.pdf": PDF2,
        f"{first}/files/r (2).pdf": BIG,
        f"{first}/files/報告.txt": "機密".encode(),
        f"{first}/replies/reply-1.txt": b"we read it",
        f"{second}/files/escape.sh": b"#!/bin/sh\n",
        f"{second}/files/[31mred.txt": b"",
        f"{second}/files/\\x.ini": b"[x]",  # a backslash is a character, ".." hid the file
    }
    copied = parse_manifest((tmp_path / "out/manifest.json").read_bytes())
    assert copied == read_bundle(tmp_path / "b.tar")[0]
    assert not (tmp_path / "escape.sh").exists()
    assert all(leftovers(p) == [] for p in (tmp_path / "out").rglob("*") if p.is_dir())
    assert oct((tmp_path / "out" / first / "message-1.txt").stat().st_mode & 0o777) == "0o600"


def test_open_never_overwrites(tmp_path: Path, newsroom: Newsroom) -> None:
    first, _ = _busy(newsroom)
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    before = files_under(tmp_path / "out")
    (tmp_path / "out" / first / "message-1.txt").write_bytes(b"my notes")
    before[f"{first}/message-1.txt"] = b"my notes"
    again = open_bundle(tmp_path)
    assert again.returncode == 0, again.stderr
    after = files_under(tmp_path / "out")
    assert {k: after[k] for k in before if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }
    assert after[f"{first}/message-1 (2).txt"] == "first ✓ message".encode()
    assert after[f"{first}/files/r (3).pdf"] == PDF2
    assert after[f"{first}/files/r (4).pdf"] == BIG
    assert after[f"{first}/replies/reply-1 (2).txt"] == b"we read it"


@pytest.mark.parametrize(
    ("name", "number", "expected"),
    [
        ("r.pdf", 2, "r (2).pdf"),
        ("archive.tar.gz", 3, "archive.tar (3).gz"),
        ("README", 2, "README (2)"),
        ("x." + "y" * 20, 2, "x." + "y" * 20 + " (2)"),
        ("é" * 127, 10, "é" * 125 + " (10)"),
        ("a" * 251 + ".txt", 2, "a" * 247 + " (2).txt"),
    ],
)
def test_numbered_names_fit(name: str, number: int, expected: str) -> None:
    assert numbered(name, number) == expected
    assert len(expected.encode()) <= 255


LONG_NAMES = [
    "x" * 240 + ".pdf",  # 244 bytes: its temporary ".NAME.<hex>.part" would be 267
    "報告書" * 26,  # 78 characters, 234 bytes in UTF-8
    "é" * 120 + ".txt",  # 244 bytes
    "y" * 255,  # the longest a name can be
]


def test_long_file_names(tmp_path: Path, newsroom: Newsroom) -> None:
    """Names up to 255 bytes are written whole, and every other item with them."""
    files = [(name, name.encode()[:50]) for name in LONG_NAMES]
    source = newsroom.submit("before", [("a.txt", b"a"), *files])
    newsroom.submit("after", source_id=source)
    newsroom.bundle(tmp_path / "b.tar")
    proc = open_bundle(tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    written = tmp_path / "out" / folder(newsroom, source)
    expected = {f"files/{name}": data for name, data in files}
    assert files_under(written) == {
        "message-1.txt": b"before",
        "message-2.txt": b"after",
        "files/a.txt": b"a",
        **expected,
    }
    again = open_bundle(tmp_path)  # taken names: numbered, still within 255 bytes
    assert again.returncode == 0, again.stderr.decode()
    assert len(files_under(written)) == 2 * (3 + len(LONG_NAMES))
    assert all(leftovers(p) == [] for p in written.rglob("*") if p.is_dir())


def test_a_failed_write_stops_nothing(
    tmp_path: Path,
    newsroom: Newsroom,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A write that fails (a full disk, injected) is that item's failure only."""
    source = newsroom.submit("before", [("a.txt", b"a"), ("full.bin", b"f"), ("z.txt", b"z")])
    newsroom.bundle(tmp_path / "b.tar")
    real = opening.atomic_write

    def atomic_write(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path.name == "full.bin":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(opening, "atomic_write", atomic_write)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")  # no mat2: not what this test is about
    assert cli.main(["open", "b.tar", "-i", "newsroom-identity.txt", "--out", "out"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    designation = newsroom.designation(source)
    assert f"(file of {designation!r}): " in err
    assert "full.bin: no space left on device" in err
    assert "tipbox: error: 1 item could not be opened" in err
    written = tmp_path / "out" / folder(newsroom, source)
    assert files_under(written) == {
        "message-1.txt": b"before",
        "files/a.txt": b"a",
        "files/z.txt": b"z",
    }


def _container(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if kind != b"none":
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
            info.linkname = "/etc/passwd" if kind != tarfile.REGTYPE else ""
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue() + bytes(4096)


def _crafted(
    tmp_path: Path, identity: X25519Identity, items: Sequence[tuple[str, bytes]]
) -> list[str]:
    """A bundle whose items hold containers made by hand (as a hostile server could); their ids."""
    newsroom, reply = str(identity.recipient), str(X25519Identity.generate().recipient)
    blobs = {secrets.token_hex(16): (k, encrypt_bytes(p, [identity.recipient])) for k, p in items}
    entries = tuple(BundleItem(i, k, DAY, len(b), (newsroom,)) for i, (k, b) in blobs.items())
    source = BundleSource("amber falcon", reply, DAY, entries)
    with (tmp_path / "b.tar").open("wb") as handle:
        write_bundle(handle, [source], lambda i: io.BytesIO(blobs[i.id][1]), recipients=[newsroom])
    return list(blobs)


def test_hostile_containers(tmp_path: Path, newsroom: Newsroom) -> None:
    ids = _crafted(
        tmp_path,
        newsroom.identity,
        [
            ("file", _container("../../evil.sh", b"evil")),
            ("file", _container("/etc/passwd", b"root")),
            ("file", _container("\x1b]0;pwned\x07x\n.txt", b"ctl")),
            ("file", _container("..", b"dots")),
            ("message", _container("evil.exe", b"a message")),
            ("file", _container("link", kind=tarfile.SYMTYPE)),
            ("file", _container("hard", kind=tarfile.LNKTYPE)),
            ("file", _container("dir/", kind=tarfile.DIRTYPE)),
            ("file", _container("", kind=b"none")),
        ],
    )
    proc = open_bundle(tmp_path)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "Traceback" not in err
    for failed in ids[5:]:
        assert f"item {failed} (file of 'amber falcon'): " in err
    assert err.count("does not hold a regular file") == 4
    assert "tipbox: error: 4 items could not be opened" in err
    assert files_under(tmp_path / "out" / "amber-falcon") == {
        "files/evil.sh": b"evil",
        "files/passwd": b"root",
        "files/]0;pwnedx.txt": b"ctl",
        "files/file": b"dots",
        "message-1.txt": b"a message",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "b.tar",
        "newsroom-identity.txt",
        "out",
        "server",
    ]


def test_sparse_members_are_refused(tmp_path: Path, newsroom: Newsroom) -> None:
    """A few blocks that a tar reader expands to 64 MiB of zeros: refused, the rest written."""
    bomb = sparse_container("bomb.bin", 64 << 20)
    assert len(bomb) < 4096
    ids = _crafted(
        tmp_path, newsroom.identity, [("file", bomb), ("file", _container("ok.txt", b"ok"))]
    )
    proc = open_bundle(tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert f"item {ids[0]} (file of 'amber falcon'): the item does not hold a regular file" in err
    assert files_under(tmp_path / "out" / "amber-falcon") == {"files/ok.txt": b"ok"}


DAMAGED = {  # containers whose headers tarfile rejects with ValueError or OverflowError
    "sparse_size_not_a_number": pax_container(b"28 GNU.sparse.realsize=12x4\n"),
    "record_length_huge": pax_container(b"99999999999999999999 path=x\n"),
    "sparse_map_not_a_number": pax_container(
        b"22 GNU.sparse.major=1\n22 GNU.sparse.minor=0\n", b"\xb3999\n" + bytes(506)
    ),
}


@pytest.mark.parametrize("payload", DAMAGED.values(), ids=list(DAMAGED))
def test_damaged_container_headers_are_the_items_failure(tmp_path: Path, payload: bytes) -> None:
    """What tarfile raises on them is not a TarError: it must still fail only that item."""
    plain = opening.Plaintext(iter([memoryview(payload)]), lambda _: None)
    with pytest.raises(BundleError, match="damaged"):
        opening.write_member(plain, lambda name: tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_a_member_never_outgrows_its_payload(tmp_path: Path) -> None:
    """However a tar reader expands a member, the copy stops at what the payload held."""
    payload = sparse_container("bomb.bin", 1 << 20)
    plain = opening.Plaintext(iter([memoryview(payload)]), lambda _: None)
    with tarfile.open(fileobj=io.BufferedReader(plain), mode="r|") as archive:
        member = archive.next()
        assert member is not None
        data = archive.extractfile(member)
        assert data is not None
        with (tmp_path / "out").open("wb") as out, pytest.raises(BundleError, match="more than"):
            opening.copy_member(data, out, plain)
    assert (tmp_path / "out").stat().st_size <= len(payload)


@pytest.mark.parametrize("link", ["amber-falcon", "amber-falcon/files"])
def test_links_in_the_output_are_not_followed(
    tmp_path: Path, newsroom: Newsroom, link: str
) -> None:
    _crafted(tmp_path, newsroom.identity, [("file", _container("x.txt", b"x"))])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out" / link).parent.mkdir(parents=True)
    (tmp_path / "out" / link).symlink_to(elsewhere)
    proc = open_bundle(tmp_path)
    assert proc.returncode == 1
    assert "leads outside" in proc.stderr.decode()
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("where", ["header", "first_chunk", "padding"])
def test_tampered_item_is_refused_and_the_rest_restored(
    tmp_path: Path, newsroom: Newsroom, where: str
) -> None:
    # 130 kB pad to 256 KiB: the last of the four chunks is padding only, which tar never reads.
    source = newsroom.submit("before", [("victim.bin", os.urandom(130_000))])
    newsroom.submit("after", source_id=source)
    bundle = newsroom.bundle(tmp_path / "b.tar")
    victim = next(i for i in newsroom.store.items_of(source) if i.kind == "file")
    cipher = (newsroom.store.items / victim.id).read_bytes()
    spot = {"header": 40, "first_chunk": payload_offset(cipher) + 5, "padding": len(cipher) - 3}
    data = bytearray(bundle.read_bytes())
    data[data.index(cipher) + spot[where]] ^= 0x01
    bundle.write_bytes(bytes(data))
    proc = open_bundle(tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert f"tipbox: error: item {victim.id} (file of " in err
    assert "tipbox: error: 1 item could not be opened" in err
    written = tmp_path / "out" / folder(newsroom, source)
    assert files_under(written) == {"message-1.txt": b"before", "message-2.txt": b"after"}
    assert "1 failure" in proc.stdout.decode()


def _killed_mid_write(tmp_path: Path, newsroom: Newsroom) -> Path:
    """Start ``tipbox open`` on a bundle of one big file, kill -9 it mid-write; its folder."""
    source = newsroom.submit("hello", [("big.bin", os.urandom(1 << 20) * 96)])
    newsroom.bundle(tmp_path / "b.tar")
    files = tmp_path / "out" / folder(newsroom, source) / "files"
    proc = subprocess.Popen(  # noqa: S603 - our own command
        [*TIPBOX, "open", "b.tar", "-i", "newsroom-identity.txt", "--out", "out"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(20_000):  # at most 20 s
            if proc.poll() is not None or (files.is_dir() and leftovers(files)):
                break
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return files


@pytest.mark.slow
def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path, newsroom: Newsroom) -> None:
    """kill -9 leaves a hidden, half-written plaintext file; the next run removes it, says so."""
    files = _killed_mid_write(tmp_path, newsroom)
    (left,) = leftovers(files)
    assert left.startswith(".big.bin.")
    stranger = files / ".notes.txt.part"  # not a name atomic_write makes: left alone
    stranger.write_bytes(b"mine")
    proc = open_bundle(tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "tipbox: warning: removed 1 unfinished file left in out by an interrupted run" in err
    assert leftovers(files) == [".notes.txt.part"]
    assert (files / "big.bin").stat().st_size == 96 << 20


def test_one_run_at_a_time_per_folder(tmp_path: Path, newsroom: Newsroom) -> None:
    """A second run into a folder being written would take its unfinished files for leftovers."""
    newsroom.submit("hello")
    newsroom.bundle(tmp_path / "b.tar")
    (tmp_path / "out").mkdir()
    fd = os.open(tmp_path / "out", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a run in progress holds it
        assert_cli_error(open_bundle(tmp_path), "another tipbox open is writing into out")
    finally:
        os.close(fd)
    assert open_bundle(tmp_path).returncode == 0


@pytest.mark.parametrize("cut", [100, 2000, -1024, -1])
def test_truncated_bundle(tmp_path: Path, newsroom: Newsroom, cut: int) -> None:
    newsroom.submit("hello", [("a.bin", os.urandom(5000))])
    bundle = newsroom.bundle(tmp_path / "b.tar")
    bundle.write_bytes(bundle.read_bytes()[:cut])
    assert_cli_error(open_bundle(tmp_path), "bundle")
    assert not (tmp_path / "out").exists()


def test_refused_bundles(tmp_path: Path, newsroom: Newsroom) -> None:
    newsroom.submit("hello")
    data = bytearray(newsroom.bundle(tmp_path / "b.tar").read_bytes())
    item = next(iter(read_bundle(tmp_path / "b.tar")[0].items()))[1]
    start = data.index(f'"path": "{item.path}"'.encode())
    outside = f'"path": "../../{item.id}.age"'.encode()  # as long as "items/…": same offsets
    data[start : start + len(outside)] = outside
    (tmp_path / "b.tar").write_bytes(bytes(data))
    assert_cli_error(open_bundle(tmp_path), "points outside the bundle")
    with tarfile.open(tmp_path / "b.tar", "a") as tar:  # and a symbolic link member
        info = tarfile.TarInfo("items/link.age")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(info)
    assert_cli_error(open_bundle(tmp_path), "bundle")
    assert not (tmp_path / "out").exists()


def test_deeply_nested_manifest(tmp_path: Path) -> None:
    """A manifest nested 100,000 deep: one error line, no RecursionError traceback."""
    data = b"[" * 100_000 + b"]" * 100_000
    with tarfile.open(tmp_path / "b.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "newsroom-identity.txt").write_text(f"{X25519Identity.generate()}\n")
    assert_cli_error(open_bundle(tmp_path), "invalid manifest: nested too deeply")
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_bytes(data)
    proc = tipbox("reply", "out", "--source", "amber falcon", "--message", "hi", cwd=tmp_path)
    assert_cli_error(proc, "invalid manifest: nested too deeply")


def test_wrong_identity(tmp_path: Path, newsroom: Newsroom) -> None:
    newsroom.submit("hello")
    newsroom.bundle(tmp_path / "b.tar")
    newsroom.identity_file.write_text(f"{X25519Identity.generate()}\n")
    err = assert_cli_error(open_bundle(tmp_path), "not one of this bundle's newsroom recipients")
    assert str(newsroom.identity.recipient) in err
    assert not (tmp_path / "out").exists()


def test_passphrase_is_asked_once(tmp_path: Path, newsroom: Newsroom) -> None:
    for n in range(3):
        newsroom.submit(f"message {n}", [(f"f{n}.txt", b"x")])
    newsroom.bundle(tmp_path / "b.tar")
    text = identity_file_text(newsroom.identity, DAY)
    (tmp_path / "id.age").write_bytes(encrypt_identity(text, PASSPHRASE, 10))
    child = spawn([*TIPBOX, "open", "b.tar", "-i", "id.age", "--out", "out"], tmp_path)
    child.expect("Passphrase for id.age: ")
    child.sendline(PASSPHRASE)
    status, rest = finish(child)
    assert status == 0, rest
    assert rest.count("Passphrase") == 1  # once for every item
    assert PASSPHRASE not in rest
    assert "3 sources, 3 messages, 3 files" in rest


@pytest.mark.slow
def test_progress_on_a_terminal(tmp_path: Path, newsroom: Newsroom) -> None:
    newsroom.submit(None, [("big.bin", os.urandom(9 << 20))])
    newsroom.bundle(tmp_path / "b.tar")
    argv = [*TIPBOX, "open", "b.tar", "-i", "newsroom-identity.txt", "--out", "out"]
    status, out = finish(spawn(argv, tmp_path))
    assert status == 0, out
    assert "opening [" in out
    assert "100% 10 MiB" in out  # the bar counts the padded ciphertext: 9 MiB is stored in 10
    piped = open_bundle(tmp_path)
    assert b"opening [" not in piped.stderr + piped.stdout


# --- identifying metadata ------------------------------------------------------------------------


def _png(author: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    text = chunk(b"tEXt", b"Author\x00" + author)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + text
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def _jpeg(comment: bytes, artist: bytes) -> bytes:
    """An 8x8 grey baseline JPEG with a comment and an EXIF Artist tag."""

    def segment(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    value = artist + b"\x00"
    exif = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x013B, 2, len(value), 26)
    exif += struct.pack("<I", 0) + value
    huffman = bytes([1] + [0] * 15) + b"\x00"  # one code of length 1 for symbol 0
    return (
        b"\xff\xd8"
        + segment(0xE1, b"Exif\x00\x00" + exif)
        + segment(0xFE, comment)
        + segment(0xDB, b"\x00" + bytes([1] * 64))
        + segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
        + segment(0xC4, b"\x00" + huffman)
        + segment(0xC4, b"\x10" + huffman)
        + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + b"\x3f\xff\xd9"  # DC difference 0, end of block, padding bits
    )


@needs_mat2
@pytest.mark.parametrize("clean", [False, True])
def test_metadata_warnings(tmp_path: Path, newsroom: Newsroom, clean: bool) -> None:
    png, jpeg = _png(b"Jane Whistleblower"), _jpeg(b"shot by J. Doe", b"Jane Roe")
    source = newsroom.submit(
        "see files", [("photo.png", png), ("scan.jpg", jpeg), ("notes.txt", b"hi")]
    )
    newsroom.bundle(tmp_path / "b.tar")
    proc = open_bundle(tmp_path, *(["--clean"] if clean else []))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    files = tmp_path / "out" / folder(newsroom, source) / "files"
    assert f"tipbox: warning: {files / 'photo.png'} carries metadata that may identify" in err
    assert "    Author: Jane Whistleblower" in err
    assert f"tipbox: warning: {files / 'scan.jpg'} carries metadata" in err
    assert "    Artist: Jane Roe" in err
    assert "    Comment: shot by J. Doe" in err
    assert "notes.txt" not in err
    assert (files / "photo.png").read_bytes() == png  # the original is never altered
    cleaned = [files / "photo.cleaned.png", files / "scan.cleaned.jpg"]
    assert [p.exists() for p in cleaned] == [clean, clean]
    for path in cleaned if clean else []:
        assert f"cleaned copy: {path}" in proc.stdout.decode()
        show = subprocess.run([MAT2 or "", "--show", path], capture_output=True, timeout=TIMEOUT)
        assert b"No metadata found" in show.stdout


def test_without_mat2_one_hint(tmp_path: Path, newsroom: Newsroom) -> None:
    newsroom.submit("x", [("a.png", _png(b"Jane")), ("b.png", _png(b"Joe"))])
    newsroom.bundle(tmp_path / "b.tar")
    argv = ["open", "b.tar", "-i", "newsroom-identity.txt", "--out", "out"]
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    proc = subprocess.run(
        [*TIPBOX, *argv], cwd=tmp_path, env=env, capture_output=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().splitlines() == [
        "tipbox: hint: mat2 is not installed: files were not checked for identifying metadata"
    ]


# --- replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["folder", "bundle"])
def test_reply_round_trip(tmp_path: Path, newsroom: Newsroom, target: str) -> None:
    source_id = newsroom.submit("hello")
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    text = "Thanks — can you send the 2023 invoices? ✓\n"
    where = "out" if target == "folder" else "b.tar"
    name = newsroom.designation(source_id)
    proc = tipbox("reply", where, "--source", name, "--message", text, "-o", "r.age", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"reply for '{name}' written to r.age" in proc.stdout.decode()
    data = (tmp_path / "r.age").read_bytes()
    reply_key = newsroom.replies[source_id]
    expected = [str(reply_key.recipient), str(newsroom.identity.recipient)]
    check_reply(data, expected)
    assert len(data) & (len(data) - 1) == 0  # padded to a power of two, like stored items
    item = Item(secrets.token_hex(16), source_id, "reply", today(), len(data), tuple(expected))
    newsroom.store.path_of(item).write_bytes(data)
    assert newsroom.store.reply_text(item, reply_key) == text
    assert read_member(decrypt_path(tmp_path / "r.age", newsroom.identity))[:2] == (
        "reply.txt",
        text.encode(),
    )
    (tmp_path / "reply-key.txt").write_text(f"{reply_key}\n")
    for key_file in ("newsroom-identity.txt", "reply-key.txt"):  # Debian's age ignores our stanza
        age = subprocess.Popen(
            [AGE, "-d", "-i", key_file, "r.age"], cwd=tmp_path, stdout=subprocess.PIPE
        )
        tar = subprocess.run(
            ["tar", "-xO"], stdin=age.stdout, capture_output=True, env=UTF8_ENV, timeout=TIMEOUT
        )
        assert age.stdout is not None
        age.stdout.close()
        assert (age.wait(TIMEOUT), tar.returncode, tar.stdout) == (0, 0, text.encode())


def test_reply_from_a_file_by_folder_name(tmp_path: Path, newsroom: Newsroom) -> None:
    source_id = newsroom.submit("hello")
    newsroom.bundle(tmp_path / "b.tar")
    text = "línea uno\nline two\n" * 1000
    (tmp_path / "reply.txt").write_text(text, encoding="utf-8")
    name = folder(newsroom, source_id)
    for _ in range(2):
        proc = tipbox("reply", "b.tar", "--source", name, "--file", "reply.txt", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    made = sorted(p.name for p in tmp_path.glob("reply-*.age"))
    assert made == [f"reply-{name} (2).age", f"reply-{name}.age"]
    reply_key = newsroom.replies[source_id]
    for name in made:
        assert read_member(decrypt_path(tmp_path / name, reply_key))[1] == text.encode()


REPLY_ERRORS = [
    ("unknown_source", ["--source", "nobody home", "--message", "x"], "no source 'nobody home'"),
    ("not_utf8", ["--source", "S", "--file", "latin1.txt"], "not UTF-8 text"),
    ("too_long", ["--source", "S", "--file", "long.txt"], "too long"),
    ("empty", ["--source", "S", "--message", "  \n"], "the reply is empty"),
    ("missing_file", ["--source", "S", "--file", "nope.txt"], "nope.txt"),
    ("both", ["--source", "S", "--message", "x", "--file", "latin1.txt"], "not allowed with"),
    ("neither", ["--source", "S"], "one of the arguments"),
]


@pytest.mark.parametrize(("args", "needle"), [pytest.param(a, n, id=i) for i, a, n in REPLY_ERRORS])
def test_reply_errors(tmp_path: Path, newsroom: Newsroom, args: list[str], needle: str) -> None:
    source_id = newsroom.submit("hello")
    newsroom.bundle(tmp_path / "b.tar")
    (tmp_path / "latin1.txt").write_bytes("año".encode("latin-1"))
    (tmp_path / "long.txt").write_bytes(b"x" * ((1 << 20) + 1))
    args = [newsroom.designation(source_id) if a == "S" else a for a in args]
    err = assert_cli_error(tipbox("reply", "b.tar", *args, cwd=tmp_path), needle)
    if "nobody home" in args:
        assert f"tipbox: hint: its sources: '{newsroom.designation(source_id)}'" in err
    assert list(tmp_path.glob("*.age")) == []


def test_reply_needs_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    proc = tipbox("reply", "out", "--source", "a b", "--message", "x", cwd=tmp_path)
    assert_cli_error(proc, "manifest.json")


# --- the air-gapped rule ---------------------------------------------------------------------

PROBE = (
    "import json,sys; from app.cli import main; c = main(sys.argv[1:]); "
    "print(json.dumps(sorted(sys.modules))); sys.exit(c)"
)
FORBIDDEN = AIR_GAPPED_FORBIDDEN
ALLOWED = {"app", "app.cli", "app.days", "app.errors", "app.files", "app.words", "app.container"}
ALLOWED |= {"app.bundle", "app.reply", "app.padding", "app.server", "app.server.pools"}
ALLOWED |= {f"app.cli.{name}" for name in ("terminal", "keys", "age", "open", "metadata", "reply")}


@pytest.mark.parametrize("command", ["open", "reply"])
def test_air_gapped_imports(tmp_path: Path, newsroom: Newsroom, command: str) -> None:
    source_id = newsroom.submit("hello")
    newsroom.bundle(tmp_path / "b.tar")
    args = {
        "open": ["open", "b.tar", "-i", "newsroom-identity.txt", "--out", "out"],
        "reply": ["reply", "b.tar", "--source", newsroom.designation(source_id), "--message", "x"],
    }[command]
    proc = run([sys.executable, "-c", PROBE, *args], tmp_path)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout.decode().splitlines()[-1])
    assert "app.cli" in modules
    assert [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)] == []
    ours = {m for m in modules if m == "app" or m.startswith("app.")}
    assert {m for m in ours if not m.startswith("app.crypto")} <= ALLOWED
