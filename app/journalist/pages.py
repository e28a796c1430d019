"""What every page shares: translated text, page values, the one error page (HTML or JSON).

The journalist app is English only for now, but every sentence goes through Flask-Babel's
``gettext`` (``_()`` in templates) as in the source app, so adding a language is a catalogue.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, jsonify, render_template, request
from flask_babel import Babel  # type: ignore[import-untyped]
from flask_babel import gettext as _gettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response

View = str | Response | tuple[str, int] | tuple[Response, int]


def gettext(text: str, **variables: Any) -> str:
    """``text`` in the current language, with ``%(name)s`` variables filled in."""
    return str(_gettext(text, **variables))


def error_message(error: HTTPException) -> str:
    """The sentence a journalist (or a script) reads for ``error``."""
    if isinstance(error, CSRFError):
        return gettext("This page was open too long, or the form was sent twice. Reload it.")
    messages = {
        400: gettext("The request was not valid."),
        401: gettext("A valid API token is needed."),
        403: gettext("You are not allowed to do this."),
        404: gettext("There is nothing here."),
        405: gettext("That action is not possible here."),
        413: gettext("What you sent is too large."),
        429: gettext("Too many requests. Wait a minute, then try again."),
    }
    return messages.get(error.code or 500, gettext("Something went wrong on our side."))


def is_api() -> bool:
    """Whether the current request is for the JSON API."""
    return request.path.startswith("/api/")


def error_page(error: HTTPException) -> tuple[Any, int, dict[str, str]]:
    """The generic error page (or JSON body, for the API) for ``error``, with no detail."""
    code = error.code or 500
    extra = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        extra["Allow"] = ", ".join(error.valid_methods)
    if is_api():
        if code == 401:
            extra["WWW-Authenticate"] = "Bearer"
        return jsonify(error=error_message(error)), code, extra
    return render_template("error.html", message=error_message(error)), code, extra


def _page_values() -> dict[str, Any]:
    from app.journalist.state import get_state

    return {
        "newsroom": get_state().config.base.newsroom_name,
        "me": g.get("journalist"),
    }


def init_app(app: Flask) -> None:
    """Flask-Babel (English, no negotiation), the page values and the error handler."""
    app.config["BABEL_DEFAULT_LOCALE"] = "en"
    Babel(app, locale_selector=lambda: "en")
    app.context_processor(_page_values)
    app.register_error_handler(HTTPException, error_page)
