"""The JSON API (docs/api.md): tokens, sources, items, downloads, bundles, replies, deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.bundle import read_bundle
from app.crypto import X25519Identity
from app.reply import make_reply
from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_journalist import add_source, add_user, csrf, logged_in, state_of

config, translations_dir = fx.config, fx.translations_dir
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock


@pytest.fixture
def token(japp: Flask) -> str:
    """A token of journalist alice."""
    state = state_of(japp)
    add_user(japp)
    alice = state.accounts.find("alice")
    assert alice is not None
    return state.tokens.create(alice, "tests")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(client: FlaskClient, method: str, url: str, token: str, **kwargs: Any) -> Any:
    return getattr(client, method)(url, headers=auth(token), **kwargs)


ENDPOINTS = [
    ("get", "/api/v1/me"),
    ("get", "/api/v1/sources"),
    ("get", "/api/v1/sources/" + "a" * 64),
    ("get", f"/api/v1/sources/{'a' * 64}/items/{'b' * 32}"),
    ("post", "/api/v1/bundle"),
    ("post", f"/api/v1/sources/{'a' * 64}/read"),
    ("post", f"/api/v1/sources/{'a' * 64}/replies"),
    ("delete", f"/api/v1/sources/{'a' * 64}/items/{'b' * 32}"),
    ("delete", "/api/v1/sources/" + "a" * 64),
]
BAD_TOKENS = {
    "none": {},
    "empty bearer": {"Authorization": "Bearer "},
    "basic": {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="},
    "unknown": {"Authorization": "Bearer tbx_" + "A" * 43},
    "no prefix": {"Authorization": "Bearer " + "A" * 43},
    "huge": {"Authorization": "Bearer tbx_" + "A" * 5000},
}


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
@pytest.mark.parametrize("bad", list(BAD_TOKENS))
def test_every_endpoint_needs_a_valid_token(
    japp: Flask, jclient: FlaskClient, token: str, method: str, url: str, bad: str
) -> None:
    sid, _ = add_source(japp)
    response = getattr(jclient, method)(url, headers=BAD_TOKENS[bad])
    assert response.status_code == 401
    assert response.json == {"error": "A valid API token is needed."}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert state_of(japp).store.source(sid) is not None


def test_a_session_cookie_is_not_a_token(japp: Flask, jclient: FlaskClient) -> None:
    logged_in(jclient, japp)
    assert jclient.get("/api/v1/sources").status_code == 401


def test_a_revoked_token_stops_working(japp: Flask, jclient: FlaskClient, token: str) -> None:
    assert call(jclient, "get", "/api/v1/me", token).json == {"username": "alice", "admin": False}
    state = state_of(japp)
    alice = state.accounts.find("alice")
    assert alice is not None
    (listed,) = state.tokens.of(alice)
    assert state.tokens.revoke(alice, listed.id)
    assert call(jclient, "get", "/api/v1/me", token).status_code == 401


def test_a_removed_journalists_token_stops_working(
    japp: Flask, jclient: FlaskClient, token: str
) -> None:
    state_of(japp).accounts.remove("alice")
    assert call(jclient, "get", "/api/v1/sources", token).status_code == 401


def test_sources_and_items(japp: Flask, jclient: FlaskClient, token: str) -> None:
    sid, items = add_source(japp, ["one", "two"], [("f.txt", b"f")])
    listed = call(jclient, "get", "/api/v1/sources", token).json
    assert (listed["page"], listed["pages"], listed["total"]) == (1, 1, 1)
    (source,) = listed["sources"]
    designation = state_of(japp).store.source(sid).designation  # type: ignore[union-attr]
    assert source == {
        "id": sid,
        "designation": designation,
        "last_active_day": items[0].day,
        "counts": {"message": 2, "file": 1, "reply": 0},
        "unread": True,
        "starred": False,
    }
    detail = call(jclient, "get", f"/api/v1/sources/{sid}", token).json
    assert [i["id"] for i in detail["items"]] == [i.id for i in reversed(items)]
    assert set(detail["items"][0]) == {"id", "kind", "day", "size"}
    item = items[0]
    download = call(jclient, "get", f"/api/v1/sources/{sid}/items/{item.id}", token)
    assert download.data == state_of(japp).store.path_of(item).read_bytes()
    download.close()


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/v1/sources?show=everything", 400),
        ("/api/v1/sources?page=-1", 400),
        ("/api/v1/sources?page=\u00b2", 400),  # superscript two: str.isdigit() says yes
        ("/api/v1/sources?page=\u0663", 400),  # Arabic-Indic three
        ("/api/v1/sources?page=%EF%BC%92", 400),  # fullwidth two
        ("/api/v1/sources/nobody", 404),
        ("/api/v1/nothing", 404),
    ],
)
def test_bad_requests(jclient: FlaskClient, token: str, url: str, status: int) -> None:
    response = call(jclient, "get", url, token)
    assert response.status_code == status
    assert set(response.json) == {"error"}


def test_a_page_past_the_end_is_the_last_one(japp: Flask, jclient: FlaskClient, token: str) -> None:
    add_source(japp)
    for number in ("2", "9" * 5000):  # longer than int() parses by default
        response = call(jclient, "get", f"/api/v1/sources?page={number}", token)
        assert response.status_code == 200
        assert (response.json["page"], len(response.json["sources"])) == (1, 1)


def test_marks(japp: Flask, jclient: FlaskClient, token: str) -> None:
    sid, _ = add_source(japp)
    for action, unread, starred in [
        ("read", False, False),
        ("star", False, True),
        ("unread", True, True),
        ("unstar", True, False),
    ]:
        body = call(jclient, "post", f"/api/v1/sources/{sid}/{action}", token).json
        assert (body["source"]["unread"], body["source"]["starred"]) == (unread, starred)
    assert call(jclient, "post", f"/api/v1/sources/{sid}/burn", token).status_code == 404


@pytest.mark.parametrize(
    ("body", "count"),
    [({"scope": "all"}, 2), ({"scope": "unread"}, 1), ({"scope": "selected", "sources": []}, 0)],
)
def test_bundle(
    japp: Flask, jclient: FlaskClient, token: str, tmp_path: Path, body: dict[str, Any], count: int
) -> None:
    first, _ = add_source(japp)
    second, _ = add_source(japp)
    call(jclient, "post", f"/api/v1/sources/{second}/read", token)
    response = call(jclient, "post", "/api/v1/bundle", token, json=body)
    if not count:
        assert response.status_code == 400
        return
    path = tmp_path / "b.tar"
    path.write_bytes(response.data)
    manifest, _ = read_bundle(path)
    assert len(manifest.sources) == count
    assert call(jclient, "get", "/api/v1/sources?show=unread", token).json["total"] == 0


def test_upload_and_typed_replies(japp: Flask, jclient: FlaskClient, token: str) -> None:
    identity = X25519Identity.generate()
    sid, _ = add_source(japp, reply_identity=identity)
    store = state_of(japp).store
    data = make_reply("From the air gap.", [identity.recipient, *store.recipients])
    url = f"/api/v1/sources/{sid}/replies"
    headers = {**auth(token), "Content-Type": "application/octet-stream"}
    response = jclient.post(url, data=data, headers=headers)
    assert response.status_code == 201
    assert response.json["item"]["kind"] == "reply"
    typed = call(jclient, "post", url, token, json={"text": "Typed."})
    assert typed.status_code == 201
    texts = sorted(store.reply_text(item, identity) for item in store.replies(sid))
    assert texts == ["From the air gap.", "Typed."]


def _stranger() -> Any:
    """Another source's reply key."""
    return X25519Identity.generate().recipient


@pytest.mark.parametrize(
    ("make", "status", "needle"),
    [
        (lambda i, n: make_reply("x", [_stranger(), *n]), 422, "other keys"),
        (lambda i, n: make_reply("x", [i.recipient, *n])[:-200], 422, "not padded"),
        (lambda i, n: b"not an age file", 422, "not a valid age file"),
        (lambda i, n: b"x" * (5 << 20), 413, "too large"),
    ],
)
def test_bad_reply_uploads(
    japp: Flask, jclient: FlaskClient, token: str, make: Any, status: int, needle: str
) -> None:
    identity = X25519Identity.generate()
    sid, _ = add_source(japp, reply_identity=identity)
    store = state_of(japp).store
    data = make(identity, store.recipients)
    headers = {**auth(token), "Content-Type": "application/octet-stream"}
    response = jclient.post(f"/api/v1/sources/{sid}/replies", data=data, headers=headers)
    assert response.status_code == status
    assert needle in response.json["error"]
    assert store.replies(sid) == []
    assert [p.name for p in store.items.iterdir() if p.name.startswith(".")] == []


def test_deletion(japp: Flask, jclient: FlaskClient, token: str) -> None:
    sid, items = add_source(japp, ["a", "b"])
    store = state_of(japp).store
    url = f"/api/v1/sources/{sid}/items/{items[0].id}"
    assert call(jclient, "delete", url, token).json == {"deleted": 1}
    assert not store.path_of(items[0]).exists()
    assert call(jclient, "delete", url, token).status_code == 404
    assert call(jclient, "delete", f"/api/v1/sources/{sid}", token).json == {"deleted": 1}
    assert not store.path_of(items[1]).exists()
    assert store.source(sid) is None
    assert call(jclient, "delete", f"/api/v1/sources/{sid}", token).status_code == 404


def test_the_api_needs_no_csrf_token_but_pages_do(
    japp: Flask, jclient: FlaskClient, token: str
) -> None:
    sid, _ = add_source(japp)
    assert call(jclient, "post", f"/api/v1/sources/{sid}/star", token).status_code == 200
    logged_in(jclient, japp, "bob")
    csrf(jclient, "/")
    assert jclient.post(f"/sources/{sid}/mark", data={"action": "star"}).status_code == 400
