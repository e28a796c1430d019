"""The journalist app shows a conversation in the order it happened (issue 13): numbered items,
numbered download names, what is new for *this* journalist, and unread bundles that hold only
what this journalist has not downloaded yet (real store, real crypto, real SQLite)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from app import cli
from app.bundle import read_bundle
from app.crypto import X25519Identity
from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_app import find, one
from tests.fixtures_journalist import add_source, csrf, logged_in, state_of

config, translations_dir = fx.config, fx.translations_dir
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock


def conversation(app: Flask) -> str:
    """A source whose items are #1 message, #2 file, #3 reply, #4 message."""
    store = state_of(app).store
    sid, _ = add_source(app, ["first"], [("a.pdf", b"%PDF")])
    store.add_reply_text(sid, "thanks")
    store.commit(sid, "", [store.add_message("again")])
    return sid


def folder(app: Flask, sid: str) -> str:
    found = state_of(app).store.source(sid)
    assert found is not None
    return "-".join(found.designation.split())


def numbers(client: FlaskClient, sid: str) -> list[str]:
    """The source page's item labels, top to bottom, with "new" where it is shown."""
    page = client.get(f"/sources/{sid}")
    assert page.status_code == 200
    # The "classical" badge (a reply to a source still on an X25519 key) is not about order.
    labels = [
        [w for w in row.text.split() if w != "classical"]
        for row in find(page.data, "td", cls="number")
    ]
    return [" ".join(words[:3]) for words in labels]


def test_items_are_numbered_in_conversation_order(japp: Flask, jclient: FlaskClient) -> None:
    sid = conversation(japp)
    logged_in(jclient, japp)
    assert numbers(jclient, sid) == [
        "#1 message new",
        "#2 file new",
        "#3 reply",  # the newsroom's own; new means what the source sent
        "#4 message new",
    ]
    token = csrf(jclient, "/")
    jclient.post(f"/sources/{sid}/mark", data={"csrf_token": token, "action": "read"})
    store = state_of(japp).store
    store.commit(sid, "", [store.add_message("later")])
    assert numbers(jclient, sid) == [
        "#1 message",
        "#2 file",
        "#3 reply",
        "#4 message",
        "#5 message new",
    ]


def test_download_names_carry_the_number(japp: Flask, jclient: FlaskClient) -> None:
    sid = conversation(japp)
    logged_in(jclient, japp)
    items = {i.kind: i for i in state_of(japp).store.items_of(sid)}
    name = f"0002-{folder(japp, sid)}-file.age"
    response = jclient.get(f"/sources/{sid}/items/{items['file'].id}")
    assert response.headers["Content-Disposition"] == f"attachment; filename={name}"
    response.close()
    page = jclient.get(f"/sources/{sid}").data
    link = one(page, "a", href=f"/sources/{sid}/items/{items['file'].id}")
    assert link["download"] == name


def sources_new(client: FlaskClient, sid: str) -> str:
    row = one(client.get("/").data, "tr", id=f"source-{sid}")
    return " ".join(row.text.split()[2:4])  # after the designation's two words


def test_the_list_says_what_is_new_for_this_journalist(japp: Flask, jclient: FlaskClient) -> None:
    sid = conversation(japp)
    logged_in(jclient, japp)
    bob = japp.test_client()
    logged_in(bob, japp, "bob")
    assert sources_new(jclient, sid) == "3 new"  # messages and files; replies are ours
    token = csrf(jclient, "/")
    jclient.post(f"/sources/{sid}/mark", data={"csrf_token": token, "action": "read"})
    store = state_of(japp).store
    store.commit(sid, "", [store.add_message("later")])
    assert sources_new(jclient, sid) == "1 new"
    assert sources_new(bob, sid) == "4 new"


def _bundle(client: FlaskClient, scope: str, path: Path) -> Path:
    token = csrf(client, "/")
    response = client.post("/bundle", data={"csrf_token": token, "scope": scope})
    assert response.status_code == 200
    path.write_bytes(response.data)
    return path


def test_an_unread_bundle_holds_only_what_this_journalist_has_not_downloaded(
    japp: Flask, jclient: FlaskClient, tmp_path: Path, keypair: X25519Identity
) -> None:
    sid = conversation(japp)
    logged_in(jclient, japp)
    bob = japp.test_client()
    logged_in(bob, japp, "bob")
    manifest, _ = read_bundle(_bundle(jclient, "all", tmp_path / "first.tar"))
    assert [i.kind for _, i in manifest.items()] == ["message", "file", "reply", "message"]
    store = state_of(japp).store
    (later,) = store.commit(sid, "", [store.add_message("later")])
    path = _bundle(jclient, "unread", tmp_path / "second.tar")
    manifest, _ = read_bundle(path)
    assert [i.id for _, i in manifest.items()] == [later.id]
    manifest, _ = read_bundle(_bundle(bob, "unread", tmp_path / "bob.tar"))
    assert len(list(manifest.items())) == 5  # bob downloaded nothing yet
    # `tipbox open` takes the unread bundle as it takes a full one.
    (tmp_path / "id.txt").write_text(f"{keypair}\n")
    argv = ["open", str(path), "-i", str(tmp_path / "id.txt"), "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    texts = [p.read_text() for p in (tmp_path / "out").rglob("*.txt")]
    assert texts == ["later"]


def test_the_api_gives_numbers_and_what_is_new(japp: Flask, jclient: FlaskClient) -> None:
    """Fields are added, none renamed: items keep their order (newest first) and gain ``seq``,
    ``new`` and the download ``name``; a source gains ``new``, its count of new items."""
    sid = conversation(japp)
    lj.add_user(japp)
    alice = state_of(japp).accounts.find("alice")
    assert alice is not None
    headers = {"Authorization": f"Bearer {state_of(japp).tokens.create(alice, 'tests')}"}
    detail = jclient.get(f"/api/v1/sources/{sid}", headers=headers).json
    assert detail["source"]["new"] == 3
    assert [(i["seq"], i["kind"], i["new"]) for i in detail["items"]] == [
        (4, "message", True),
        (3, "reply", False),
        (2, "file", True),
        (1, "message", True),
    ]
    assert detail["items"][2]["name"] == f"0002-{folder(japp, sid)}-file.age"
    jclient.post(f"/api/v1/sources/{sid}/read", headers=headers)
    detail = jclient.get(f"/api/v1/sources/{sid}", headers=headers).json
    assert detail["source"]["new"] == 0
    assert not any(i["new"] for i in detail["items"])


def test_a_new_reply_and_a_deleted_item_keep_the_numbers(japp: Flask, jclient: FlaskClient) -> None:
    """A reply's 201 answer carries its number; deleting an item leaves a gap, renumbers nothing
    (the air-gapped folder keeps the numbers it was given)."""
    sid = conversation(japp)
    lj.add_user(japp)
    alice = state_of(japp).accounts.find("alice")
    assert alice is not None
    headers = {"Authorization": f"Bearer {state_of(japp).tokens.create(alice, 'tests')}"}
    created = jclient.post(f"/api/v1/sources/{sid}/replies", headers=headers, json={"text": "ok"})
    assert created.status_code == 201
    item = created.json["item"]
    assert (item["seq"], item["kind"], item["new"]) == (5, "reply", False)
    assert item["name"] == f"0005-{folder(japp, sid)}-reply.age"
    file_id = next(i.id for i in state_of(japp).store.items_of(sid) if i.kind == "file")
    assert jclient.delete(f"/api/v1/sources/{sid}/items/{file_id}", headers=headers).json == {
        "deleted": 1
    }
    detail = jclient.get(f"/api/v1/sources/{sid}", headers=headers).json
    assert [i["seq"] for i in detail["items"]] == [5, 4, 3, 1]
