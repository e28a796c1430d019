"""A source's journey where it used to lose a codename or a tip (issue 10): the codename stays
put until the source asks for another, a refused submission gives the message back, every form
redirects (reload never acts twice), deletions ask first, sizes use one unit system."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Config
from app.server.session import EncryptedSessionInterface
from app.source import views
from tests.fixtures_app import (
    csrf_token,
    files_under,
    find,
    login,
    make_app,
    new_source,
    one,
    state_of,
    submit,
)

MESSAGE = "The mayor's office shreds invoices every Friday."


def stored_items(app: Flask) -> int:
    """How many items (messages and files) the store holds, over every source."""
    store = state_of(app).store
    return sum(len(store.items_of(source.id)) for source in store.list_sources())


def item_files(config: Config) -> list[Path]:
    return [p for p in (config.data_dir / "items").iterdir()]


def interface(app: Flask) -> EncryptedSessionInterface:
    return cast(EncryptedSessionInterface, app.session_interface)


def count_derivations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = views.derive_source_keys

    def counting(normalised: str, pepper: bytes, cost: Any) -> Any:
        calls.append(normalised)
        return real(normalised, pepper, cost)

    monkeypatch.setattr(views, "derive_source_keys", counting)
    return calls


# --- 1. the codename stays the same until the source asks for another ------------------------


def test_codename_survives_reloads_and_language_switches(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_derivations(monkeypatch)
    first = new_source(client)
    assert new_source(client) == first  # reload (or back)
    page = client.get("/es/generate")  # the language switch
    assert one(page.data, "html")["lang"] == "es"
    assert one(page.data, id="codename").text.strip() == first
    assert new_source(client) == first
    assert len(calls) == 1  # derived once; the keys stay in the session


def test_the_kept_codename_works_after_a_language_switch(client: FlaskClient) -> None:
    codename = new_source(client, "es")
    new_source(client, "en")
    assert submit(client, MESSAGE).status_code == 303
    client.post("/en/logout", data={"csrf_token": csrf_token(client, "/en/lookup")})
    assert login(client, codename).headers["Location"] == "/en/lookup"


def test_another_codename_is_a_post_that_redirects(client: FlaskClient) -> None:
    first = new_source(client)
    page = client.get("/en/generate").data
    form = one(page, "form", id="another-form")
    assert (form["method"], form["action"]) == ("post", "/en/generate")
    assert one(page, "button", id="another")["type"] == "submit"
    token = find(page, "input", name="csrf_token")[0]["value"]
    response = client.post("/en/generate", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == "/en/generate"
    second = new_source(client)
    assert second != first
    assert new_source(client) == second
    submit(client, "hello")
    assert login(client, second).status_code == 303
    assert login(client, first).headers["Location"] == "/en/login"


def test_after_the_first_submission_the_codename_page_never_changes_identity(
    app: Flask, client: FlaskClient
) -> None:
    first = new_source(client)
    submit(client, "hello")
    # Back, back to the codename page: it cannot show the codename again (it is no longer
    # kept), and it must not switch the source to a new one behind its back.
    page = client.get("/en/generate").data
    assert not find(page, id="codename")
    assert first not in page.decode()
    assert one(page, id="codename-used")
    assert one(page, "form", id="another-form")
    submit(client, "more")
    assert len(state_of(app).store.list_sources()) == 1
    assert stored_items(app) == 2


def test_codename_is_forgotten_at_logout(client: FlaskClient) -> None:
    first = new_source(client)
    client.post("/en/logout", data={"csrf_token": csrf_token(client, "/en/submit")})
    assert new_source(client) != first


def test_the_kept_codename_never_reaches_the_disk(
    client: FlaskClient, config: Config, tmp_path: Path
) -> None:
    codename = new_source(client)
    new_source(client, "es")
    for word in codename.split():
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert word.encode() not in path.read_bytes(), path


# --- 2. a refused submission keeps the message and the codename ------------------------------


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize("size", [40 * 1024, 4 * 1024 * 1024])
def test_too_large_gives_the_form_back_with_the_message(
    config: Config, lang: str, size: int
) -> None:
    # 2 x 40 KiB: over the files' limit while streaming; 2 x 4 MiB: past the whole body's cap
    # (limit + 2 MiB of allowance) from the Content-Length alone, before any file byte.
    app = make_app(config, max_submission_bytes=64 * 1024)
    client = app.test_client()
    codename = new_source(client, lang)
    response = submit(client, MESSAGE, [(b"x" * size, "a"), (b"y" * size, "b")], lang=lang)
    assert response.status_code == 413
    assert one(response.data, "form", id="submit-form")
    assert one(response.data, "textarea", name="message").text == MESSAGE
    reason = one(response.data, cls="flash-error").text
    assert "64 KiB" in reason
    assert {"en": "choose them again", "es": "vuelva a elegirlos"}[lang] in reason
    assert stored_items(app) == 0
    assert item_files(config) == []
    # The retry, with a smaller file, works, and the codename is the same one.
    assert new_source(client, lang) == codename
    assert submit(client, MESSAGE, [(b"z" * 1024, "c")], lang=lang).status_code == 303
    assert stored_items(app) == 2
    client.post(f"/{lang}/logout", data={"csrf_token": csrf_token(client, f"/{lang}/lookup")})
    assert login(client, codename, lang).headers["Location"] == f"/{lang}/lookup"


def test_a_bad_message_says_to_choose_the_files_again(client: FlaskClient) -> None:
    new_source(client)
    response = submit(client, "x" * 100_001, [(b"data", "a.txt")])
    assert response.status_code == 200
    assert "choose them again" in " ".join(e.text for e in find(response.data, cls="flash-error"))


def _assert_message_given_back(response: Any, message: str) -> None:
    assert one(response.data, "textarea", id="lost-message").text == message
    assert one(response.data, "a", id="start-again")["href"] == "/en/generate"
    assert one(response.data, "a", id="log-in")["href"] == "/en/login"
    assert "was not kept" in one(response.data, id="lost-advice").text


def test_expired_session_gives_the_message_back(app: Flask, client: FlaskClient) -> None:
    new_source(client)
    token = csrf_token(client, "/en/submit")
    ours = interface(app)
    later = ours.now() + 3 * 3600
    ours.clock = lambda: later
    response = submit(client, MESSAGE, [(b"x" * 1000, "a.txt")], token=token)
    assert response.status_code == 400
    _assert_message_given_back(response, MESSAGE)
    assert stored_items(app) == 0


@pytest.mark.parametrize("files", [[], [(b"secret file", "a.txt")]])
def test_lost_session_gives_the_message_back(
    app: Flask, client: FlaskClient, config: Config, files: list[tuple[bytes, str]]
) -> None:
    new_source(client)
    token = csrf_token(client, "/en/submit")
    client.delete_cookie("tipbox")  # the browser was restarted, or the server's key changed
    response = submit(client, MESSAGE, files, token=token)
    assert response.status_code == 400
    _assert_message_given_back(response, MESSAGE)
    assert stored_items(app) == 0
    assert item_files(config) == []


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_post_from_another_site_gets_no_text_back(
    app: Flask, client: FlaskClient, site: str
) -> None:
    """Without a session no token proves the form was ours: another site's form must not be
    able to put words of its choosing on our page."""
    response = submit(
        client, "Your codename leaked: go to evil.onion", token="", headers={"Sec-Fetch-Site": site}
    )
    assert response.status_code == 400
    assert find(response.data, "textarea", id="lost-message") == []
    assert b"evil.onion" not in response.data
    assert stored_items(app) == 0


def test_login_error_covers_a_codename_never_used(client: FlaskClient) -> None:
    codename = new_source(client)
    response = login(client, codename)
    assert response.status_code == 303
    error = one(client.get(response.headers["Location"]).data, cls="flash-error").text
    assert "If you never sent anything with it, it was not kept" in error


# --- 3. post/redirect/get ----------------------------------------------------------------------


def test_submission_redirects_to_a_confirmation_that_reloads_safely(
    app: Flask, client: FlaskClient
) -> None:
    new_source(client)
    response = submit(client, MESSAGE, [(b"a" * 1536, "a.txt"), (b"b" * 2048, "b.txt")])
    assert response.status_code == 303
    assert response.headers["Location"] == "/en/received"
    assert stored_items(app) == 3
    for _ in range(3):  # reloads
        page = client.get("/en/received")
        assert page.status_code == 200
        received = one(page.data, id="received").text
        assert f"Your message ({len(MESSAGE)} bytes)" in received
        assert "2 files (3.5 KiB in total)" in received
    assert stored_items(app) == 3
    assert client.get("/es/received").status_code == 200  # the language switch too


def test_confirmation_without_a_submission_goes_to_the_form(client: FlaskClient) -> None:
    assert client.get("/en/received").headers["Location"] == "/"
    new_source(client)
    assert client.get("/en/received").headers["Location"] == "/en/submit"


def test_the_honeypot_redirects_like_a_success(app: Flask, client: FlaskClient) -> None:
    new_source(client)
    response = submit(client, "buy", [(b"spam", "x.txt")], extra={"website": "http://x"})
    assert response.headers["Location"] == "/en/received"
    assert "1 file (4 bytes)" in one(client.get("/en/received").data, id="received").text
    assert stored_items(app) == 0


def test_logout_redirects_to_the_advice(client: FlaskClient) -> None:
    new_source(client)
    response = client.post("/en/logout", data={"csrf_token": csrf_token(client, "/en/submit")})
    assert response.status_code == 303
    assert response.headers["Location"] == "/en/logged-out"
    page = client.get("/en/logged-out")
    assert "New Identity" in one(page.data, id="new-identity-advice").text


# --- 6. deleting replies asks first, without JavaScript --------------------------------------


def _source_with_replies(app: Flask, client: FlaskClient) -> list[str]:
    codename = new_source(client)
    submit(client, "hello")
    store = state_of(app).store
    source_id = store.list_sources()[0].id
    ids = [store.add_reply_text(source_id, text).id for text in ("first", "second")]
    login(client, codename)
    return ids


def test_delete_one_reply_asks_first(app: Flask, client: FlaskClient) -> None:
    first, second = _source_with_replies(app, client)
    page = client.get("/en/lookup").data
    link = one(page, "a", href=f"/en/replies/{second}/delete")
    assert "delete-reply" in link.classes
    confirm = client.get(link["href"])  # a GET changes nothing
    assert len(state_of(app).store.replies(state_of(app).store.list_sources()[0].id)) == 2
    form = one(confirm.data, "form", id="confirm-delete")
    assert (form["method"], form["action"]) == ("post", f"/en/replies/{second}/delete")
    assert one(confirm.data, cls="reply-text").text == "second"
    assert one(confirm.data, "a", id="cancel")["href"] == "/en/lookup"
    token = find(confirm.data, "input", name="csrf_token")[0]["value"]
    response = client.post(form["action"], data={"csrf_token": token})
    assert response.headers["Location"] == "/en/lookup"
    assert [e.text for e in find(client.get("/en/lookup").data, cls="reply-text")] == ["first"]


def test_delete_all_replies_asks_first(app: Flask, client: FlaskClient) -> None:
    _source_with_replies(app, client)
    page = client.get("/en/lookup").data
    link = one(page, "a", id="delete-all")
    confirm = client.get(link["href"])
    assert len(find(client.get("/en/lookup").data, cls="reply")) == 2
    form = one(confirm.data, "form", id="confirm-delete")
    assert (form["method"], form["action"]) == ("post", "/en/replies/delete")
    token = find(confirm.data, "input", name="csrf_token")[0]["value"]
    client.post(form["action"], data={"csrf_token": token})
    assert one(client.get("/en/lookup").data, id="no-replies")


def test_confirming_a_reply_already_deleted_says_so(app: Flask, client: FlaskClient) -> None:
    first, _ = _source_with_replies(app, client)
    token = csrf_token(client, "/en/lookup")
    client.post(f"/en/replies/{first}/delete", data={"csrf_token": token})
    response = client.get(f"/en/replies/{first}/delete")
    assert response.headers["Location"] == "/en/lookup"
    assert one(client.get("/en/lookup").data, cls="flash-error")


# --- 4. one unit system ------------------------------------------------------------------------


def test_the_form_states_the_limit_in_the_same_units(client: FlaskClient) -> None:
    new_source(client)
    assert "2 GiB" in one(client.get("/en/submit").data, id="files-hint").text


# --- 5. Tor Browser 15's security level --------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "words"),
    [("en", ("Change", "Safest", "restart")), ("es", ("Cambiar", "El más seguro", "reinici"))],
)
def test_security_level_advice_says_tor_browser_restarts(
    client: FlaskClient, lang: str, words: tuple[str, ...]
) -> None:
    page = client.get(f"/{lang}/").data
    for text in (one(page, id="security-level").text, one(page, cls="js-banner").text):
        for word in words:
            assert word in text, (word, text)


def test_no_file_left_by_a_refusal(config: Config) -> None:
    app = make_app(config, max_submission_bytes=1024)
    client = app.test_client()
    new_source(client)
    before = files_under(config.data_dir)
    submit(client, MESSAGE, [(b"x" * 4096, "a")])
    assert files_under(config.data_dir) == before
