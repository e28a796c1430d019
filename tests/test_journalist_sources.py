"""The journalist's work on sources: the list, items, bundles, replies and deletion (real store,
real crypto, real SQLite)."""

from __future__ import annotations

import io
import re
import sqlite3
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import crypto
from app.bundle import read_bundle
from app.crypto import X25519Identity
from app.journalist.inbox import PER_PAGE
from app.reply import declaration, make_reply
from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_app import find, one
from tests.fixtures_journalist import add_source, csrf, logged_in, state_of

config, translations_dir = fx.config, fx.translations_dir
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock


def rows(client: FlaskClient, url: str = "/") -> dict[str, list[str]]:
    """The sources list: designation -> [day, messages, files, replies, flags] (the "N new"
    badge left out: tests/test_journalist_order.py reads it)."""
    page = client.get(url)
    assert page.status_code == 200
    found = {}
    for row in find(page.data, "tr", cls="source"):
        cells = [c for c in row.text.split("\n") if c.strip()]
        found[re.sub(r"\d+ new$", "", cells[0].replace("★", "")).strip()] = [
            *cells[1:],
            "unread" if "unread" in row.classes else "read",
        ]
    return found


def designation(app: Flask, source_id: str) -> str:
    found = state_of(app).store.source(source_id)
    assert found is not None
    return found.designation


def test_the_list_counts_and_marks_per_journalist(japp: Flask, jclient: FlaskClient) -> None:
    sid, _ = add_source(japp, ["one", "two"], [("a.pdf", b"%PDF")])
    state_of(japp).store.add_reply_text(sid, "thanks")
    logged_in(jclient, japp)
    name = designation(japp, sid)
    assert rows(jclient)[name][1:] == ["2", "1", "1", "unread"]
    token = csrf(jclient, "/")
    jclient.post(f"/sources/{sid}/mark", data={"csrf_token": token, "action": "read"})
    assert rows(jclient)[name][-1] == "read"
    other = japp.test_client()
    logged_in(other, japp, "bob")
    assert rows(other)[name][-1] == "unread"  # read marks are per journalist
    add_source(japp)  # another source: does not change the first
    state_of(japp).store.commit(sid, "", [state_of(japp).store.add_message("three")])
    assert rows(jclient)[name][1:] == ["3", "1", "1", "unread"]  # new message: unread again


def test_star_and_filters(japp: Flask, jclient: FlaskClient) -> None:
    starred, _ = add_source(japp)
    plain, _ = add_source(japp)
    logged_in(jclient, japp)
    token = csrf(jclient, "/")
    jclient.post(f"/sources/{starred}/mark", data={"csrf_token": token, "action": "star"})
    jclient.post(f"/sources/{plain}/mark", data={"csrf_token": token, "action": "read"})
    assert list(rows(jclient, "/?show=starred")) == [designation(japp, starred)]
    assert list(rows(jclient, "/?show=unread")) == [designation(japp, starred)]
    assert len(rows(jclient, "/?show=all")) == 2
    assert jclient.get("/?show=nonsense").status_code == 404
    jclient.post(f"/sources/{starred}/mark", data={"csrf_token": token, "action": "unstar"})
    assert rows(jclient, "/?show=starred") == {}
    bad = jclient.post(f"/sources/{starred}/mark", data={"csrf_token": token, "action": "burn"})
    assert bad.status_code == 400


def test_pages(japp: Flask, jclient: FlaskClient) -> None:
    store = state_of(japp).store
    for number in range(PER_PAGE + 3):
        store.commit(f"{number:064x}", str(X25519Identity.generate().recipient), [])
    logged_in(jclient, japp)
    first, second = rows(jclient, "/?page=1"), rows(jclient, "/?page=2")
    assert len(first) == PER_PAGE
    assert len(second) == 3
    assert not set(first) & set(second)
    assert rows(jclient, "/?page=99") == second  # past the end: the last page
    assert rows(jclient, "/?page=x") == first
    assert rows(jclient, "/?page=9" + "9" * 5000) == second  # longer than int() parses
    for digit in ("\u00b2", "\u0663", "\uff12"):  # str.isdigit(), not int(): ignored
        assert rows(jclient, f"/?page={digit}") == first
    assert one(jclient.get("/").data, "a", rel="next")["href"] == "/?show=all&page=2"


def test_items_and_download(japp: Flask, jclient: FlaskClient) -> None:
    sid, items = add_source(japp, ["hello"], [("a.txt", b"data")])
    logged_in(jclient, japp)
    page = jclient.get(f"/sources/{sid}")
    assert len(find(page.data, "tr", cls="item")) == 2
    sizes = [e.text for e in find(page.data, "td", cls="num")]
    assert sizes == ["3.5 KiB", "3.5 KiB"]  # padded, in the source pages' unit system
    item = items[0]
    response = jclient.get(f"/sources/{sid}/items/{item.id}")
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    assert response.data == state_of(japp).store.path_of(item).read_bytes()
    assert "attachment" in response.headers["Content-Disposition"]
    assert "Last-Modified" not in response.headers
    assert "ETag" not in response.headers
    response.close()
    other, _ = add_source(japp)
    assert jclient.get(f"/sources/{other}/items/{item.id}").status_code == 404
    assert jclient.get(f"/sources/{'f' * 64}").status_code == 404


def _rows_of(db_path: Path, source_id: str) -> dict[str, int]:
    with sqlite3.connect(db_path) as db:
        return {
            table: db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} = ?",  # noqa: S608
                (source_id,),
            ).fetchone()[0]
            for table, column in (
                ("sources", "id"),
                ("items", "source_id"),
                ("read_marks", "source_id"),
                ("stars", "source_id"),
            )
        }


def test_delete_items(japp: Flask, jclient: FlaskClient) -> None:
    sid, items = add_source(japp, ["a", "b"], [("c.txt", b"c")])
    logged_in(jclient, japp)
    store = state_of(japp).store
    token = csrf(jclient, "/")
    gone, kept = items[:2], items[2]
    data = {"csrf_token": token, "item": [i.id for i in gone] + ["0" * 32], "confirm": "yes"}
    response = jclient.post(f"/sources/{sid}/items/delete", data=data)
    assert response.status_code == 303
    assert [i.id for i in store.items_of(sid)] == [kept.id]
    for item in gone:
        assert not store.path_of(item).exists()
    assert store.path_of(kept).exists()


def test_delete_source_leaves_no_file_and_no_row(japp: Flask, jclient: FlaskClient) -> None:
    sid, items = add_source(japp, ["a"], [("c.txt", b"c")])
    state_of(japp).store.add_reply_text(sid, "reply")
    logged_in(jclient, japp)
    token = csrf(jclient, "/")
    for action in ("read", "star"):
        jclient.post(f"/sources/{sid}/mark", data={"csrf_token": token, "action": action})
    store = state_of(japp).store
    files = [store.path_of(i) for i in store.items_of(sid)]
    before = {"sources": 1, "items": 3, "read_marks": 1, "stars": 1}
    assert len(files) == 3
    assert _rows_of(store.db_path, sid) == before
    unconfirmed = jclient.post(f"/sources/{sid}/delete", data={"csrf_token": token})
    assert (
        unconfirmed.status_code == 200
    )  # the confirmation page (tests/test_journalist_confirm.py)
    assert store.source(sid) is not None
    jclient.post(f"/sources/{sid}/delete", data={"csrf_token": token, "confirm": "yes"})
    assert not any(path.exists() for path in files)
    assert _rows_of(store.db_path, sid) == dict.fromkeys(before, 0)
    assert sorted(p.name for p in store.items.iterdir()) == []
    assert jclient.get(f"/sources/{sid}").status_code == 404


@pytest.mark.parametrize("scope", ["selected", "unread", "all"])
def test_bundles(japp: Flask, jclient: FlaskClient, tmp_path: Path, scope: str) -> None:
    first, _ = add_source(japp, ["one"], [("f.bin", b"\0" * 5000)])
    second, _ = add_source(japp, ["two"])
    logged_in(jclient, japp)
    token = csrf(jclient, "/")
    jclient.post(f"/sources/{second}/mark", data={"csrf_token": token, "action": "read"})
    response = jclient.post("/bundle", data={"csrf_token": token, "scope": scope, "source": first})
    assert response.status_code == 200
    assert response.mimetype == "application/x-tar"
    path = tmp_path / "bundle.tar"
    path.write_bytes(response.data)
    manifest, open_item = read_bundle(path)
    expected = [first] if scope != "all" else [first, second]
    names = {designation(japp, sid) for sid in expected}
    assert {s.designation for s in manifest.sources} == names
    store = state_of(japp).store
    for _, item in manifest.items():
        with open_item(item) as handle:
            assert handle.read() == (store.items / item.id).read_bytes()
    assert rows(jclient, "/?show=unread") == {}  # what was downloaded is read


@pytest.mark.parametrize("cut", ["client_gone", "item_deleted"])
def test_a_bundle_cut_short_marks_nothing_read(japp: Flask, jclient: FlaskClient, cut: str) -> None:
    """A bundle that did not reach its end is refused whole by ``tipbox open``: none of its
    sources was delivered, so all stay unread (they used to be marked before streaming)."""
    add_source(japp, ["one"], [("f.bin", b"\0" * 5000)])
    add_source(japp, ["two", "three"])
    logged_in(jclient, japp)
    token = csrf(jclient, "/")
    before = rows(jclient, "/?show=unread").keys()
    assert len(before) == 2
    response = jclient.post("/bundle", data={"csrf_token": token, "scope": "all"}, buffered=False)
    blocks = iter(response.response)
    assert next(blocks).startswith(b"manifest.json")
    if cut == "client_gone":
        response.close()
    else:
        state = state_of(japp)
        last = state.inbox.select(0, "all")[-1]  # (the order of "all" is the same for anyone)
        state.store.delete_item(state.store.items_of(last)[0])
        with pytest.raises(FileNotFoundError):
            list(blocks)
        response.close()
    assert rows(jclient, "/?show=unread").keys() == before


@pytest.mark.parametrize(
    ("data", "status"),
    [({"scope": "selected"}, 400), ({"scope": "everything"}, 400), ({}, 400)],
)
def test_bad_bundle_requests(
    japp: Flask, jclient: FlaskClient, data: dict[str, str], status: int
) -> None:
    logged_in(jclient, japp)
    response = jclient.post("/bundle", data={"csrf_token": csrf(jclient, "/"), **data})
    assert response.status_code == status


# --- replies ------------------------------------------------------------------------------------


def _reply_for(app: Flask, identity: X25519Identity, text: str = "We read you.") -> bytes:
    newsroom = state_of(app).store.recipients
    return make_reply(text, [identity.recipient, *newsroom])


def _upload(client: FlaskClient, sid: str, data: bytes) -> str:
    token = csrf(client, f"/sources/{sid}")
    response = client.post(
        f"/sources/{sid}/reply",
        data={"csrf_token": token, "reply": (io.BytesIO(data), "reply.age")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    return client.get(response.headers["Location"]).text


def _no_temp_files(app: Flask) -> None:
    items = state_of(app).store.items
    assert [p.name for p in items.iterdir() if p.name.startswith(".")] == []


def test_upload_reply(japp: Flask, jclient: FlaskClient) -> None:
    identity = X25519Identity.generate()
    sid, _ = add_source(japp, reply_identity=identity)
    logged_in(jclient, japp)
    page = _upload(jclient, sid, _reply_for(japp, identity))
    assert "The reply was stored" in page
    store = state_of(japp).store
    (reply,) = store.replies(sid)
    assert store.reply_text(reply, identity) == "We read you."
    _no_temp_files(japp)


def _wrong_source(app: Flask, identity: X25519Identity) -> bytes:
    return _reply_for(app, X25519Identity.generate())


def _no_newsroom(app: Flask, identity: X25519Identity) -> bytes:
    return make_reply("hi", [identity.recipient, X25519Identity.generate().recipient])


def _cut_early(data: bytes) -> bytes:
    """The header, the payload nonce and 10 bytes: less than one authentication tag."""
    end = data.index(b"\n", data.index(b"\n---") + 1) + 1
    return data[: end + 16 + 10]


def _unpadded(app: Flask, identity: X25519Identity) -> bytes:
    """A well-declared reply whose size is not a power of two (not made by tipbox reply)."""
    keys = [identity.recipient, *state_of(app).store.recipients]
    out = io.BytesIO()
    crypto.encrypt(io.BytesIO(b"x" * 100), out, keys, extra_stanzas=[declaration(keys)])
    return out.getvalue()


BAD_REPLIES = {
    "wrong source": (_wrong_source, "made for other keys"),
    "no newsroom key": (_no_newsroom, "made for other keys"),
    "truncated": (lambda a, i: _reply_for(a, i)[:-100], "The reply was refused"),
    "cut by one byte": (lambda a, i: _reply_for(a, i)[:-1], "The reply was refused"),
    "cut in its first chunk": (lambda a, i: _cut_early(_reply_for(a, i)), "truncated or damaged"),
    "header only": (lambda a, i: _reply_for(a, i)[:300], "not a valid age file"),
    "not age": (lambda a, i: b"hello, this is not an age file\n" * 40, "not a valid age file"),
    "empty": (lambda a, i: b"", "not a valid age file"),
    "unpadded": (lambda a, i: _unpadded(a, i), "not padded"),
}


@pytest.mark.parametrize("case", list(BAD_REPLIES))
def test_bad_replies_are_refused(japp: Flask, jclient: FlaskClient, case: str) -> None:
    identity = X25519Identity.generate()
    sid, _ = add_source(japp, reply_identity=identity)
    logged_in(jclient, japp)
    make, needle = BAD_REPLIES[case]
    page = _upload(jclient, sid, make(japp, identity))
    assert needle in page, page
    assert state_of(japp).store.replies(sid) == []
    _no_temp_files(japp)


def test_typed_reply(japp: Flask, jclient: FlaskClient) -> None:
    identity = X25519Identity.generate()
    sid, _ = add_source(japp, reply_identity=identity)
    logged_in(jclient, japp)
    token = csrf(jclient, f"/sources/{sid}")
    page = jclient.get(f"/sources/{sid}").text
    assert "less private" in page
    jclient.post(f"/sources/{sid}/reply-text", data={"csrf_token": token, "text": "Hi\r\nthere"})
    store = state_of(japp).store
    (reply,) = store.replies(sid)
    assert store.reply_text(reply, identity) == "Hi\nthere"
    for text in ("   ", "x" * 100_001):
        jclient.post(f"/sources/{sid}/reply-text", data={"csrf_token": token, "text": text})
    assert len(store.replies(sid)) == 1


def test_an_anonymous_upload_writes_nothing(japp: Flask, jclient: FlaskClient) -> None:
    sid, _ = add_source(japp)
    response = jclient.post(
        f"/sources/{sid}/reply",
        data={"reply": (io.BytesIO(b"x" * 100_000), "reply.age")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    _no_temp_files(japp)


def test_classical_replies_say_so(japp: Flask, jclient: FlaskClient) -> None:
    """A source whose reply key is still X25519 (from before hybrid keys): the page says that a
    reply now is classical, and marks each classical reply."""
    sid, _ = add_source(japp, reply_identity=X25519Identity.generate())
    logged_in(jclient, japp)
    token = csrf(jclient, f"/sources/{sid}")
    jclient.post(f"/sources/{sid}/reply-text", data={"csrf_token": token, "text": "Hello"})
    page = jclient.get(f"/sources/{sid}").text
    assert "not post-quantum" in one(page, id="classical-reply-key").text
    [row] = find(page, "tr", cls="item-reply")
    assert "classical" in row.classes
    assert "classical" in row.text
    [message] = find(page, "tr", cls="item-message")
    assert "classical" in message.classes  # the test newsroom key is X25519 too
