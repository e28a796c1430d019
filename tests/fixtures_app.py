"""Fixtures and helpers for the source web app (pull them into conftest.py).

- ``translations_dir`` (session): the package's ``.po`` catalogues compiled afresh into a temp
  folder, so tests never depend on a stale or missing ``make translations``.
- ``config``: tmp data/keys/secrets folders, development mode, the cheapest Argon2id
  (1 pass, 8 MiB), generous rate limits; the newsroom key is conftest's ``keypair``.
- ``app`` and ``client``: the real app (real store, real crypto) and its test client.

Helpers: :func:`parse` (a tiny HTML element finder), :func:`csrf_token`, :func:`new_source`
(generate a codename, return it), :func:`submit` (post the form like a browser would).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import TestResponse, encode_multipart

from app.config import TRANSLATIONS, Config
from app.crypto import KdfCost, X25519Identity
from app.source import create_app
from app.source.state import State, get_state

TEST_KDF = KdfCost(opslimit=1, memlimit=8 * 1024 * 1024)
VOID = {"meta", "link", "img", "input", "br", "hr", "source", "area", "base", "col", "wbr"}


@pytest.fixture(scope="session")
def translations_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every catalogue of the package, compiled into a fresh folder."""
    target = tmp_path_factory.mktemp("translations")
    for po in sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po")):
        out = target / po.relative_to(TRANSLATIONS)
        out.parent.mkdir(parents=True)
        shutil.copyfile(po, out)
        with po.open("rb") as source:
            catalogue = read_po(source)
        with out.with_suffix(".mo").open("wb") as compiled:
            write_mo(compiled, catalogue)
    return target


@pytest.fixture
def config(tmp_path: Path, keypair: X25519Identity, translations_dir: Path) -> Config:
    """A development config over temporary folders, with cheap key derivation."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "newsroom.pub").write_text(f"# test newsroom\n{keypair.recipient}\n")
    data = tmp_path / "data"
    return Config(
        data_dir=data,
        keys_dir=keys,
        secrets_dir=data / "secrets",
        development=True,
        newsroom_name="Test Newsroom",
        kdf_cost=TEST_KDF,
        rate_limit_session="1000 per minute",
        rate_limit_global="10000 per minute",
        translations_dir=translations_dir,
    )


@pytest.fixture
def app(config: Config) -> Flask:
    """The real source app."""
    return create_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for :func:`app` (Host: localhost, allowed in development).

    Not used as a context manager: each request's teardown (which discards uncommitted
    uploads) must run when the request ends, as it does in production.
    """
    return app.test_client()


def state_of(app: Flask) -> State:
    """The app's runtime state (store, pepper, config)."""
    with app.app_context():
        return get_state()


def make_app(config: Config, **changes: Any) -> Flask:
    """Another app from ``config`` with some fields changed."""
    return create_app(replace(config, **changes))


@dataclass
class Element:
    """One HTML element: its tag, attributes and text content (children included)."""

    tag: str
    attrs: dict[str, str]
    text: str = ""
    classes: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> str:
        return self.attrs[name]


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        element = Element(tag, values, classes=tuple(values.get("class", "").split()))
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data


def parse(html: str | bytes) -> list[Element]:
    """Every element of a page, in document order."""
    collector = _Collector()
    collector.feed(html.decode() if isinstance(html, bytes) else html)
    collector.close()
    return collector.elements


def find(
    html: str | bytes,
    tag: str | None = None,
    *,
    id: str | None = None,  # noqa: A002 - mirrors the HTML attribute
    cls: str | None = None,
    **attrs: str,
) -> list[Element]:
    """Elements matching a tag, an id, a class and attribute values (``None``: any)."""
    found = []
    for element in parse(html):
        if tag is not None and element.tag != tag:
            continue
        if id is not None and element.attrs.get("id") != id:
            continue
        if cls is not None and cls not in element.classes:
            continue
        if any(element.attrs.get(name) != value for name, value in attrs.items()):
            continue
        found.append(element)
    return found


def one(html: str | bytes, tag: str | None = None, **kwargs: str) -> Element:
    """The single element matching (fails the test otherwise)."""
    found = find(html, tag, **kwargs)
    assert len(found) == 1, f"expected one {tag or ''}{kwargs}, found {len(found)}"
    return found[0]


def csrf_token(client: FlaskClient, url: str) -> str:
    """The CSRF token of the first form on the page at ``url``."""
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return find(response.data, "input", name="csrf_token")[0]["value"]


def new_source(client: FlaskClient, lang: str = "en") -> str:
    """Generate a codename as a first-time source would; return it."""
    response = client.get(f"/{lang}/generate")
    assert response.status_code == 200, response.status_code
    return one(response.data, id="codename").text.strip()


def submit(
    client: FlaskClient,
    message: str = "",
    files: Sequence[tuple[bytes, str]] = (),
    *,
    lang: str = "en",
    token: str | None = None,
    extra: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> TestResponse:
    """Post the submission form: CSRF token first, then the fields, then the files."""
    if token is None:
        token = csrf_token(client, f"/{lang}/submit")
    fields = MultiDict({"csrf_token": token, "message": message, "website": ""})
    for name, value in (extra or {}).items():
        fields[name] = value  # replaces (MultiDict.update would add a second value)
    for content, name in files:
        fields.add("files", FileStorage(io.BytesIO(content), name, content_type="text/plain"))
    # Encoded here, in memory: the test client's own encoder spools big bodies to a temporary
    # file that it never closes when the app does not read the whole body (a 413).
    boundary, body = encode_multipart(fields)
    return client.post(
        f"/{lang}/submit",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=dict(headers or {}),
    )


def login(client: FlaskClient, codename: str, lang: str = "en") -> TestResponse:
    """Post the login form."""
    token = csrf_token(client, f"/{lang}/login")
    return client.post(f"/{lang}/login", data={"csrf_token": token, "codename": codename})


def files_under(root: Path) -> list[Path]:
    """Every path under ``root`` (files and folders), relative to it."""
    return sorted(path.relative_to(root) for path in root.rglob("*"))
