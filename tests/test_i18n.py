"""Languages: complete catalogues, the URL as the only selector, translated pages and errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

from app import words
from app.config import TRANSLATIONS, Config
from app.source.language import format_day, human_size, language_name
from tests.fixtures_app import (
    csrf_token,
    find,
    make_app,
    new_source,
    one,
    state_of,
    submit,
)

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = sorted(p.parent.parent.name for p in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Every translatable string in the templates and the Python code, as `make` extracts it."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "--quiet", "extract"]
        + ["-F", "babel.cfg", "-o", str(pot), "."],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with pot.open("rb") as handle:
        return read_po(handle)


def catalogue(lang: str) -> Catalog:
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle)


def test_spanish_is_there() -> None:
    assert "es" in LANGUAGES


def test_extraction_finds_templates_and_python(extracted: Catalog) -> None:
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in extracted if m.id}
    assert "This is my first time" in ids  # a template
    assert "Write a message or choose at least one file." in ids  # Python
    assert "%(num)d reply was deleted." in ids  # a plural
    assert len(ids) > 60


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_string_is_translated(extracted: Catalog, lang: str) -> None:
    translations = catalogue(lang)
    missing = []
    for message in extracted:
        if not message.id:
            continue
        found = translations.get(message.id)
        strings = (
            []
            if found is None
            else list(found.string)
            if isinstance(found.string, tuple | list)
            else [found.string]
        )
        if found is None or found.fuzzy or not all(s and s.strip() for s in strings):
            missing.append(message.id)
    assert not missing, f"untranslated in {lang} (run 'make translations' and translate): {missing}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_their_placeholders(lang: str) -> None:
    problems = [(m.id, errors) for m, errors in catalogue(lang).check() if errors]
    assert not problems


@pytest.mark.parametrize(
    ("url", "lang", "text"),
    [
        ("/", "en", "This is my first time"),
        ("/en/", "en", "This is my first time"),
        ("/es/", "es", "Es la primera vez"),
        ("/es/login", "es", "Su nombre en clave"),
        ("/es/nope", "es", "No encontramos esa página."),
        ("/en/nope", "en", "We could not find that page."),
        ("/fr/", "en", "We could not find that page."),
        ("/nope", "en", "We could not find that page."),
    ],
)
def test_the_url_chooses_the_language(client: FlaskClient, url: str, lang: str, text: str) -> None:
    response = client.get(url)
    assert one(response.data, "html")["lang"] == lang
    assert text in response.text


@pytest.mark.parametrize("accept", ["es", "es-ES,es;q=0.9", "fr, es"])
def test_headers_never_choose_the_language(client: FlaskClient, accept: str) -> None:
    response = client.get("/", headers={"Accept-Language": accept})
    assert response.status_code == 200  # served directly, no redirect
    assert one(response.data, "html")["lang"] == "en"


@pytest.mark.parametrize(
    ("url", "links"),
    [
        ("/", {"en": "/", "es": "/es/"}),
        ("/es/", {"en": "/", "es": "/es/"}),
        ("/es/login", {"en": "/en/login", "es": "/es/login"}),
        ("/en/nope", {"en": "/", "es": "/es/"}),
    ],
)
def test_language_links(client: FlaskClient, url: str, links: dict[str, str]) -> None:
    page = client.get(url).data
    for lang, href in links.items():
        link = one(page, "a", hreflang=lang)
        assert link["href"] == href
        assert link["lang"] == lang
    assert one(page, "a", hreflang="es").text == "Español"


def test_language_links_after_a_post_go_to_the_landing_page(client: FlaskClient) -> None:
    new_source(client, "es")
    page = submit(client, "", lang="es").data  # a refused POST renders the form again
    assert one(page, "a", hreflang="en")["href"] == "/"
    assert one(page, "a", hreflang="es")["href"] == "/es/"


def test_spanish_flow_uses_the_spanish_word_list(app: Flask, client: FlaskClient) -> None:
    codename = new_source(client, "es")
    assert set(codename.split()) <= set(words.wordlist("es"))
    submit(client, "hola", [(b"x" * 3 * 1024 * 1024, "a.pdf")], lang="es")
    response = client.get("/es/received")
    assert "1 archivo (3 MiB)" in one(response.data, id="received").text
    assert "Gracias" in response.text


def test_spanish_plurals_and_flashes(app: Flask, client: FlaskClient) -> None:
    codename = new_source(client, "es")
    submit(client, "hola", lang="es")
    store = state_of(app).store
    source_id = store.list_sources()[0].id
    store.add_reply_text(source_id, "uno")
    store.add_reply_text(source_id, "dos")
    token = csrf_token(client, "/es/login")
    client.post("/es/login", data={"csrf_token": token, "codename": codename})
    page = client.get("/es/lookup")
    assert len(find(page.data, cls="reply")) == 2
    token = csrf_token(client, "/es/lookup")
    client.post("/es/replies/delete", data={"csrf_token": token})
    assert "Se borraron 2 respuestas." in client.get("/es/lookup").text


def test_spanish_error_pages(config: Config) -> None:
    client = make_app(config, max_submission_bytes=1024 * 1024).test_client()
    new_source(client, "es")
    response = submit(client, "", [(b"x" * 2 * 1024 * 1024, "a")], lang="es")
    assert response.status_code == 413
    assert "el límite es de 1 MiB en total" in response.text
    response = client.post("/es/login", data={"codename": "x"})
    assert response.status_code == 400
    assert "Vuelva atrás" in response.text
    response = client.get("/es/", headers={"Host": "example.com"})
    assert "Use Tor Browser, por favor" in response.text


@pytest.mark.parametrize(
    ("size", "en", "es"),
    [
        (0, "0 bytes", "0 bytes"),
        (1, "1 byte", "1 byte"),
        (1023, "1023 bytes", "1023 bytes"),
        (1024, "1 KiB", "1 KiB"),
        (1536, "1.5 KiB", "1,5 KiB"),
        (64 * 1024, "64 KiB", "64 KiB"),
        (10 * 1024 * 1024 + 1, "10 MiB", "10 MiB"),
        (2 * 1024**3, "2 GiB", "2 GiB"),
        (1000 * 1024**3, "1,000 GiB", "1.000 GiB"),
        (1536 * 1024**3, "1.5 TiB", "1,5 TiB"),
    ],
)
def test_human_sizes(app: Flask, size: int, en: str, es: str) -> None:
    for lang, expected in (("en", en), ("es", es)):
        with app.test_request_context(f"/{lang}/"):
            assert human_size(size) == expected


def test_days_are_written_out(app: Flask) -> None:
    with app.test_request_context("/es/"):
        assert format_day("2025-03-09") == "9 de marzo de 2025"
    with app.test_request_context("/"):
        assert format_day("2025-03-09") == "March 9, 2025"


def test_language_names() -> None:
    assert (language_name("en"), language_name("es")) == ("English", "Español")


def test_adding_a_language_is_adding_a_catalogue(
    config: Config, translations_dir: Path, tmp_path: Path
) -> None:
    """What `make language LANG=xx` and `make translations` produce is all the app needs."""
    folder = tmp_path / "translations"
    shutil.copytree(translations_dir, folder)
    shutil.copytree(folder / "es", folder / "fr")
    client = make_app(config, translations_dir=folder).test_client()
    page = client.get("/fr/").data
    assert one(page, "html")["lang"] == "fr"
    assert one(page, "a", hreflang="fr")["href"] == "/fr/"
    assert one(client.get("/").data, "a", hreflang="fr").text == "Français"
    # No French word list: the codename falls back to English words.
    assert set(new_source(client, "fr").split()) <= set(words.wordlist("en"))
