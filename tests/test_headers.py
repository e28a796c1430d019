"""Every response carries the header table; pages load nothing from elsewhere; the host guard."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.config import Config
from app.server.headers import ASSET_ENDPOINTS, HEADERS, host_allowed
from tests.fixtures_app import (
    csrf_token,
    login,
    make_app,
    new_source,
    parse,
    state_of,
    submit,
)

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ARGS = {"lang": "es", "filename": "style.css", "item_id": "0" * 32}
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "poster", "srcset", "data", "background"}
MAX_PAGE_BYTES = 30 * 1024


def fetch(client: FlaskClient, url: str) -> TestResponse:
    """GET ``url`` and close the response (static files are streamed from open files)."""
    response = client.get(url)
    response.get_data()  # buffered: still readable once closed
    response.close()
    return response


def check_headers(response: TestResponse, asset: bool = False) -> None:
    for name, value in HEADERS.items():
        if name == "Cache-Control" and asset:
            assert "no-store" not in response.headers.get(name, "")
            continue
        assert response.headers.get(name) == value, (name, response.status_code)
    assert "Strict-Transport-Security" not in response.headers


def every_rule_request(app: Flask, client: FlaskClient) -> Iterator[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule and method of the app."""
    for rule in app.url_map.iter_rules():
        values = {arg: SAMPLE_ARGS[arg] for arg in rule.arguments}
        with app.test_request_context():
            url = app.url_for(rule.endpoint, **{**(rule.defaults or {}), **values})
        for method in sorted(rule.methods or ()):
            yield rule.endpoint, method, url


def test_every_route_and_method_carries_the_headers(app: Flask, client: FlaskClient) -> None:
    new_source(client)
    token = csrf_token(client, "/es/submit")
    seen = set()
    for endpoint, method, url in every_rule_request(app, client):
        data = {"csrf_token": token} if method == "POST" else None
        response = client.open(url, method=method, data=data)
        response.close()
        assert response.status_code < 500, (endpoint, method, url, response.status_code)
        check_headers(response, asset=endpoint in ASSET_ENDPOINTS and method in {"GET", "HEAD"})
        seen.add(endpoint)
    assert {"static", "source.logo", "source.submit", "source.logout"} <= seen


ERRORS: list[tuple[str, Callable[[FlaskClient], TestResponse], int]] = [
    ("404", lambda c: c.get("/nowhere"), 404),
    ("404 unknown language", lambda c: c.get("/fr/"), 404),
    ("404 static", lambda c: c.get("/static/missing.png"), 404),
    ("405", lambda c: c.get("/en/logout"), 405),
    ("400 csrf", lambda c: c.post("/en/login", data={"codename": "x"}), 400),
    ("413", lambda c: submit(c, "", [(b"x" * 70_000, "big")]), 413),
    ("421", lambda c: c.get("/", headers={"Host": "example.com"}), 421),
    ("403 tor2web", lambda c: c.get("/", headers={"X-Tor2web": "1"}), 403),
    ("403 tor2web static", lambda c: c.get("/logo.png", headers={"X-tor2web": ""}), 403),
]


@pytest.mark.parametrize(("case", "make", "status"), ERRORS, ids=[e[0] for e in ERRORS])
def test_error_responses_carry_the_headers(
    config: Config, case: str, make: Callable[[FlaskClient], TestResponse], status: int
) -> None:
    app = make_app(config, max_submission_bytes=64 * 1024)
    client = app.test_client()
    new_source(client)
    response = make(client)
    assert response.status_code == status
    check_headers(response)
    assert response.mimetype == "text/html"


def test_429_and_500_carry_the_headers(config: Config) -> None:
    app = make_app(config, rate_limit_session="1 per minute")

    def explode() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/en/explode", "explode", explode)
    client = app.test_client()
    client.get("/en/generate")  # a derivation: the session's one unit
    token = csrf_token(client, "/en/generate")
    response = client.post("/en/generate", data={"csrf_token": token})  # another: a second
    assert response.status_code == 429
    check_headers(response)
    response = client.get("/en/explode")
    assert response.status_code == 500
    check_headers(response)


def test_static_files_may_be_cached_pages_never(client: FlaskClient) -> None:
    for url in ("/static/style.css", "/static/banner.js", "/logo.png"):
        response = fetch(client, url)
        assert response.status_code == 200
        assert re.search(r"max-age=\d+", response.headers["Cache-Control"])
        assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert client.get("/").headers["Cache-Control"] == "no-store"


HOSTS = [
    # (host, development, allowed)
    ("abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion", False, True),
    ("abc.onion:80", False, True),
    ("ABC.ONION", False, True),
    ("abc.onion", True, True),
    ("localhost", False, False),
    ("127.0.0.1:8080", False, False),
    ("localhost:5000", True, True),
    ("127.0.0.1", True, True),
    ("[::1]:8080", True, True),
    ("example.com", True, False),
    ("example.com", False, False),
    ("abc.onion.example.com", False, False),
    ("onion", False, False),
    ("", False, False),
    ("abc.onion@evil.com", False, False),
    ("[bad", False, False),
]


@pytest.mark.parametrize(("host", "development", "allowed"), HOSTS)
def test_host_allowed(host: str, development: bool, allowed: bool) -> None:
    assert host_allowed(host, development) is allowed


@pytest.mark.parametrize(
    ("development", "host", "status"),
    [
        (False, "abc.onion", 200),
        (False, "localhost", 421),
        (False, "tips.example.com", 421),
        (True, "localhost", 200),
        (True, "tips.example.com", 421),
    ],
)
def test_host_guard_in_the_app(config: Config, development: bool, host: str, status: int) -> None:
    app = make_app(config, development=development)
    response = app.test_client().get("/es/", headers={"Host": host})
    assert response.status_code == status
    if status != 200:
        assert "Tor Browser" in response.text
        assert 'lang="es"' in response.text  # translated
        assert parse(response.data)  # a whole page, styled
        assert "/static/style.css" in response.text


def test_tor2web_gets_the_warning_even_on_an_onion(client: FlaskClient) -> None:
    response = client.get("/", headers={"Host": "abc.onion", "X-Tor2web": "encrypted"})
    assert response.status_code == 403
    assert "Tor Browser" in response.text


def test_no_client_address_or_user_agent_is_read() -> None:
    rooms = ("source", "journalist", "server")
    for path in [p for room in rooms for p in (REPO / "app" / room).glob("*.py")]:
        text = path.read_text()
        for forbidden in ("remote_addr", "X-Forwarded-For", "access_route", "user_agent"):
            assert forbidden not in text, (path, forbidden)
        assert "User-Agent" not in text, path


# --- what pages load -------------------------------------------------------------------------


def all_pages(app: Flask, client: FlaskClient) -> Iterator[tuple[str, TestResponse]]:
    """Every kind of page the app renders, in both languages."""
    for lang in ("en", "es"):
        yield "landing", client.get(f"/{lang}/")
        yield "login", client.get(f"/{lang}/login")
        login(client, "nope", lang)
        yield "login failed", client.get(f"/{lang}/login")
        yield "404", client.get(f"/{lang}/nope")
        yield "warning", client.get(f"/{lang}/", headers={"Host": "example.com"})
        codename = new_source(client, lang)
        yield "generate", client.get(f"/{lang}/generate")
        codename = new_source(client, lang)
        yield "submit", client.get(f"/{lang}/submit")
        yield "submit error", submit(client, "", lang=lang)
        submit(client, "hello", [(b"f", "f.txt")], lang=lang)
        yield "received", client.get(f"/{lang}/received")
        store = state_of(app).store
        source = next(s for s in store.list_sources() if s.last_active_day)
        store.add_reply_text(source.id, "A reply with a link https://example.com/x")
        login(client, codename, lang)
        yield "lookup", client.get(f"/{lang}/lookup")
        yield "confirm delete", client.get(f"/{lang}/replies/delete")
        token = csrf_token(client, f"/{lang}/lookup")
        client.post(f"/{lang}/logout", data={"csrf_token": token})
        yield "logout", client.get(f"/{lang}/logged-out")
        yield "session lost", submit(client, "lost", lang=lang, token=token)
        yield "csrf error", client.post(f"/{lang}/login", data={"codename": "x"})
    yield "root", client.get("/")


def test_pages_load_nothing_from_elsewhere(app: Flask, client: FlaskClient) -> None:
    count = 0
    for name, response in all_pages(app, client):
        assert response.mimetype == "text/html", name
        count += 1
        for element in parse(response.data):
            assert element.tag not in {"style", "iframe", "object", "embed", "base"}, name
            assert "style" not in element.attrs, (name, element)
            assert not any(attr.startswith("on") for attr in element.attrs), (name, element)
            if element.tag == "script":
                assert element.attrs.get("src") == "/static/banner.js", name
                assert not element.text.strip(), name
            for attr in URL_ATTRIBUTES & element.attrs.keys():
                url = urlsplit(element.attrs[attr])
                assert not url.scheme, (name, element)
                assert not url.netloc, (name, element)
                assert element.attrs[attr].startswith(("/", "#")), (name, element)  # "#": same page
    assert count == 29


def test_pages_are_small_and_need_few_requests(app: Flask, client: FlaskClient) -> None:
    for name, response in all_pages(app, client):
        assert len(response.data) <= MAX_PAGE_BYTES, name
        resources = set()
        for element in parse(response.data):
            if element.tag == "img" or (element.tag == "link" and "href" in element.attrs):
                resources.add(element.attrs.get("src") or element.attrs["href"])
        # The stylesheet and the logo (also the icon); banner.js loads only with JavaScript on.
        assert resources == {"/static/style.css", "/logo.png"}, name
    assert len(fetch(client, "/logo.png").data) < 4096
    css = fetch(client, "/static/style.css").text
    assert len(css) < 8192
    for external in ("url(", "@import", "@font-face"):
        assert external not in css


def test_banner_script_and_css(client: FlaskClient) -> None:
    script = fetch(client, "/static/banner.js")
    assert script.mimetype in {"text/javascript", "application/javascript"}
    assert len(script.data) < 512
    for network in (b"http", b"fetch", b"XMLHttpRequest", b"src"):
        assert network not in script.data
    css = fetch(client, "/static/style.css").text
    assert re.search(r"\.js-banner\s*\{\s*display:\s*none", css)
    assert re.search(r"\.js \.js-banner\s*\{[^}]*display:\s*block", css)
    assert re.search(r"\.hp\s*\{[^}]*left:\s*-10000px", css)
    assert "system-ui" in css
