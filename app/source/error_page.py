"""The one generic error page, for every HTTP error (400, 403, 404, 405, 413, 429, 500, 503,
CSRF failures, a disk too full for submissions): a translated sentence per status, in the
language of the URL, never a detail and never a traceback.
"""

from __future__ import annotations

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response

from app.source import views
from app.source.language import gettext, human_size
from app.source.state import get_state
from app.source.upload import RETRY_AFTER, NoRoomError


def error_page(error: HTTPException) -> tuple[str, int, dict[str, str]] | Response:
    """Render the generic error page for ``error`` with its status code (a refused submission
    gets the source's message back instead)."""
    if request.endpoint == "source.submit" and request.method == "POST":
        refused = views.refused_submission(error)
        if refused is not None:
            return refused
    code = error.code or 500
    extra = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        extra["Allow"] = ", ".join(error.valid_methods)
    if isinstance(error, NoRoomError):
        extra["Retry-After"] = str(RETRY_AFTER)
    return render_template("error.html", message=error_message(error)), code, extra


def error_message(error: HTTPException) -> str:
    """The sentence the source reads for ``error``."""
    if isinstance(error, NoRoomError):
        return gettext(
            "The tip box has no room for new submissions right now. Nothing was saved. "
            "Please try again in a few hours."
        )
    if isinstance(error, CSRFError):
        return gettext(
            "This page was open too long, or the form was sent twice. "
            "Go back, reload the page, and try again."
        )
    messages = {
        400: gettext("Something was wrong with what your browser sent. Please try again."),
        403: gettext("You are not allowed to see this page."),
        404: gettext("We could not find that page."),
        405: gettext("That action is not possible on this page."),
        413: gettext(
            "What you sent is too large: the limit is %(limit)s in total. Nothing was saved. "
            "Send fewer or smaller files at a time.",
            limit=human_size(get_state().config.max_submission_bytes),
        ),
        429: gettext("Too many attempts. Please wait a few minutes, then try again."),
        503: gettext("The tip box is not available right now. Please try again later."),
    }
    return messages.get(
        error.code or 500,
        gettext("Something went wrong on our side. Please try again later."),
    )
