"""``tipbox open`` as a reading room: conversation order, an incremental folder, several
identities, identifying metadata, and ``tipbox reply`` given the folder (issue 13)."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from app import words
from app.crypto import X25519Identity
from app.db import migrated
from app.server.store import Store
from tests.helpers import tipbox
from tests.test_airgap import files_under, folder, open_bundle
from tests.test_bundle import Newsroom

MAT2 = shutil.which("mat2")
needs_mat2 = pytest.mark.skipif(MAT2 is None, reason="mat2 is not installed (apt install mat2)")


@pytest.fixture
def newsroom(tmp_path: Path) -> Newsroom:
    return Newsroom(tmp_path)


def conversation(newsroom: Newsroom) -> str:
    """A message with two files, a reply, two files alone, then a message."""
    source = newsroom.submit("hello ✓", [("invoice.pdf", b"%PDF-1"), ("notes.txt", b"n")])
    newsroom.store.add_reply_text(source, "thank you")
    newsroom.submit(None, [("message.txt", b"not a message"), ("b.bin", b"b")], source)
    newsroom.submit("one more thing", source_id=source)
    return source


EXPECTED = {
    "0001 message.txt": "hello ✓".encode(),
    "0002 file with 0001 invoice.pdf": b"%PDF-1",
    "0003 file with 0001 notes.txt": b"n",
    "0004 reply.txt": b"thank you",
    "0005 file message.txt": b"not a message",  # a file can never pass for a message
    "0006 file with 0005 b.bin": b"b",
    "0007 message.txt": b"one more thing",
}


def items_of(out: Path, name: str) -> dict[str, bytes]:
    held = files_under(out / name)
    return {k: v for k, v in held.items() if "/" not in k and not k.endswith(".html")}


def test_conversation_order(tmp_path: Path, newsroom: Newsroom) -> None:
    source = folder(newsroom, conversation(newsroom))
    newsroom.bundle(tmp_path / "b.tar")
    proc = open_bundle(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert items_of(tmp_path / "out", source) == EXPECTED
    assert sorted(EXPECTED) == list(EXPECTED)  # the names sort as the conversation reads
    last = proc.stdout.decode().strip().splitlines()[-1]
    assert last.startswith("opened 7 new items")


def test_opening_again_writes_nothing(tmp_path: Path, newsroom: Newsroom) -> None:
    conversation(newsroom)
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    out = tmp_path / "out"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    again = open_bundle(tmp_path)
    assert again.returncode == 0, again.stderr
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert "nothing new" in again.stdout.decode().strip().splitlines()[-1]


def test_a_later_bundle_adds_only_new_items(tmp_path: Path, newsroom: Newsroom) -> None:
    source_id = conversation(newsroom)
    source = folder(newsroom, source_id)
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    newsroom.store.add_reply_text(source_id, "can you send the original?")
    other = newsroom.submit("a new source")
    newsroom.bundle(tmp_path / "b.tar")
    proc = open_bundle(tmp_path)
    assert proc.returncode == 0, proc.stderr
    held = items_of(tmp_path / "out", source)
    assert held == {**EXPECTED, "0008 reply.txt": b"can you send the original?"}
    assert not [p for p in (tmp_path / "out").rglob("*") if "(2)" in p.name]
    lines = proc.stdout.decode().rstrip().splitlines()
    assert lines[-1].startswith("opened 2 new items")
    assert f"  {newsroom.designation(source_id)}: 1 reply" in lines
    assert f"  {newsroom.designation(other)}: 1 message (new source)" in lines


def test_lost_pages_are_written_again(tmp_path: Path, newsroom: Newsroom) -> None:
    source = folder(newsroom, conversation(newsroom))
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    pages = [tmp_path / "out/index.html", tmp_path / "out" / source / "conversation.html"]
    before = [page.read_bytes() for page in pages]
    for page in pages:
        page.unlink()
    assert open_bundle(tmp_path).returncode == 0
    assert [page.read_bytes() for page in pages] == before


def test_an_interrupted_index_line_is_ignored(tmp_path: Path, newsroom: Newsroom) -> None:
    conversation(newsroom)
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    index = tmp_path / "out" / "tipbox-index.jsonl"
    with index.open("a") as handle:
        handle.write('{"item": {"id": "ab')  # a run killed mid-line
    assert open_bundle(tmp_path).returncode == 0


def test_a_damaged_index_is_refused(tmp_path: Path, newsroom: Newsroom) -> None:
    conversation(newsroom)
    newsroom.bundle(tmp_path / "b.tar")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tipbox-index.jsonl").write_text('{"item": 3}\n{"run": 1}\n')
    proc = open_bundle(tmp_path)
    assert proc.returncode == 1
    assert b"tipbox: error: " in proc.stderr
    assert b"tipbox-index.jsonl is damaged (line 1)" in proc.stderr
    assert b"Traceback" not in proc.stderr


# --- several identities ------------------------------------------------------------------------


def _rotated(tmp_path: Path, newsroom: Newsroom) -> tuple[X25519Identity, str]:
    """Items to the old key, then the newsroom rotates and new items go to the new key."""
    source = newsroom.submit("to the old key")
    new = X25519Identity.generate()
    newsroom.store = Store(migrated(newsroom.root / "server"), [new.recipient])
    newsroom.submit("to the new key", source_id=source)
    (tmp_path / "new-identity.txt").write_text(f"{new}\n")
    newsroom.bundle(tmp_path / "b.tar")
    return new, folder(newsroom, source)


def fingerprint(identity: X25519Identity) -> str:
    return " ".join(words.fingerprint(str(identity.recipient).encode()))


def test_several_identities_open_old_and_new_items(tmp_path: Path, newsroom: Newsroom) -> None:
    _, source = _rotated(tmp_path, newsroom)
    proc = open_bundle(tmp_path, "-i", "new-identity.txt")
    assert proc.returncode == 0, proc.stderr
    assert items_of(tmp_path / "out", source) == {
        "0001 message.txt": b"to the old key",
        "0002 message.txt": b"to the new key",
    }


def test_a_missing_key_is_named_by_its_fingerprint(tmp_path: Path, newsroom: Newsroom) -> None:
    _, source = _rotated(tmp_path, newsroom)
    proc = tipbox("open", "b.tar", "-i", "new-identity.txt", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert f"encrypted to {fingerprint(newsroom.identity)}" in err
    assert "age1" not in err
    assert items_of(tmp_path / "out", source) == {"0002 message.txt": b"to the new key"}
    # Given the old key later, the same folder gets the missing item, and only it.
    again = open_bundle(tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(items_of(tmp_path / "out", source)) == 2


def test_no_identity_of_the_bundle(tmp_path: Path, newsroom: Newsroom) -> None:
    newsroom.submit("x")
    newsroom.bundle(tmp_path / "b.tar")
    other = X25519Identity.generate()
    (tmp_path / "other.txt").write_text(f"{other}\n")
    proc = tipbox("open", "b.tar", "-i", "other.txt", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert fingerprint(other) in err
    assert fingerprint(newsroom.identity) in err
    assert "age1" not in err
    assert not (tmp_path / "out").exists()


# --- identifying metadata ----------------------------------------------------------------------


def exif_jpeg(tags: dict[int, bytes]) -> bytes:
    """An 8x8 grey baseline JPEG whose EXIF IFD0 holds ``tags`` as ASCII values."""

    def segment(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    entries, data = b"", b""
    start = 8 + 2 + 12 * len(tags) + 4
    for tag, value in sorted(tags.items()):
        value += b"\x00"
        entries += struct.pack("<HHII", tag, 2, len(value), start + len(data))
        data += value
    exif = b"II*\x00" + struct.pack("<IH", 8, len(tags)) + entries + struct.pack("<I", 0) + data
    huffman = bytes([1] + [0] * 15) + b"\x00"
    return (
        b"\xff\xd8"
        + segment(0xE1, b"Exif\x00\x00" + exif)
        + segment(0xDB, b"\x00" + bytes([1] * 64))
        + segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
        + segment(0xC4, b"\x00" + huffman)
        + segment(0xC4, b"\x10" + huffman)
        + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + b"\x3f\xff\xd9"
    )


def pdf(info: bytes) -> bytes:
    """A one-page PDF whose document information dictionary is ``info``."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
        info,
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n"
    return out + trailer % (len(objects) + 1, xref)


CAMERA = exif_jpeg(
    {0x010F: b"Acme", 0x0110: b"Snap 5", 0x013B: b"Jane Roe", 0x0131: b"Snap firmware 1.2"}
)
PLAIN = exif_jpeg({0x0128: b"x"})  # only what mat2 calls noise: nothing that identifies anyone
INVOICE = pdf(b"<< /Author (Jane Roe) /Producer (LibreOffice 7.4) >>")


@needs_mat2
def test_only_identifying_metadata_is_shown(tmp_path: Path, newsroom: Newsroom) -> None:
    source = newsroom.submit(
        "see files",
        [("camera.jpg", CAMERA), ("plain.jpg", PLAIN), ("invoice.pdf", INVOICE), ("a.txt", b"a")],
    )
    newsroom.bundle(tmp_path / "b.tar")
    proc = open_bundle(tmp_path)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode()
    here = Path("out") / folder(newsroom, source)
    assert f"tipbox: warning: {here / '0002 file with 0001 camera.jpg'} carries metadata" in err
    for line in ("Make: Acme", "Model: Snap 5", "Artist: Jane Roe", "Software: Snap firmware"):
        assert f"    {line}" in err
    assert "    author: Jane Roe" in err
    assert "    producer: LibreOffice 7.4" in err
    assert "ExifByteOrder" not in err
    assert "plain.jpg" not in err
    assert "a.txt" not in err
    report = (tmp_path / here / "metadata" / "0002 file with 0001 camera.jpg.txt").read_text()
    assert "ExifByteOrder" in report
    assert "Artist: Jane Roe" in report
    lines = (tmp_path / "out/tipbox-index.jsonl").read_text().splitlines()
    index = [json.loads(line) for line in lines]
    verdicts = [r["metadata"]["verdict"] for r in index if "metadata" in r]
    assert sorted(verdicts) == ["identifying", "identifying", "none", "none"]
    assert proc.stdout.decode().strip().splitlines()[-1].startswith("opened 5 new items")


@needs_mat2
def test_clean_copies(tmp_path: Path, newsroom: Newsroom) -> None:
    source = newsroom.submit(None, [("camera.jpg", CAMERA)])
    newsroom.bundle(tmp_path / "b.tar")
    proc = open_bundle(tmp_path, "--clean")
    assert proc.returncode == 0, proc.stderr
    here = Path("out") / folder(newsroom, source)
    cleaned = here / "0001 file camera.cleaned.jpg"
    assert f"cleaned copy: {cleaned}" in proc.stdout.decode()
    assert (tmp_path / here / "0001 file camera.jpg").read_bytes() == CAMERA


@needs_mat2
def test_a_linked_report_folder_is_not_followed(tmp_path: Path, newsroom: Newsroom) -> None:
    source = newsroom.submit(None, [("camera.jpg", CAMERA)])
    newsroom.bundle(tmp_path / "b.tar")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out" / folder(newsroom, source)).mkdir(parents=True)
    (tmp_path / "out" / folder(newsroom, source) / "metadata").symlink_to(elsewhere)
    proc = open_bundle(tmp_path)
    assert proc.returncode == 1
    assert b"metadata is a symbolic link" in proc.stderr
    assert list(elsewhere.iterdir()) == []


# --- tipbox reply given the folder -------------------------------------------------------------


def test_reply_given_the_folder_of_two_bundles(tmp_path: Path, newsroom: Newsroom) -> None:
    first = newsroom.submit("first source")
    newsroom.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    second_bundle = tmp_path / "second"
    second_bundle.mkdir()
    other = Newsroom(second_bundle, identity=newsroom.identity)
    other.submit("second source")
    other.bundle(tmp_path / "b.tar")
    assert open_bundle(tmp_path).returncode == 0
    for designation in (newsroom.designation(first), *(s.designation for s in other.sources())):
        proc = tipbox(
            "reply", "out", "--source", designation, "--message", "hi", "-o", "r.age", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        os.unlink(tmp_path / "r.age")
