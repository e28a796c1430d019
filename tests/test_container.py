"""The inner tar container: fixed head sizes, safe names, and what tarfile and GNU tar read."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import container
from app.cli.open import Plaintext, write_member
from app.errors import TipboxError
from tests.store_helpers import read_member, sparse_container, tar_stdin, tree

# (id, name as sent by a browser, what safe_name must make of it)
NAMES = [
    ("ascii", "report-2024.pdf", "report-2024.pdf"),
    ("spanish", "Información del año — ñandú.pdf", "Información del año — ñandú.pdf"),
    ("decomposed", "cafe\u0301.txt", "café.txt"),
    ("cjk", "機密文書：財務.docx", "機密文書：財務.docx"),
    ("emoji", "🔥📄 leak 🕵️.txt", "🔥📄 leak 🕵️.txt"),
    ("long_ascii", "x" * 300 + ".txt", "x" * 251 + ".txt"),
    ("long_accents", "é" * 300, "é" * 127),
    ("long_emoji_ext", "😀" * 300 + ".tar.gz", "😀" * 63 + ".gz"),
    ("traversal", "../../../etc/passwd", "passwd"),
    ("traversal_mid", "a/../../b.txt", "b.txt"),
    ("absolute", "/etc/shadow", "shadow"),
    # A backslash is an ordinary character in a POSIX name (and tar's): kept as the source's
    # machine had it; Windows browsers send only a file's last component.
    ("backslashes", "..\\..\\Windows\\system.ini", "\\..\\Windows\\system.ini"),
    ("backslash_dots", "..\\x.ini", "\\x.ini"),
    ("backslash_linux", "Q3\\Q4 report.pdf", "Q3\\Q4 report.pdf"),
    ("drive", "C:\\Users\\me\\secret.doc", "C:\\Users\\me\\secret.doc"),
    ("trailing_slash", "folder/", "file"),
    ("nul", "a\x00b.txt", "ab.txt"),
    ("newlines", "evil\nname\r.txt", "evilname.txt"),
    ("controls", "\x1b[31mred\x7f\x85\x9b.txt", "[31mred.txt"),
    ("bidi_override", "\u202egpj.exe", "gpj.exe"),
    ("zero_width", "in\u200bvisible\ufeff.txt", "invisible.txt"),
    ("lone_surrogate", "\ud800half.txt", "half.txt"),
    ("leading_dots", "...hidden", "hidden"),
    ("dotfile", ".bashrc", "bashrc"),
    ("dot_after_control", "\x00.profile", "profile"),
    ("dot_after_space", "  .ssh", "ssh"),
    ("only_dots", "..", "file"),
    ("one_dot", ".", "file"),
    ("dot_slash", "./", "file"),
    ("empty", "", "file"),
    ("blank", " \t ", "file"),
]
SIZES = [0, 1, 511, 512, 513, 65536 - 1536 - 1, 65536 - 1536, 65536 - 1536 + 1, 10**6]
TYPE = "Application/PDF; name=x.pdf"
SAFE_TYPE = "application/pdf"
PADDING = 3 * 512 + 7  # what the store appends: zeros past the end-of-archive blocks


def _stream(name: str, size: int, content_type: str = TYPE) -> tuple[bytes, bytes]:
    data = os.urandom(size)
    head = container.head(name, content_type, size, 0)
    assert len(head) == container.head_size(name, content_type)
    tail = bytes(container.tail_size(size))
    assert (len(head) + size + len(tail)) % 512 == 0
    return head + data + tail + bytes(PADDING), data


@pytest.mark.parametrize(("name", "safe"), [n[1:] for n in NAMES], ids=[n[0] for n in NAMES])
def test_safe_name_table(name: str, safe: str) -> None:
    assert container.safe_name(name) == safe


@pytest.mark.parametrize("name", [n[1] for n in NAMES], ids=[n[0] for n in NAMES])
def test_safe_name_invariants(name: str) -> None:
    safe = container.safe_name(name)
    assert safe
    assert "/" not in safe
    assert not safe.startswith(".")
    assert all(unicodedata.category(c)[0] != "C" for c in safe)
    assert len(safe.encode("utf-8")) <= container.MAX_NAME_BYTES
    assert unicodedata.is_normalized("NFC", safe)
    assert container.safe_name(safe) == safe  # idempotent: the name stored is the name read


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("name", "safe"), [n[1:] for n in NAMES], ids=[n[0] for n in NAMES])
def test_tarfile_stream_roundtrip(name: str, safe: str, size: int) -> None:
    stream, data = _stream(name, size)
    assert read_member(stream) == (safe, data, SAFE_TYPE)


GNU_CASES = [pytest.param(n[1], n[2], 513, id=n[0]) for n in NAMES] + [
    pytest.param("../Ñandú 🔥.txt", "Ñandú 🔥.txt", size, id=f"size-{size}") for size in SIZES
]


@pytest.mark.parametrize(("name", "safe", "size"), GNU_CASES)
def test_gnu_tar_restores_only_the_safe_name(
    tmp_path: Path, name: str, safe: str, size: int
) -> None:
    stream, data = _stream(name, size)
    listed = tar_stdin(["-t", "--quoting-style=literal"], stream).stdout
    assert listed.decode("utf-8").split("\n") == [safe, ""]
    jail = tmp_path / "jail"
    (jail / "out").mkdir(parents=True)
    tar_stdin(["-x", "-C", str(jail / "out")], stream)
    assert tree(jail) == ["out", f"out/{safe}"]  # nothing outside the target directory
    assert (jail / "out" / safe).read_bytes() == data


@pytest.mark.parametrize("size", [0, 1, 8**11 - 1, 8**11, 10**15, 10**20 - 1])
@pytest.mark.parametrize("name", ["a", "é" * 127, "x" * 255])
def test_head_size_is_fixed_whatever_the_size(name: str, size: int) -> None:
    expected = container.head_size(name, TYPE)
    assert expected % 512 == 0
    assert len(container.head(name, TYPE, size, 0)) == expected
    assert container.head(name, TYPE, size, 0)[:512] == container.head(name, TYPE, 0, 0)[:512]


def test_huge_size_lives_in_the_pax_record() -> None:
    head = container.head("big.bin", TYPE, 8**11, 0)
    assert f" size={8**11}\n".encode() in head
    with tarfile.open(fileobj=io.BytesIO(head + bytes(1024)), mode="r|") as archive:
        member = archive.next()
        assert member is not None
        assert (member.name, member.size) == ("big.bin", 8**11)


@pytest.mark.parametrize(
    ("subtype_length", "size"),
    [
        (350, 0),
        (352, 0),
        pytest.param(351, 0),
        pytest.param(351, 5),
        pytest.param(344, 10**6),
        pytest.param(863, 0),
    ],
)
def test_long_content_types_still_make_a_head(subtype_length: int, size: int) -> None:
    content_type = "text/" + "x" * subtype_length
    stream, data = _stream("a.txt", size, content_type)
    assert read_member(stream) == ("a.txt", data, container.safe_content_type(content_type))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/plain", "text/plain"),
        ("Text/Plain; charset=UTF-8", "text/plain"),
        ("  image/png  ", "image/png"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", None),
        ("application/x-7z-compressed", "application/x-7z-compressed"),
        ("image/svg+xml", "image/svg+xml"),
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("text", "application/octet-stream"),
        ("text/", "application/octet-stream"),
        ("/plain", "application/octet-stream"),
        ("text/plain/extra", "application/octet-stream"),
        ("text/pl ain", "application/octet-stream"),
        ("text/plain\nX-Evil: 1", "application/octet-stream"),
        ("text/plain\x00", "application/octet-stream"),
        ("tëxt/plain", "application/octet-stream"),
        ("../../etc/passwd", "application/octet-stream"),
        ('text/html"', "application/octet-stream"),
        ("text/html=1", "application/octet-stream"),
        ("*/*", "application/octet-stream"),
        (";text/plain", "application/octet-stream"),
    ],
)
def test_safe_content_type_table(value: str | None, expected: str | None) -> None:
    assert container.safe_content_type(value) == (expected or value)


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 10**6])
def test_tail_size(size: int) -> None:
    tail = container.tail_size(size)
    assert (size + tail) % 512 == 0
    assert 1024 <= tail < 1024 + 512


# --- properties (hypothesis; `make fuzz` runs many more) -----------------------------------------


@pytest.mark.property
@given(st.text(st.characters(codec="utf-8"), max_size=400) | st.text(max_size=300))
def test_any_name_is_made_safe(name: str) -> None:
    safe = container.safe_name(name)
    assert safe
    assert "/" not in safe
    assert not safe.startswith(".")
    assert all(unicodedata.category(c)[0] != "C" for c in safe)
    assert len(safe.encode("utf-8", "surrogatepass")) <= container.MAX_NAME_BYTES
    assert container.safe_name(safe) == safe


def _cuts(data: bytes, cuts: list[int]) -> Iterator[memoryview]:
    """``data`` in chunks, as decryption hands them out."""
    view, start = memoryview(data), 0
    for end in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
        if end > start:
            yield view[start:end]
            start = end


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _written(payload: bytes, cuts: list[int]) -> tuple[str, bytes] | None:
    """What ``tipbox open``'s reader writes of a container: (name, bytes), or ``None`` if it
    refuses it (with one of the errors it reports per item); never a leftover."""
    plain = Plaintext(_cuts(payload, cuts), lambda _: None)
    with _folder() as folder:
        try:
            path, _ = write_member(plain, lambda name: folder / container.safe_name(name))
        except (TipboxError, tarfile.TarError):
            assert list(folder.iterdir()) == []
            return None
        assert [p.name for p in folder.iterdir()] == [path.name]
        return path.name, path.read_bytes()


containers = st.tuples(
    st.text(max_size=300), st.text(max_size=80), st.binary(max_size=3000), st.integers(0, 2000)
)


def _container(name: str, content_type: str, data: bytes, padding: int) -> bytes:
    head = container.head(name, content_type, len(data), 0)
    tail = b"".join(container.trailer(len(data), container.tail_size(len(data)) + padding))
    return head + data + tail


@pytest.mark.property
@given(containers, st.lists(st.integers(0, 6000), max_size=5))
def test_every_container_reads_back(case: tuple[str, str, bytes, int], cuts: list[int]) -> None:
    name, content_type, data, padding = case
    payload = _container(name, content_type, data, padding)
    assert _written(payload, cuts) == (container.safe_name(name), data)


@pytest.mark.property
@given(containers, st.data())
def test_a_damaged_container_is_refused_or_read_within_its_payload(
    case: tuple[str, str, bytes, int], data: st.DataObject
) -> None:
    sparse = data.draw(st.booleans())
    payload = bytearray(sparse_container("x", 5000) if sparse else _container(*case))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, min(len(payload) - 1, 2048)))  # the headers, mostly
        how = data.draw(st.sampled_from(["set", "cut", "add"]))
        if how == "set":
            payload[at] = data.draw(st.integers(0, 255))
        elif how == "cut":
            del payload[at : at + data.draw(st.integers(1, 600))]
        else:  # what pax records and sparse maps are made of
            payload[at:at] = data.draw(st.text("0123456789\n =x", min_size=1)).encode()
    written = _written(bytes(payload), data.draw(st.lists(st.integers(0, 6000), max_size=3)))
    assert written is None or len(written[1]) <= len(payload)
