"""The source's flows through the real app: real store, real crypto, real SQLite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import words
from app.config import Config
from app.crypto import X25519Identity, derive_source_keys
from app.crypto.hybrid import HybridIdentity
from app.server.store import Store
from app.source import views
from tests.fixtures_app import (
    TEST_KDF,
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

ITEM_FILE = re.compile(r"items/[0-9a-f]{32}")
# What the data folder may hold: the database, its WAL files, items with random names, secrets.
ALLOWED_DATA = re.compile(
    r"store\.sqlite3(-wal|-shm)?|items|items/[0-9a-f]{32}|secrets|secrets/(instance|pepper)\.key"
)


def store_of(app: Flask) -> Store:
    return state_of(app).store


def contents(app: Flask, identity: X25519Identity) -> list[tuple[str, str, bytes]]:
    """(kind, name, plaintext) of every stored item, oldest first."""
    store = store_of(app)
    result = []
    for source in store.list_sources():
        for item in reversed(store.items_of(source.id)):
            name, data = store.read_member(item, identity, limit=1 << 24)
            result.append((item.kind, name, data))
    return result


def nothing_stored(app: Flask, config: Config) -> bool:
    store = store_of(app)
    names = [str(p) for p in files_under(config.data_dir)]
    return (
        not store.list_sources()
        and not any(ITEM_FILE.fullmatch(n) for n in names)
        and not [p for p in (config.data_dir / "items").iterdir()]
    )


# --- landing and languages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "lang", "first_time", "returning"),
    [
        ("/", "en", "/en/generate", "/en/login"),
        ("/en/", "en", "/en/generate", "/en/login"),
        ("/es/", "es", "/es/generate", "/es/login"),
    ],
)
def test_landing(client: FlaskClient, url: str, lang: str, first_time: str, returning: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    assert one(response.data, "html")["lang"] == lang
    assert one(response.data, "a", id="first-time")["href"] == first_time
    assert one(response.data, "a", id="returning")["href"] == returning
    assert one(response.data, "a", hreflang="en")
    assert one(response.data, "a", hreflang="es")
    assert "Test Newsroom" in response.text
    assert "Set-Cookie" not in response.headers  # no session before it is needed


def test_landing_shows_the_newsroom_key_fingerprint(client: FlaskClient, keypair: X25519Identity):
    expected = " ".join(words.fingerprint(str(keypair.recipient).encode()))
    assert one(client.get("/").data, id="fingerprint").text.strip() == expected


@pytest.mark.parametrize(
    "url", ["/fr/", "/fr/generate", "/EN/", "/e/submit", "/en/nope", "/static/nope.css"]
)
def test_unknown_pages_are_404(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert one(response.data, id="error-message")


# --- codename generation ---------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "es"])
def test_generate_shows_a_codename_in_the_language(client: FlaskClient, lang: str) -> None:
    response = client.get(f"/{lang}/generate")
    assert response.status_code == 200
    codename = one(response.data, id="codename").text.strip().split(" ")
    assert len(codename) == words.CODENAME_WORDS
    assert set(codename) <= set(words.wordlist(lang))
    assert one(response.data, "form", id="another-form")["action"] == f"/{lang}/generate"
    assert one(response.data, "a", id="continue")["href"] == f"/{lang}/submit"


def test_another_codename_replaces_the_first(client: FlaskClient) -> None:
    first = new_source(client)
    client.post("/en/generate", data={"csrf_token": csrf_token(client, "/en/generate")})
    second = new_source(client)
    assert first != second
    submit(client, "hello")
    assert login(client, second).status_code == 303
    assert login(client, first).headers["Location"] == "/en/login"
    assert one(client.get("/en/login").data, cls="flash-error")


def test_generating_stores_nothing(app: Flask, client: FlaskClient, config: Config) -> None:
    new_source(client)
    new_source(client, "es")
    assert nothing_stored(app, config)


# --- submission ------------------------------------------------------------------------------


def test_submit_needs_a_session(client: FlaskClient) -> None:
    response = client.get("/en/submit")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_submit_form_contract(client: FlaskClient) -> None:
    new_source(client)
    page = client.get("/en/submit").data
    form = one(page, "form", id="submit-form")
    assert form["method"] == "post"
    assert form["enctype"] == "multipart/form-data"
    assert form["action"] == "/en/submit"
    fields = [e for e in find(page) if e.tag in {"input", "textarea", "button", "select"}]
    assert fields[0].attrs["name"] == "csrf_token"  # before any file, for the streaming parser
    assert one(page, "textarea", name="message")
    assert "multiple" in one(page, "input", name="files", type="file").attrs
    honeypot = one(page, "input", name="website")
    assert (honeypot["tabindex"], honeypot["autocomplete"]) == ("-1", "off")
    assert one(page, "button", id="send")
    assert "2 GiB" in page.decode()  # the form states the limit


def test_submit_message(
    app: Flask, client: FlaskClient, keypair: X25519Identity, config: Config
) -> None:
    new_source(client)
    assert submit(client, "The mayor\r\nhides the money.").status_code == 303
    received = one(client.get("/en/received").data, id="received").text
    assert "Your message (26 bytes)" in received
    assert contents(app, keypair) == [("message", "message.txt", b"The mayor\nhides the money.")]
    source = store_of(app).list_sources()[0]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", source.created_day)


def test_submit_files_and_message(app: Flask, client: FlaskClient, keypair: X25519Identity):
    new_source(client)
    files = [(b"a" * 1536, "ledger.csv"), (b"\x00\xff" * 1024 * 1024, "photo.jpg")]
    assert submit(client, "see files", files).status_code == 303
    received = one(client.get("/en/received").data, id="received").text
    assert "2 files (2 MiB in total)" in received
    assert sorted(contents(app, keypair)) == sorted(
        [
            ("message", "message.txt", b"see files"),
            ("file", "ledger.csv", files[0][0]),
            ("file", "photo.jpg", files[1][0]),
        ]
    )


def test_files_only_and_then_more(app: Flask, client: FlaskClient, keypair: X25519Identity):
    new_source(client)
    assert submit(client, "", [(b"abc", "a.txt")]).status_code == 303
    assert "1 file (3 bytes)" in client.get("/en/received").text
    assert submit(client, "second").status_code == 303
    assert len(store_of(app).list_sources()) == 1
    assert [kind for kind, _, _ in contents(app, keypair)] == ["file", "message"]


def test_spanish_confirmation(client: FlaskClient) -> None:
    new_source(client, "es")
    submit(client, "hola", [(b"x" * 1536, "a.txt")], lang="es")
    received = one(client.get("/es/received").data, id="received").text
    assert "Su mensaje (4 bytes)" in received
    assert "1 archivo (1,5 KiB)" in received


BAD_SUBMISSIONS = [
    # (description, message, files, status, flash)
    ("empty", "", [], 200, "Write a message or choose at least one file."),
    ("blank", "  \r\n\t ", [], 200, "Write a message or choose at least one file."),
    ("too long", "x" * 100_001, [], 200, "Your message is too long"),
    ("too long with a file", "é" * 100_001, [(b"data", "a.txt")], 200, "too long"),
]


@pytest.mark.parametrize(("message", "files", "status", "flash"), [c[1:] for c in BAD_SUBMISSIONS])
def test_bad_submissions_flash_and_store_nothing(
    app: Flask,
    client: FlaskClient,
    config: Config,
    message: str,
    files: list[tuple[bytes, str]],
    status: int,
    flash: str,
) -> None:
    new_source(client)
    response = submit(client, message, files)
    assert response.status_code == status
    assert flash in one(response.data, cls="flash-error").text
    assert one(response.data, "form", id="submit-form")
    assert nothing_stored(app, config)


def test_longest_message_is_accepted(app: Flask, client: FlaskClient, keypair: X25519Identity):
    new_source(client)
    text = "ñ" * 99_999 + "\n"
    assert submit(client, text.replace("\n", "\r\n")).status_code == 303
    assert contents(app, keypair)[0][2] == text.encode()


def test_honeypot_looks_like_success_and_stores_nothing(
    app: Flask, client: FlaskClient, config: Config
) -> None:
    new_source(client)
    response = submit(client, "buy pills", [(b"spam", "x.txt")], extra={"website": "http://x"})
    assert response.status_code == 303
    assert "1 file (4 bytes)" in one(client.get("/en/received").data, id="received").text
    assert nothing_stored(app, config)


def _raw_post(client: FlaskClient, body: bytes, content_type: str) -> int:
    return client.post("/en/submit", data=body, content_type=content_type).status_code


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 400),
        ("wrong token", 400),
        ("token after the file", 400),
        ("truncated body", 400),
        ("no boundary", 400),
        ("urlencoded without token", 400),
    ],
)
def test_malformed_or_forged_posts_store_nothing(
    app: Flask, client: FlaskClient, config: Config, case: str, status: int
) -> None:
    new_source(client)
    token = csrf_token(client, "/en/submit")
    boundary = "XyZ"
    file_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nsecret contents\r\n"
    )
    token_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
    )
    bodies = {
        "no token": (
            file_part + f"--{boundary}--\r\n",
            f"multipart/form-data; boundary={boundary}",
        ),
        "wrong token": (
            token_part.replace(token, token[:-2] + "xx") + file_part + f"--{boundary}--\r\n",
            f"multipart/form-data; boundary={boundary}",
        ),
        "token after the file": (
            file_part + token_part + f"--{boundary}--\r\n",
            f"multipart/form-data; boundary={boundary}",
        ),
        "truncated body": (
            token_part + file_part[:-10],
            f"multipart/form-data; boundary={boundary}",
        ),
        "no boundary": (token_part + file_part, "multipart/form-data"),
        "urlencoded without token": ("message=hello", "application/x-www-form-urlencoded"),
    }
    body, content_type = bodies[case]
    response = client.post("/en/submit", data=body.encode(), content_type=content_type)
    assert response.status_code == status
    assert one(response.data, id="error-message")
    assert nothing_stored(app, config)


def test_oversized_upload_is_413_and_stores_nothing(config: Config) -> None:
    app = make_app(config, max_submission_bytes=64 * 1024)
    with app.test_client() as client:
        new_source(client)
        response = submit(client, "big", [(b"x" * 40 * 1024, "a"), (b"y" * 40 * 1024, "b")])
        assert response.status_code == 413
        assert "64 KiB" in one(response.data, cls="flash-error").text
        assert nothing_stored(app, config)
        # Far past the limit, refused from the Content-Length alone.
        response = submit(client, "big", [(b"z" * 4 * 1024 * 1024, "c")])
        assert response.status_code == 413
        assert nothing_stored(app, config)
        # Just under it is fine.
        assert submit(client, "", [(b"x" * 64 * 1024, "a")]).status_code == 303


def test_no_submission_below_the_free_space_reserve(config: Config) -> None:
    """A disk with less free space than the reserve takes no submission: a translated 503
    page with Retry-After (the disk, not the source, is at fault); other forms still work."""
    app = make_app(config, free_space_reserve=2**60)
    with app.test_client() as client:
        new_source(client, "es")
        response = submit(client, "hola", [(b"x" * 1000, "a.txt")], lang="es")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "3600"
        assert "no tiene espacio" in one(response.data, id="error-message").text
        assert nothing_stored(app, config)
        assert client.post("/es/logout", data={}).status_code != 503
    app = make_app(config, free_space_reserve=0)
    with app.test_client() as client:
        new_source(client)
        assert submit(client, "hello").status_code == 303


@pytest.mark.parametrize(
    "name",
    [
        "../../../etc/passwd",
        "..\\..\\windows\\system32\\evil.dll",
        "/absolute/path.txt",
        "bell\x07and\x1b[31mescape.txt",
        "tab\tand\x7fdelete.txt",
        ".hidden",
        "\u202ereversed.txt",
        "ü" * 300 + ".pdf",
    ],
)
def test_hostile_filenames_never_reach_the_disk(
    app: Flask, client: FlaskClient, config: Config, keypair: X25519Identity, name: str
) -> None:
    new_source(client)
    assert submit(client, "", [(b"payload", name)]).status_code == 303
    for path in files_under(config.data_dir):
        assert ALLOWED_DATA.fullmatch(str(path)), path
    [(kind, stored_name, data)] = contents(app, keypair)
    assert (kind, data) == ("file", b"payload")
    assert "/" not in stored_name  # a backslash is an ordinary character (container.safe_name)
    assert not stored_name.startswith(".")
    assert not any(ord(c) < 32 or c == "\u202e" for c in stored_name)


# --- returning sources -----------------------------------------------------------------------


def test_login_and_lookup(app: Flask, client: FlaskClient) -> None:
    codename = new_source(client)
    submit(client, "hello")
    client.post("/en/logout", data={"csrf_token": csrf_token(client, "/en/lookup")})
    page = client.get("/en/login").data
    assert one(page, "input", name="codename")
    assert one(page, "button", id="login")
    response = login(client, codename)
    assert response.status_code == 303
    assert response.headers["Location"] == "/en/lookup"
    page = client.get("/en/lookup").data
    assert one(page, id="no-replies")
    assert not find(page, "form", id="delete-all")
    assert one(page, "a", id="submit-more")["href"] == "/en/submit"
    assert one(page, "form", id="logout")["action"] == "/en/logout"


@pytest.mark.parametrize(
    "typed",
    [
        lambda c: c.upper(),
        lambda c: "  " + c.replace(" ", "   \t") + "\n",
        lambda c: c.replace("a", "á"),
    ],
)
def test_login_normalises_the_codename(client: FlaskClient, typed) -> None:  # type: ignore[no-untyped-def]
    codename = new_source(client)
    submit(client, "hello")
    assert login(client, typed(codename)).status_code == 303


WRONG_CODENAMES = [
    "",
    "wrong words entirely",
    "x" * 5000,
    "'; DROP TABLE sources; --",
    "\x00\x01",
]


@pytest.mark.parametrize("codename", [*WRONG_CODENAMES, "NEVER-SUBMITTED"])
def test_wrong_codename_one_message_same_work(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, codename: str
) -> None:
    if codename == "NEVER-SUBMITTED":
        codename = new_source(client)  # generated, never used: no such source
    calls: list[str] = []
    real = views.derive_source_keys

    def counting(normalised: str, pepper: bytes, cost):  # type: ignore[no-untyped-def]
        calls.append(normalised)
        return real(normalised, pepper, cost)

    monkeypatch.setattr(views, "derive_source_keys", counting)
    response = login(client, codename)
    assert response.headers["Location"] == "/en/login"
    page = client.get("/en/login").data
    assert one(page, cls="flash-error").text.startswith("That codename did not work.")
    assert len(calls) == 1  # the derivation always runs
    assert client.get("/en/lookup").status_code == 303  # not signed in


def test_right_codename_runs_the_same_derivation(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    codename = new_source(client)
    submit(client, "hello")
    calls: list[str] = []
    real = views.derive_source_keys
    monkeypatch.setattr(views, "derive_source_keys", lambda *a: calls.append(a[0]) or real(*a))
    assert login(client, codename).status_code == 303
    assert len(calls) == 1


def test_replies_newest_first_and_deletion(app: Flask, client: FlaskClient) -> None:
    codename = new_source(client)
    submit(client, "hello")
    store = store_of(app)
    source_id = store.list_sources()[0].id
    first = store.add_reply_text(source_id, "First reply\nwith <b>markup</b>")
    second = store.add_reply_text(source_id, "Second reply")
    login(client, codename)
    page = client.get("/en/lookup").data
    replies = find(page, cls="reply")
    assert len(replies) == 2
    texts = [e.text for e in find(page, cls="reply-text")]
    assert texts == ["Second reply", "First reply\nwith <b>markup</b>"]  # escaped, newest first
    assert b"<b>markup" not in page
    links = find(page, "a", href=f"/en/replies/{second.id}/delete")
    assert len(links) == 1
    assert len(find(page, "a", cls="delete-reply")) == 2
    token = find(page, "input", name="csrf_token")[0]["value"]
    response = client.post(f"/en/replies/{second.id}/delete", data={"csrf_token": token})
    assert response.status_code == 303
    page = client.get("/en/lookup").data
    assert [e.text for e in find(page, cls="reply-text")] == ["First reply\nwith <b>markup</b>"]
    assert one(page, cls="flash-success")
    # Deleting it again says so.
    client.post(f"/en/replies/{second.id}/delete", data={"csrf_token": token})
    assert one(client.get("/en/lookup").data, cls="flash-error")
    assert [r.id for r in store.replies(source_id)] == [first.id]
    response = client.post("/en/replies/delete", data={"csrf_token": token})
    assert response.status_code == 303
    page = client.get("/en/lookup").data
    assert one(page, id="no-replies")
    assert store.replies(source_id) == []
    assert len(store.items_of(source_id)) == 3  # the newsroom keeps its copies


def test_a_source_cannot_delete_another_sources_reply(app: Flask, client: FlaskClient) -> None:
    new_source(client)
    submit(client, "victim")
    store = store_of(app)
    victim = store.list_sources()[0].id
    reply = store.add_reply_text(victim, "for the victim only")
    client.post("/en/generate", data={"csrf_token": csrf_token(client, "/en/generate")})
    submit(client, "attacker")
    token = csrf_token(client, "/en/lookup")
    client.post(f"/en/replies/{reply.id}/delete", data={"csrf_token": token})
    assert [r.id for r in store.replies(victim)] == [reply.id]


def test_unreadable_reply_is_shown_as_such(app: Flask, client: FlaskClient) -> None:
    codename = new_source(client)
    submit(client, "hello")
    store = store_of(app)
    reply = store.add_reply_text(store.list_sources()[0].id, "text")
    path = store.path_of(reply)
    path.write_bytes(path.read_bytes()[:100])
    login(client, codename)
    page = client.get("/en/lookup").data
    assert one(page, cls="unreadable")


@pytest.mark.parametrize("url", ["/en/lookup", "/en/submit", "/es/lookup", "/es/submit"])
def test_source_pages_need_a_session(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 303
    assert response.headers["Location"] == {"en": "/", "es": "/es/"}[url[1:3]]


@pytest.mark.parametrize("url", ["/en/replies/0123/delete", "/en/replies/delete"])
def test_deleting_without_a_source_goes_to_the_landing_page(client: FlaskClient, url: str):
    token = csrf_token(client, "/en/login")
    assert client.post(url, data={"csrf_token": token}).status_code == 303


def test_logout_advises_new_identity(client: FlaskClient) -> None:
    new_source(client)
    token = csrf_token(client, "/en/submit")
    response = client.post("/en/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert "tipbox=;" in response.headers["Set-Cookie"]  # cookie deleted
    page = client.get(response.headers["Location"]).data
    assert "New Identity" in one(page, id="new-identity-advice").text
    assert client.get("/en/submit").status_code == 303


def test_logout_needs_post(client: FlaskClient) -> None:
    response = client.get("/en/logout")
    assert response.status_code == 405
    assert response.headers["Allow"]


def test_rate_limits_are_per_session_and_global(config: Config) -> None:
    app = make_app(config, rate_limit_session="3 per minute", rate_limit_global="5 per minute")
    first, second = app.test_client(), app.test_client()

    def derive(client: FlaskClient) -> TestResponse:
        """Ask for a (new) codename: one derivation."""
        token = csrf_token(client, "/en/login")
        return client.post("/en/generate", data={"csrf_token": token})

    answers = [derive(first) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [303, 303, 303, 429]
    assert one(answers[-1].data, id="error-message")
    # Another session still has its own allowance, until the global limit.
    assert [derive(second).status_code for _ in range(3)] == [303, 303, 429]
    # Cheap pages are never limited.
    assert first.get("/").status_code == 200


def test_internal_error_is_the_generic_page(config: Config, caplog: pytest.LogCaptureFixture):
    app = make_app(config)

    def explode() -> str:
        raise RuntimeError("secret detail /path/to/thing")

    app.add_url_rule("/en/explode", "explode", explode)
    response = app.test_client().get("/en/explode")
    assert response.status_code == 500
    assert b"secret detail" not in response.data
    assert b"Traceback" not in response.data
    assert one(response.data, id="error-message")


def test_data_dir_layout_after_a_full_session(
    app: Flask, client: FlaskClient, config: Config, tmp_path: Path
) -> None:
    codename = new_source(client)
    submit(client, "m", [(b"f", "report.pdf")])
    login(client, codename)
    for path in files_under(config.data_dir):
        assert ALLOWED_DATA.fullmatch(str(path)), path
    secrets = config.secrets_dir
    assert secrets.stat().st_mode & 0o777 == 0o700
    for name in ("instance.key", "pepper.key"):
        assert (secrets / name).stat().st_mode & 0o777 == 0o600


# --- post-quantum reply keys --------------------------------------------------------------------


def _hybrid_newsroom(config: Config, tmp_path: Path) -> tuple[Flask, HybridIdentity]:
    """An app whose newsroom key is hybrid, as `tipbox keygen` makes it."""
    newsroom = HybridIdentity.generate()
    keys = tmp_path / "pq-keys"
    keys.mkdir()
    (keys / "newsroom.pub").write_text(f"{newsroom.recipient}\n")
    return make_app(config, keys_dir=keys), newsroom


def test_new_sources_get_a_post_quantum_reply_key(config: Config, tmp_path: Path) -> None:
    app, newsroom = _hybrid_newsroom(config, tmp_path)
    client = app.test_client()
    codename = new_source(client)
    submit(client, "hello")
    store = store_of(app)
    [source] = store.list_sources()
    keys = derive_source_keys(words.normalise_codename(codename), state_of(app).pepper, TEST_KDF)
    assert source.reply_recipient == str(keys.reply_identity.recipient)
    assert source.reply_recipient.startswith("age1pq1")
    reply = store.add_reply_text(source.id, "thanks")
    assert reply.post_quantum
    assert store.reply_text(reply, [newsroom]) == "thanks"  # the newsroom reads its own reply
    login(client, codename)
    assert [e.text for e in find(client.get("/en/lookup").data, cls="reply-text")] == ["thanks"]


def test_an_old_source_gets_a_hybrid_key_at_its_next_login(config: Config, tmp_path: Path) -> None:
    """A source from before hybrid keys: its X25519 reply key stays until it logs in; a reply
    written before is classical (and still opens, for the source and for the newsroom)."""
    app, newsroom = _hybrid_newsroom(config, tmp_path)
    codename = words.generate_codename("en")
    keys = derive_source_keys(words.normalise_codename(codename), state_of(app).pepper, TEST_KDF)
    store = store_of(app)
    classic = str(keys.classic_reply_identity.recipient)
    store.commit(keys.source_id, classic, [store.add_message("from the old release")])
    before = store.add_reply_text(keys.source_id, "written to the old key")
    assert not before.post_quantum
    assert classic in before.recipients
    assert store.reply_text(before, [newsroom]) == "written to the old key"
    client = app.test_client()
    assert login(client, codename).status_code == 303
    [source] = store.list_sources()
    assert source.reply_recipient == str(keys.reply_identity.recipient)
    after = store.add_reply_text(keys.source_id, "written to the hybrid key")
    assert after.post_quantum
    texts = [e.text for e in find(client.get("/en/lookup").data, cls="reply-text")]
    assert texts == ["written to the hybrid key", "written to the old key"]
