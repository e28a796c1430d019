"""A submission that cannot be kept gives the source back what it typed.

The form puts the message before the files, so the streaming parser has read it before the
first file byte (:mod:`.upload` keeps the fields it has read on ``g``, even when it refuses
the rest). Too large, or a message that is not valid: the form comes back with the message in it
and a reason, and the session (and so a new codename) stays good for the retry. Session lost or
expired: the message comes back in a text box to copy, with the two ways forward; a new codename
that was never used is gone with the session, and the page says so. Files are never kept: the
source chooses them again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from flask import flash, g, render_template, request
from flask_wtf.csrf import validate_csrf
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from wtforms import ValidationError

from app.source.forms import SubmitForm
from app.source.language import gettext
from app.source.upload import CSRF_FIELD, FIELDS

# Sec-Fetch-Site values of a post this site's own page sent ("none": typed or bookmarked).
SAME_SITE = frozenset({"same-origin", "none"})


def typed_fields() -> Mapping[str, str]:
    """The form's fields as far as they were read, whether or not the body was accepted."""
    if "form" not in request.__dict__ and FIELDS not in g:
        # Not read yet (an expired session is caught before CSRF reads the body): read it
        # now; with no valid token the parser stops at the first file, writing nothing.
        with contextlib.suppress(HTTPException, ValueError):
            _ = request.form
    if "form" in request.__dict__:  # parsed whole (Werkzeug caches it there)
        return request.form
    return dict(g.get(FIELDS, []))


def token_is_valid() -> bool:
    """Whether the fields read so far carry this session's CSRF token."""
    try:
        validate_csrf(typed_fields().get(CSRF_FIELD))
    except ValidationError:
        return False
    return True


def form_again(form: SubmitForm, reason: str, had_files: bool, status: int) -> Response:
    """The submission form again, with the message as typed and why it was not sent."""
    if had_files:
        reason += " " + gettext("The files you chose were not sent: choose them again.")
    flash(reason, "error")
    page = render_template("submit.html", form=form)
    return Response(page, status, mimetype="text/html")


def session_lost() -> Response:
    """The message as typed, to copy, and how to go on: the session that would keep it ended.

    Without a session there is no token to prove the form was ours, so the message is given
    back only when the browser says the post came from this site (``Sec-Fetch-Site``, which
    Tor Browser and every current browser send): another site's form must not be able to put
    words of its choosing on our page.
    """
    from_here = request.headers.get("Sec-Fetch-Site", "same-origin") in SAME_SITE
    message = SubmitForm.read(typed_fields()).message if from_here else ""
    page = render_template("lost.html", message=message)
    return Response(page, 400, mimetype="text/html")
