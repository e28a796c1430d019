"""app/multipart.py: the streaming parser against Werkzeug's encoder and decoder, byte by byte."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable

import pytest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.sansio.multipart import Data, Field, File
from werkzeug.test import encode_multipart

from app.multipart import HEADER_LIMIT, MultipartError, events

BOUNDARY = b"----TipboxBoundary7MA4YWxkTrZu0gW"


def _parse(body: bytes, read_size: int = 1 << 20, max_parts: int | None = None) -> list:
    """(kind, name, filename, data) per part, the data joined from its Data events."""
    parts: list[list] = []
    stream = io.BytesIO(body)
    for event in events(lambda: stream.read(read_size), BOUNDARY, max_parts):
        if isinstance(event, File):
            parts.append(["file", event.name, event.filename, b""])
        elif isinstance(event, Field):
            parts.append(["field", event.name, None, b""])
        else:
            assert isinstance(event, Data)
            parts[-1][3] += event.data
    return [tuple(p) for p in parts]


def _part(name: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return b"Content-Disposition: " + disposition.encode() + b"\r\n\r\n" + data


def _body(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = preamble
    for i, part in enumerate(parts):
        out += (b"\r\n" if i or preamble else b"") + b"--" + BOUNDARY + b"\r\n" + part
    return out + b"\r\n--" + BOUNDARY + b"--\r\n" + epilogue


def test_fields_and_files() -> None:
    body = _body(_part("csrf_token", b"tok"), _part("files", b"A" * 10, "a.bin"), _part("m", b""))
    assert _parse(body) == [
        ("field", "csrf_token", None, b"tok"),
        ("file", "files", "a.bin", b"A" * 10),
        ("field", "m", None, b""),
    ]


@pytest.mark.parametrize("read_size", [1, 2, 3, 7, 35, 36, 37, 38, 64, 4096, 1 << 20])
def test_any_read_size_gives_the_same_parts(read_size: int) -> None:
    data = os.urandom(20000) + b"\r\n--" + BOUNDARY[:-1] + b"\r\n-" + os.urandom(500)
    body = _body(_part("a", b"x"), _part("f", data, "f.bin"), preamble=b"ignored", epilogue=b"z")
    assert _parse(body, read_size) == [("field", "a", None, b"x"), ("file", "f", "f.bin", data)]


def _ragged(body: bytes, rng: random.Random) -> Callable[[], bytes | bytearray]:
    """Reads of random sizes, often near a delimiter's length (where a delimiter may be split
    between the bytes left over and the next read), as bytes or bytearray."""
    sizes = [1, 2, 30, 35, 36, 37, 38, 39, 70, 1000, 65536]
    stream = io.BytesIO(body)

    def read() -> bytes | bytearray:
        data = stream.read(rng.choice(sizes))
        return bytearray(data) if rng.random() < 0.5 else data

    return read


def test_reads_of_any_sizes_split_nothing() -> None:
    """Every delimiter and near-delimiter, at every offset against reads of changing sizes."""
    rng = random.Random(11)  # noqa: S311 - reproducible shapes, not secrets
    near = [b"\r\n--" + BOUNDARY[:k] for k in (0, 5, len(BOUNDARY) - 1)] + [b"\r", b"\r\n-"]
    for _ in range(300):
        data = b"".join(rng.choice([*near, rng.randbytes(rng.randrange(1, 80))]) for _ in range(8))
        body = _body(_part("a", b"x"), _part("f", data, "f.bin"), _part("g", data[::-1], "g"))
        events_ = list(events(_ragged(body, rng), BOUNDARY))
        got = [bytes(e.data) for e in events_ if isinstance(e, Data)]
        assert b"".join(got) == b"x" + data + data[::-1]


def test_data_stays_valid_after_later_reads() -> None:
    """Data events may be views into a read: keeping them all (as the field buffer does) and
    joining at the end must give the same bytes as copying each at once."""
    data = os.urandom(300_000)
    body = _body(_part("f", data, "f.bin"), _part("m", data[:1000]))
    stream = io.BytesIO(body)
    kept = [e for e in events(lambda: stream.read(4096), BOUNDARY) if isinstance(e, Data)]
    assert b"".join(e.data for e in kept) == data + data[:1000]


def test_agrees_with_werkzeug_encoder_on_random_forms() -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible shapes, not secrets
    for _ in range(40):
        form: MultiDict[str, object] = MultiDict()
        expected = []
        for i in range(rng.randrange(1, 6)):
            data = rng.randbytes(rng.choice([0, 1, 2, 100, 70000]))
            if rng.random() < 0.5:
                text = data.hex()
                form.add(f"f{i}", text)
                expected.append(("field", f"f{i}", None, text.encode()))
            else:
                form.add(f"u{i}", FileStorage(io.BytesIO(data), f"n{i}.bin"))
                expected.append(("file", f"u{i}", f"n{i}.bin", data))
        boundary, body = encode_multipart(form, boundary=BOUNDARY.decode())
        assert boundary.encode() == BOUNDARY
        assert _parse(body, rng.choice([1, 13, 4096, 1 << 20])) == expected


MALFORMED = {
    "empty body": b"",
    "no delimiter": b"just text",
    "cut in a body": _body(_part("f", b"data", "f"))[:-20],
    "cut in headers": b"--" + BOUNDARY + b"\r\nContent-Disposition: form-da",
    "no close delimiter": _body(_part("a", b"x"))[: -len(b"--\r\n")],
    "garbage after delimiter": b"--" + BOUNDARY + b"XX\r\n" + _part("a", b"x"),
    "header without colon": b"--" + BOUNDARY + b"\r\nnonsense\r\n\r\nx\r\n--" + BOUNDARY + b"--",
    "not form-data": _body(b'Content-Disposition: attachment; name="a"\r\n\r\nx'),
    "no name": _body(b"Content-Disposition: form-data\r\n\r\nx"),
    "huge headers": _body(b"X-Pad: " + b"p" * (HEADER_LIMIT + 10) + b"\r\n" + _part("a", b"x")),
    "bare LF in headers": _body(b"X-A: 1\nX-B: 2\r\n" + _part("a", b"x")),
    "bare CR in headers": _body(b"X-A: 1\rX-B: 2\r\n" + _part("a", b"x")),
    "bare LF in a name": _body(b'Content-Disposition: form-data; name="a\nb"\r\n\r\nx'),
    "endless padding": b"--" + BOUNDARY + b" " * (HEADER_LIMIT + 10) + b"\r\n" + _part("a", b"x"),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bodies_raise(body: bytes) -> None:
    with pytest.raises(MultipartError):
        _parse(body, 5)


def test_transport_padding_and_folded_headers() -> None:
    part = b'Content-Disposition: form-data;\r\n  name="a"\r\nContent-Type: text/plain\r\n\r\nx'
    body = b"--" + BOUNDARY + b" \t\r\n" + part + b"\r\n--" + BOUNDARY + b"--"
    assert _parse(body) == [("field", "a", None, b"x")]


@pytest.mark.parametrize("read_size", [1, 2, 3, 5, 38, 39, 40, 41, 42])
def test_transport_padding_across_reads(read_size: int) -> None:
    """RFC 2046 allows white space between a delimiter and its CRLF: wherever reads split it."""
    part = b'Content-Disposition: form-data; name="a"\r\n\r\nx'
    body = b"--" + BOUNDARY + b" \t  \r\n" + part + b"\r\n--" + BOUNDARY + b"\t \r\n" + part
    body += b"\r\n--" + BOUNDARY + b"--"
    assert _parse(body, read_size) == [("field", "a", None, b"x")] * 2


def test_transport_padding_across_the_first_read() -> None:
    """The upload path's first read is 64 KiB: a delimiter padded across it still parses."""
    empty = _body(_part("f", b"", "f.bin"))[: -len(b"--\r\n")]  # up to the second delimiter
    data = b"d" * (65536 - 2 - len(empty))
    head = _body(_part("f", data, "f.bin"))[: -len(b"--\r\n")] + b"    \r\n"
    assert head.index(b"    \r\n") == 65536 - 2  # the padding spans the 64 KiB mark
    body = head + _part("a", b"x") + b"\r\n--" + BOUNDARY + b"--"
    assert _parse(body, 65536) == [("file", "f", "f.bin", data), ("field", "a", None, b"x")]


FILENAMES = {  # the quoted value as a browser writes it (HTML: only ", CR, LF are escaped)
    "..\\x.ini": "..\\x.ini",
    "C:\\Users\\me\\a.pdf": "C:\\Users\\me\\a.pdf",
    "a\\\\b": "a\\\\b",
    "\\\\server\\share\\x": "\\\\server\\share\\x",
    "say %22hi%22.txt": 'say "hi".txt',
    "two%0D%0Alines%0a.txt": "two\r\nlines\n.txt",
    "x; name=y.txt": "x; name=y.txt",
    "100%25.txt": "100%25.txt",
}


@pytest.mark.parametrize(("sent", "name"), FILENAMES.items(), ids=list(FILENAMES))
def test_file_names_are_read_as_browsers_write_them(sent: str, name: str) -> None:
    """A backslash is an ordinary character (browsers do not escape it), not a quoting one."""
    disposition = f'form-data; name="f"; filename="{sent}"'.encode()
    body = _body(b"Content-Disposition: " + disposition + b"\r\n\r\ndata")
    assert _parse(body) == [("file", "f", name, b"data")]


def test_too_many_parts() -> None:
    body = _body(*[_part(f"a{i}", b"x") for i in range(5)])
    assert len(_parse(body, max_parts=5)) == 5
    with pytest.raises(MultipartError, match="too many"):
        _parse(body, max_parts=4)


def test_bad_boundary() -> None:
    with pytest.raises(MultipartError, match="boundary"):
        list(events(io.BytesIO(b"").read, b""))
