"""app/source/multipart.py: the streaming parser against Werkzeug's encoder and decoder."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable

import pytest
import python_multipart.multipart as pm
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.sansio.multipart import Data, Field, File
from werkzeug.test import encode_multipart

from app.source.multipart import HEADER_LIMIT, MultipartError, events

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


# --- properties (hypothesis; `make fuzz` runs many more) -----------------------------------------

# Boundaries as RFC 2046 allows them: 1 to 70 of its characters, not ending with a space.
_BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
boundaries = st.text(_BCHARS + " ", min_size=1, max_size=70).filter(lambda b: b[-1] != " ")
# Names as a browser sends them: no quote, CR, LF, backslash or % (python-multipart, the
# oracle, reads backslashes as RFC 9110 escapes and % is ours to decode).
_NAME_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters='"\\%'
)
names = st.text(_NAME_CHARS, min_size=1, max_size=20)


@st.composite
def forms(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[str, str | None, bytes]]]:
    """(boundary, body, parts): a well-formed body, with bytes near delimiters in the data."""
    boundary = draw(boundaries).encode()
    near = [b"\r\n--" + boundary[:k] for k in range(len(boundary))] + [b"\r", b"\n", b"--"]
    pieces = st.one_of(st.binary(max_size=300), st.sampled_from(near))
    datas = st.lists(pieces, max_size=6).map(b"".join)
    # Not a delimiter inside, nor "--boundary" first: after the blank line that reads as
    # Werkzeug's encoding of an empty body (see app.source.multipart): browsers never write it.
    datas = datas.filter(lambda d: b"\r\n--" + boundary not in b"\r\n" + d + b"\r\n")
    parts = draw(st.lists(st.tuples(names, st.none() | names, datas), min_size=1, max_size=5))
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        headers = f"Content-Disposition: {disposition}\r\n".encode()
        if draw(st.booleans()):
            headers += b"Content-Type: application/octet-stream\r\n"
        body += b"--" + boundary + b"\r\n" + headers + b"\r\n" + data + b"\r\n"
    body += b"--" + boundary + b"--" + draw(st.sampled_from([b"", b"\r\n"]))
    return boundary, body, parts


def _reads(body: bytes, sizes: list[int]) -> Callable[[], bytes | bytearray]:
    """Reads of the given sizes, in turn (then the largest), alternately bytes and bytearray."""
    stream, turn = io.BytesIO(body), iter(range(1 << 30))

    def read() -> bytes | bytearray:
        n = next(turn)
        data = stream.read(sizes[n % len(sizes)])
        return bytearray(data) if n % 2 else data

    return read


def _outcome(read: Callable[[], bytes | bytearray], boundary: bytes) -> object:
    """The parts, or the fact of a MultipartError: nothing else may come out."""
    parts: list[tuple[str, str | None, bytes]] = []
    try:
        for event in events(read, boundary, max_parts=50):
            if isinstance(event, File):
                parts.append((event.name, event.filename, b""))
            elif isinstance(event, Field):
                parts.append((event.name, None, b""))
            else:
                name, filename, data = parts[-1]
                parts[-1] = (name, filename, data + bytes(event.data))
    except MultipartError:
        return "MultipartError"
    return parts


def _oracle(body: bytes, boundary: bytes) -> list[tuple[str, str | None, bytes]]:
    """What python-multipart makes of a body."""
    parts: list[tuple[str, str | None, bytes]] = []
    field, value = [b""], [b""]
    headers: dict[bytes, bytes] = {}

    def header_end() -> None:
        headers[field[0].lower()] = value[0]
        field[0] = value[0] = b""

    def headers_finished() -> None:
        _, options = pm.parse_options_header(headers[b"content-disposition"])
        filename = options.get(b"filename")
        name = options[b"name"].decode("latin-1").encode("latin-1").decode()
        parts.append((name, filename.decode() if filename is not None else None, b""))
        headers.clear()

    def data(chunk: bytes, start: int, end: int) -> None:
        name, filename, got = parts[-1]
        parts[-1] = (name, filename, got + chunk[start:end])

    parser = pm.MultipartParser(
        boundary,
        {
            "on_header_field": lambda d, s, e: field.__setitem__(0, field[0] + d[s:e]),
            "on_header_value": lambda d, s, e: value.__setitem__(0, value[0] + d[s:e]),
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": data,
        },
    )
    parser.write(body)
    parser.finalize()
    return parts


@pytest.mark.property
@given(forms())
def test_well_formed_bodies_agree_with_python_multipart(
    form: tuple[bytes, bytes, list[tuple[str, str | None, bytes]]],
) -> None:
    boundary, body, parts = form
    assert _outcome(_reads(body, [1 << 20]), boundary) == parts == _oracle(body, boundary)


@pytest.mark.property
@given(forms(), st.lists(st.integers(1, 200), min_size=1, max_size=8))
def test_parts_do_not_depend_on_read_sizes(
    form: tuple[bytes, bytes, list[tuple[str, str | None, bytes]]], sizes: list[int]
) -> None:
    boundary, body, parts = form
    assert _outcome(_reads(body, sizes), boundary) == parts


@pytest.mark.property
@given(
    forms(),
    st.lists(st.integers(1, 200), min_size=1, max_size=8),
    st.text(" \t", max_size=40),
)
def test_transport_padding_changes_nothing(
    form: tuple[bytes, bytes, list[tuple[str, str | None, bytes]]], sizes: list[int], pad: str
) -> None:
    boundary, body, parts = form
    padded = body.replace(b"--" + boundary + b"\r\n", b"--" + boundary + pad.encode() + b"\r\n")
    assert _outcome(_reads(padded, sizes), boundary) == parts


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A well-formed body with bytes flipped, cut, or inserted, or any bytes at all."""
    boundary, body, _ = draw(forms())
    if draw(st.booleans()):
        return boundary, draw(st.binary(max_size=500))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        insert = draw(st.sampled_from([b"", b"\r", b"\n", b"\r\n", b"-", b"\x00", b'"', b":"]))
        cut = draw(st.integers(0, 3))
        body = body[:at] + insert + body[at + cut :]
    return boundary, body


@pytest.mark.property
@given(damaged(), st.lists(st.integers(1, 200), min_size=1, max_size=8))
def test_any_body_gives_parts_or_a_multipart_error(
    case: tuple[bytes, bytes], sizes: list[int]
) -> None:
    """Whatever the bytes: the same outcome for any read sizes, and never another exception."""
    boundary, body = case
    assert _outcome(_reads(body, sizes), boundary) == _outcome(_reads(body, [1 << 20]), boundary)
