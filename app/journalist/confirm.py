"""The confirmation step of every destructive action in the journalist app, without JavaScript.

A destructive form posts once without ``confirm``: the view, having checked that the action is
possible, answers with :func:`ask`'s page instead of acting. That page says what will happen and
holds a form that posts the same fields again to the same URL with ``confirm=yes`` (and a fresh
CSRF token), next to a *Cancel* link. A second page rather than a checkbox in the first form, so
that one slip of the mouse on a row of buttons can never delete or reset anything.
"""

from __future__ import annotations

from flask import render_template, request

FIELD = "confirm"
# Never carried over: the confirmation page brings its own.
_OWN_FIELDS = frozenset({FIELD, "csrf_token"})


def confirmed() -> bool:
    """Whether this POST came from a confirmation page."""
    return request.form.get(FIELD) == "yes"


def ask(question: str, consequence: str, button: str, cancel: str) -> str:
    """The confirmation page for the current POST: ``button`` sends it again, confirmed."""
    carried = [
        (name, value)
        for name, values in request.form.lists()
        if name not in _OWN_FIELDS
        for value in values
    ]
    return render_template(
        "confirm.html",
        question=question,
        consequence=consequence,
        button=button,
        cancel=cancel,
        action=request.path,
        carried=carried,
    )
