"""Every destructive action in the journalist app asks first, without JavaScript: the first POST
only shows a confirmation page; its form (sent as a browser would) is what acts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_app import find, parse
from tests.fixtures_journalist import add_source, add_user, csrf, logged_in, state_of

config, translations_dir = fx.config, fx.translations_dir
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock


def confirm_form(page: TestResponse) -> tuple[str, list[tuple[str, str]]]:
    """The confirmation form's action and the fields a browser would send with its button."""
    elements = parse(page.data)
    start = next(
        i for i, e in enumerate(elements) if e.tag == "form" and e.attrs.get("id") == "confirm"
    )
    action = elements[start]["action"]
    fields: list[tuple[str, str]] = []
    for element in elements[start + 1 :]:
        if element.tag == "form":
            break
        if element.tag == "input" and element.attrs.get("name"):
            fields.append((element["name"], element.attrs.get("value", "")))
        if element.tag == "button" and element.attrs.get("name"):
            fields.append((element["name"], element.attrs.get("value", "")))
    return action, fields


def send(client: FlaskClient, action: str, fields: list[tuple[str, str]]) -> TestResponse:
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return client.post(action, data=data)


@dataclass
class Case:
    """One destructive action: what to post first, and whether it has happened yet."""

    url: str
    fields: list[tuple[str, str]]
    done: Callable[[], bool]
    cancel: str


def _admin_case(japp: Flask, client: FlaskClient, what: str) -> Case:
    logged_in(client, japp, "root", admin=True)
    bob = add_user(japp, "bob")
    accounts = state_of(japp).accounts
    bob_id = accounts.find("bob").id  # type: ignore[union-attr]

    def secrets() -> tuple[str, str] | None:
        with accounts.database.connect() as db:
            return db.execute(  # type: ignore[no-any-return]
                "SELECT password_hash, totp_secret FROM journalists WHERE id = ?", (bob_id,)
            ).fetchone()

    before = secrets()
    assert before is not None
    done = {
        "delete": lambda: secrets() is None,
        "reset-password": lambda: secrets() is not None and secrets()[0] != before[0],  # type: ignore[index]
        "reset-totp": lambda: secrets() is not None and secrets()[1] != bob.secret,  # type: ignore[index]
    }[what]
    return Case(f"/admin/users/{bob_id}/{what}", [], done, "/admin/users")


def _items_case(japp: Flask, client: FlaskClient) -> Case:
    sid, items = add_source(japp, ["a", "b"], [("c.txt", b"c")])
    logged_in(client, japp)
    store = state_of(japp).store
    chosen = [("item", items[0].id), ("item", items[2].id)]
    return Case(
        f"/sources/{sid}/items/delete",
        chosen,
        lambda: [i.id for i in store.items_of(sid)] == [items[1].id],
        f"/sources/{sid}",
    )


def _source_case(japp: Flask, client: FlaskClient) -> Case:
    sid, _ = add_source(japp, ["a"])
    logged_in(client, japp)
    store = state_of(japp).store
    return Case(f"/sources/{sid}/delete", [], lambda: store.source(sid) is None, f"/sources/{sid}")


def _token_case(japp: Flask, client: FlaskClient) -> Case:
    user = logged_in(client, japp)
    state = state_of(japp)
    me = state.accounts.find(user.name)
    assert me is not None
    client.post("/account/tokens", data={"csrf_token": csrf(client, "/account"), "name": "bot"})
    (token,) = state.tokens.of(me)
    return Case(
        f"/account/tokens/{token.id}/revoke", [], lambda: not state.tokens.of(me), "/account"
    )


CASES: dict[str, Callable[[Flask, FlaskClient], Case]] = {
    "delete journalist": lambda a, c: _admin_case(a, c, "delete"),
    "new password": lambda a, c: _admin_case(a, c, "reset-password"),
    "new TOTP": lambda a, c: _admin_case(a, c, "reset-totp"),
    "delete items": _items_case,
    "delete source": _source_case,
    "revoke token": _token_case,
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_first_post_asks_and_only_the_confirmation_acts(
    name: str, japp: Flask, jclient: FlaskClient
) -> None:
    case = CASES[name](japp, jclient)
    token = csrf(jclient, "/")
    first = jclient.post(case.url, data={"csrf_token": token, **_grouped(case.fields)})
    assert first.status_code == 200, (first.status_code, first.headers.get("Location"))
    assert not case.done(), "acted without a confirmation"
    action, fields = confirm_form(first)
    assert action == case.url
    assert ("confirm", "yes") in fields
    for field in case.fields:
        assert field in fields  # what was chosen is carried over, not chosen again
    assert find(first.data, "a", id="cancel")[0]["href"] == case.cancel
    assert not case.done()
    send(jclient, action, fields)
    assert case.done()


def _grouped(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return data


def test_deleting_no_item_asks_nothing(japp: Flask, jclient: FlaskClient) -> None:
    sid, items = add_source(japp, ["a"])
    logged_in(jclient, japp)
    response = jclient.post(f"/sources/{sid}/items/delete", data={"csrf_token": csrf(jclient)})
    assert response.status_code == 303
    assert [i.id for i in state_of(japp).store.items_of(sid)] == [items[0].id]


def test_the_own_account_is_refused_before_any_question(japp: Flask, jclient: FlaskClient) -> None:
    logged_in(jclient, japp, "root", admin=True)
    own = state_of(japp).accounts.find("root").id  # type: ignore[union-attr]
    response = jclient.post(f"/admin/users/{own}/delete", data={"csrf_token": csrf(jclient)})
    assert response.status_code == 303
    assert "cannot delete your own" in jclient.get("/admin/users").text
