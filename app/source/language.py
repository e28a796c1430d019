"""Languages: chosen by the URL alone, never by headers.

Tor Browser spoofs ``Accept-Language`` to ``en-US`` for every user, so negotiating would only
hide Spanish from Spanish speakers: the language is the first path segment (``/es/…``), English
is also served without a prefix (``/``), and plain links switch between them. A language is
available when ``translations/<lang>/LC_MESSAGES/messages.po`` exists; its compiled ``.mo`` must
be there too, or the app refuses to start (``make translations`` compiles them).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from babel import Locale
from flask import Flask, current_app, request, url_for
from flask_babel import Babel, format_date, format_decimal  # type: ignore[import-untyped]
from flask_babel import gettext as _gettext
from flask_babel import ngettext as _ngettext
from werkzeug.routing import AnyConverter, Map

from app.errors import ConfigError
from app.sizes import in_units

DEFAULT_LANGUAGE = "en"
CATALOGUE = Path("LC_MESSAGES") / "messages"
_EXTENSION = "tipbox.languages"


def gettext(text: str, **variables: Any) -> str:
    """``text`` in the current language, with ``%(name)s`` variables filled in."""
    return str(_gettext(text, **variables))


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """The singular or plural form for ``num`` in the current language (``%(num)d`` too)."""
    return str(_ngettext(singular, plural, num, **variables))


class LanguageConverter(AnyConverter):
    """Matches one of the app's languages in a URL (``<lang:lang>``); anything else is a 404."""

    languages: tuple[str, ...] = (DEFAULT_LANGUAGE,)

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, *self.languages)


def discover_languages(translations_dir: Path) -> tuple[str, ...]:
    """English, then every language with a catalogue in ``translations_dir``, sorted.

    :raises ConfigError: if a catalogue has not been compiled.
    """
    found = []
    for po in sorted(translations_dir.glob(f"*/{CATALOGUE}.po")):
        lang = po.parent.parent.name
        if not po.with_suffix(".mo").is_file():
            raise ConfigError(
                f"the {lang!r} translations are not compiled", hint="run 'make translations'"
            )
        found.append(lang)
    return (DEFAULT_LANGUAGE, *(lang for lang in found if lang != DEFAULT_LANGUAGE))


def languages() -> tuple[str, ...]:
    """The current app's languages."""
    result: tuple[str, ...] = current_app.extensions[_EXTENSION]
    return result


def current_language() -> str:
    """The language of the current URL (English for ``/`` and for unknown prefixes)."""
    first = request.path.split("/", 2)[1]
    return first if first in languages() else DEFAULT_LANGUAGE


def language_name(lang: str) -> str:
    """The language's name in itself ("English", "Español")."""
    name = Locale.parse(lang).get_display_name(lang) or lang
    return name[:1].upper() + name[1:]


def language_links() -> list[tuple[str, str, str]]:
    """(lang, name, URL) for each language: this page in it if it is a plain GET page."""
    rule = request.url_rule
    same_page = (
        request.method == "GET"
        and rule is not None
        and request.endpoint is not None
        and "lang" in rule.arguments
    )
    links = []
    for lang in languages():
        if same_page and request.endpoint is not None:
            url = url_for(request.endpoint, **{**(request.view_args or {}), "lang": lang})
        else:
            url = url_for("source.landing", lang=lang)
        links.append((lang, language_name(lang), url))
    return links


def human_size(size: int) -> str:
    """A byte count in the one unit system (:mod:`app.sizes`), in the current language
    ("1.5 MiB", "1,5 MiB")."""
    number, unit = in_units(size)
    if not unit:
        return ngettext("%(num)d byte", "%(num)d bytes", size)
    text = str(format_decimal(number, format="#,##0.#"))
    return gettext("%(number)s %(unit)s", number=text, unit=unit)


def format_day(day: str) -> str:
    """A stored day (``YYYY-MM-DD``) written out in the current language."""
    return str(format_date(date.fromisoformat(day), format="long"))


def init_app(app: Flask, translations_dir: Path) -> tuple[str, ...]:
    """Set up Flask-Babel with the URL as the only locale selector; return the languages."""
    found = discover_languages(translations_dir)
    app.extensions[_EXTENSION] = found
    app.url_map.converters["lang"] = type(
        "LanguageConverter", (LanguageConverter,), {"languages": found}
    )
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(translations_dir)
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LANGUAGE
    Babel(app, locale_selector=current_language)
    app.jinja_env.globals.update(
        format_day=format_day, human_size=human_size, language_links=language_links
    )
    return found
