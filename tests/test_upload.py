"""Uploads stream into encrypted items: CSRF first, nothing left behind by failed requests."""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask_wtf.csrf import CSRFProtect, generate_csrf
from werkzeug.test import TestResponse

from app.crypto import X25519Identity
from app.db import migrated
from app.server.store import Store
from app.source import upload
from tests.store_helpers import ITEM_NAME, decrypt_path, files_containing, read_member, tree

BOUNDARY = "tipbox-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
SOURCE = "5" * 64


def part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    """One multipart part; file names go in RFC 5987 form, so any character can be sent."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += (
            f"; filename*=UTF-8''{quote(filename, safe='')}" if filename else '; filename=""'
        )
    headers = f"Content-Disposition: {disposition}\r\n"
    if ctype is not None:
        headers += f"Content-Type: {ctype}\r\n"
    return f"--{BOUNDARY}\r\n{headers}\r\n".encode() + value + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class SpyStream(io.BytesIO):
    """A request body read in small pieces that records the item files present at each read."""

    def __init__(self, data: bytes, items: Path) -> None:
        super().__init__(data)
        self.items = items
        self.seen: set[str] = set()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self.seen.update(os.listdir(self.items))
        return super().readinto(memoryview(buffer)[:4096])

    def read(self, size: int | None = -1) -> bytes:
        self.seen.update(os.listdir(self.items))
        return super().read(4096 if size is None or size < 0 else min(size, 4096))


@pytest.fixture
def store(tmp_path: Path, keypair: X25519Identity) -> Store:
    return Store(migrated(tmp_path / "store"), [keypair.recipient])


def make_client(store: Store, csrf: bool, **config: object) -> FlaskClient:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="not secret", WTF_CSRF_ENABLED=csrf, PROPAGATE_EXCEPTIONS=False)
    app.config.update(config)
    if csrf:
        CSRFProtect(app)
    upload.init_app(app, store)

    @app.get("/token")
    def token() -> str:
        return generate_csrf()

    @app.post("/submit")
    def submit() -> tuple[object, int]:
        pending = request.pending_items()
        if request.form.get("fail") == "raise":
            raise RuntimeError("the view crashed")
        if request.form.get("fail") == "400" or not pending:
            return "invalid", 400
        store.commit(SOURCE, str(X25519Identity.generate().recipient), pending)
        return {"sizes": [p.plain_size for p in pending], "kinds": [p.kind for p in pending]}, 200

    return app.test_client()


def post(
    client: FlaskClient, data: bytes, spy_on: Path | None = None, **kw: object
) -> tuple[TestResponse, io.BytesIO]:
    stream = SpyStream(data, spy_on) if spy_on else io.BytesIO(data)
    kw.setdefault("content_type", MULTIPART)
    return client.post("/submit", input_stream=stream, **kw), stream


def stored(store: Store, keypair: X25519Identity) -> list[tuple[str, bytes, str | None]]:
    return [read_member(decrypt_path(store.path_of(i), keypair)) for i in store.items_of(SOURCE)]


@pytest.mark.parametrize("csrf", [False, True], ids=["no_csrf", "csrf"])
def test_files_stream_into_items(store: Store, keypair: X25519Identity, csrf: bool) -> None:
    client = make_client(store, csrf)
    token = [part("csrf_token", client.get("/token").text.encode())] if csrf else []
    files = [(b"", "empty.txt"), (b"x", "one.txt"), (os.urandom(100_000), "Informe ñ.pdf")]
    data = body(
        *token,
        part("message", "¡hola!".encode()),
        *(
            part(f"f{n}", content, name, "application/pdf")
            for n, (content, name) in enumerate(files)
        ),
    )
    response, spy = post(client, data, store.items)
    assert response.status_code == 200, response.text
    assert response.json == {"sizes": [0, 1, 100_000], "kinds": ["file"] * 3}
    assert any(name.startswith(".incoming-") for name in spy.seen)  # encrypted while read
    expected = [(name, content, "application/pdf") for content, name in files]
    assert stored(store, keypair) == expected[::-1]


FLASK_DEFAULT, AS_CREATE_APP = 500_000, 1 << 20  # MAX_FORM_MEMORY_SIZE


@pytest.mark.parametrize(
    ("size", "cr_at_first_read_end", "form_memory"),
    [
        (1, False, FLASK_DEFAULT),
        (400_000, True, FLASK_DEFAULT),
        (3 << 20, False, AS_CREATE_APP),
        pytest.param(600_000, False, FLASK_DEFAULT),
        pytest.param(3 << 20, True, AS_CREATE_APP),
    ],
)
def test_upload_sizes(
    store: Store, keypair: X25519Identity, size: int, cr_at_first_read_end: bool, form_memory: int
) -> None:
    content = bytearray(b"a" * size)
    if cr_at_first_read_end:  # the decoder keeps a possible boundary start back for next time
        head = len(part("f", b"", "big.bin")) - 2
        content[min(size, upload.READ_SIZE) - head - 1] = ord("\r")
    client = make_client(store, False, MAX_FORM_MEMORY_SIZE=form_memory)
    response, _ = post(client, body(part("f", bytes(content), "big.bin")))
    assert response.status_code == 200
    assert stored(store, keypair) == [("big.bin", content, "application/octet-stream")]


@pytest.mark.parametrize("with_real_file", [False, True])
def test_empty_file_input_creates_nothing(store: Store, with_real_file: bool) -> None:
    parts = [part("empty", b"", ""), part("message", b"hi")]
    parts += [part("real", bytes(20_000), "real.txt")] if with_real_file else []
    response, spy = post(make_client(store, False), body(*parts), store.items)
    assert response.status_code == (200 if with_real_file else 400)
    assert response.json == ({"sizes": [20_000], "kinds": ["file"]} if with_real_file else None)
    assert len(spy.seen) == with_real_file
    assert len(tree(store.items)) == with_real_file


@pytest.mark.parametrize("csrf", [False, True], ids=["no_csrf", "csrf"])
@pytest.mark.parametrize(("fail", "status"), [("400", 400), ("raise", 500)])
def test_failed_request_leaves_no_file(store: Store, csrf: bool, fail: str, status: int) -> None:
    client = make_client(store, csrf)
    token = [part("csrf_token", client.get("/token").text.encode())] if csrf else []
    files = [part(f"f{n}", os.urandom(70_000 * n), f"{n}.bin") for n in range(3)]
    response, spy = post(client, body(*token, part("fail", fail.encode()), *files), store.items)
    assert response.status_code == status
    assert len(spy.seen) >= 2  # the items were written, then deleted
    assert tree(store.items) == []


@pytest.mark.parametrize(
    "placement", ["before", "after", "missing", "forged", "other_session", "second_file"]
)
def test_csrf_token_must_come_before_any_file(
    store: Store, keypair: X25519Identity, placement: str
) -> None:
    client = make_client(store, True)
    token = client.get("/token").text.encode()
    if placement == "other_session":
        token = make_client(store, True).get("/token").text.encode()
    csrf = part("csrf_token", b"forged" + token[6:] if placement == "forged" else token)
    first, second = part("a", b"A" * 50_000, "a.txt"), part("b", b"B", "b.txt")
    data = {
        "before": [csrf, first],
        "after": [first, csrf],
        "missing": [part("message", b"hi"), first],
        "forged": [csrf, first],
        "other_session": [csrf, first],
        "second_file": [part("e", b"", ""), first, csrf, second],
    }[placement]
    response, spy = post(client, body(*data), store.items)
    if placement == "before":
        assert response.status_code == 200
        assert spy.seen  # the spy does see an item being written
        assert stored(store, keypair) == [("a.txt", b"A" * 50_000, "application/octet-stream")]
    else:
        assert response.status_code == 400
        assert spy.seen == set()  # no item writer was ever created
        assert tree(store.items) == []


@pytest.mark.parametrize("streaming", [False, True], ids=["content_length", "chunked"])
def test_too_large_is_413_and_stores_nothing(store: Store, streaming: bool) -> None:
    client = make_client(store, False, MAX_CONTENT_LENGTH=200_000)
    data = body(part("f", os.urandom(300_000), "big.bin"))
    extra = {"headers": {"Transfer-Encoding": "chunked"}} if streaming else {}
    extra |= {"environ_overrides": {"wsgi.input_terminated": True}} if streaming else {}
    response, spy = post(client, data, store.items, **extra)
    assert response.status_code == 413
    assert tree(store.items) == []
    assert bool(spy.seen) == streaming  # the streaming case found out half-way


GOOD = part("f", b"complete file", "good.txt")
CUT = part("g", os.urandom(10_000), "cut.txt")
MALFORMED = {
    "missing_boundary": (body(GOOD), "multipart/form-data"),
    "wrong_boundary": (body(GOOD), "multipart/form-data; boundary=other"),
    "garbage": (os.urandom(5000), MULTIPART),
    "garbage_after_boundary": (f"--{BOUNDARY}\r\n".encode() + os.urandom(5000), MULTIPART),
    "no_disposition": (
        f"--{BOUNDARY}\r\nX: y\r\n\r\nabc\r\n--{BOUNDARY}--\r\n".encode(),
        MULTIPART,
    ),
    "truncated_first_part": (body(CUT)[:5000], MULTIPART),
    "huge_content_type": (body(part("f", b"x", "a.txt", "text/" + "x" * 70_000)), MULTIPART),
}
MALFORMED_BUGS = {
    "truncated_after_good_part": (GOOD + CUT[:5000], MULTIPART),
    "no_closing_boundary": (GOOD + CUT, MULTIPART),
    "bad_part_after_good_part": (GOOD + f"--{BOUNDARY}\r\nX: y\r\n\r\nabc".encode(), MULTIPART),
}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [pytest.param(*v, id=k) for k, v in MALFORMED.items()]
    + [pytest.param(*v, id=k) for k, v in MALFORMED_BUGS.items()],
)
def test_malformed_bodies_store_nothing(store: Store, data: bytes, content_type: str) -> None:
    response, _ = post(make_client(store, False), data, content_type=content_type)
    assert response.status_code in (400, 413)
    assert tree(store.items) == []


def test_short_body_is_a_client_disconnect(store: Store) -> None:
    data = body(GOOD, CUT)
    client = make_client(store, False)
    response, _ = post(client, data[:-100], environ_overrides={"CONTENT_LENGTH": str(len(data))})
    assert response.status_code == 400
    assert tree(store.items) == []


@pytest.mark.parametrize("ctype", ["text/" + "x" * 350, pytest.param("text/" + "x" * 351)])
def test_long_content_type_is_no_crash(store: Store, keypair: X25519Identity, ctype: str) -> None:
    response, _ = post(make_client(store, False), body(part("f", b"x", "a.txt", ctype)))
    assert response.status_code == 200
    assert stored(store, keypair) == [("a.txt", b"x", ctype)]


def test_transport_padding_across_the_first_read(store: Store, keypair: X25519Identity) -> None:
    """A delimiter's padding that the first read (64 KiB) cuts in two is still padding."""
    delimiter = f"--{BOUNDARY}".encode()
    data = b"d" * (upload.MIN_READ - 2 - len(part("f", b"", "a.bin")) - len(delimiter))
    second = b'    \r\nContent-Disposition: form-data; name="g"; filename="b.bin"\r\n\r\nx\r\n'
    raw = part("f", data, "a.bin") + delimiter + second + delimiter + b"--\r\n"
    assert raw.index(b"    \r\n") == upload.MIN_READ - 2
    response, _ = post(make_client(store, False), raw)
    assert response.status_code == 200
    assert sorted(stored(store, keypair)) == [
        ("a.bin", data, "application/octet-stream"),
        ("b.bin", b"x", "application/octet-stream"),
    ]


@pytest.mark.parametrize(
    ("sent", "safe"),
    [
        ("..\\x.ini", "\\x.ini"),
        ("C:\\Users\\me\\a.pdf", "C:\\Users\\me\\a.pdf"),
        ("Q3\\Q4 %22final%22.pdf", 'Q3\\Q4 "final".pdf'),
    ],
)
def test_backslashes_in_file_names_are_kept(
    store: Store, keypair: X25519Identity, sent: str, safe: str
) -> None:
    """A browser's quoted file name: backslashes are characters, %22 a quote (HTML standard)."""
    disposition = f'form-data; name="f"; filename="{sent}"'
    raw = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + b"x\r\n"
    response, _ = post(make_client(store, False), body(raw))
    assert response.status_code == 200
    assert stored(store, keypair) == [(safe, b"x", "application/octet-stream")]


@pytest.mark.parametrize(
    ("filename", "safe"),
    [
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\win.ini", "\\..\\Windows\\win.ini"),
        ("/var/www/shell.php", "shell.php"),
        ("evil\x00name\n\r.txt", "evilname.txt"),
        ("\x1b]0;pwned\x07\u202eexe.pdf", "]0;pwnedexe.pdf"),
        (".htaccess", "htaccess"),
        ("..", "file"),
        ("Niño 🔥 " + "ñ" * 200 + ".pdf", "Niño 🔥 " + "ñ" * 120 + ".pdf"),
    ],
)
def test_filenames_live_only_inside_the_ciphertext(
    store: Store, keypair: X25519Identity, filename: str, safe: str
) -> None:
    response, _ = post(make_client(store, False), body(part("f", b"payload", filename)))
    assert response.status_code == 200
    assert stored(store, keypair) == [(safe, b"payload", "application/octet-stream")]
    assert all(ITEM_NAME.fullmatch(name) for name in os.listdir(store.items))
    # Fragments under 6 bytes turn up in random ciphertext by chance (".." in 4 KiB: ~6 %).
    for fragment in {f for f in (safe, filename, safe[:6]) if len(f.encode()) >= 6}:
        assert files_containing(store.root, fragment.encode()) == [], fragment


class _ReadOnly:
    """A stream with ``read`` only (WSGI asks no more of ``wsgi.input``)."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._stream.read(size)


@pytest.mark.parametrize("make", [io.BytesIO, _ReadOnly], ids=["readinto", "read only"])
def test_adaptive_reads_give_every_byte_once(make: type) -> None:
    data = os.urandom(5 * upload.READ_SIZE + 123)
    read = upload._AdaptiveRead(make(data))  # noqa: SLF001 - the reader on its own
    pieces = []
    while piece := read():
        pieces.append(piece)
    assert b"".join(pieces) == data
    assert len(pieces[0]) == upload.MIN_READ  # then growing while reads are full and fast
    assert max(len(p) for p in pieces) == upload.READ_SIZE


TEXT = b"t" * 500_000  # under the budget alone; ten of them are five times over it


@pytest.mark.parametrize("token", ["missing", "forged"])
def test_no_text_field_is_read_before_a_valid_token(store: Store, token: str) -> None:
    """Without a valid token first, the body is refused at the first other field: the parser
    stops reading within its first large read, not after the whole 5 MB."""
    client = make_client(store, True)
    real = client.get("/token").text.encode()
    parts = [part("message", TEXT) for _ in range(10)]
    if token == "forged":
        parts.insert(0, part("csrf_token", b"forged" + real[6:]))
    response, stream = post(client, body(*parts))
    assert response.status_code == 400
    assert stream.tell() <= 2 * upload.READ_SIZE


def test_text_fields_share_one_memory_budget(store: Store) -> None:
    """Every field is under the per-field limit; together they are over it: 413."""
    client = make_client(store, True, MAX_FORM_MEMORY_SIZE=1_000_000)
    token = part("csrf_token", client.get("/token").text.encode())
    response, stream = post(client, body(token, *[part(f"m{i}", TEXT) for i in range(10)]))
    assert response.status_code == 413
    assert stream.tell() <= 1_000_000 + 2 * upload.READ_SIZE


@pytest.mark.parametrize("streaming", [False, True], ids=["content_length", "chunked"])
def test_a_urlencoded_body_has_the_same_memory_budget(store: Store, streaming: bool) -> None:
    """A form without files (the login form) is read whole by Werkzeug: not past the budget."""
    client = make_client(store, False, MAX_FORM_MEMORY_SIZE=100_000)
    data = b"codename=" + b"a" * 3_000_000
    extra = {"headers": {"Transfer-Encoding": "chunked"}} if streaming else {}
    extra |= {"environ_overrides": {"wsgi.input_terminated": True}} if streaming else {}
    response, stream = post(client, data, content_type="application/x-www-form-urlencoded", **extra)
    assert response.status_code == 413
    assert stream.tell() <= 100_000 + upload.READ_SIZE
