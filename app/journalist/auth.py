"""Logging in and out, the journalist's own account, and who may see what.

:func:`authenticate` runs before anything else reads the request (before CSRF, before a body is
parsed), so an anonymous or unauthorised request never costs a byte of disk: pages need a live
session, ``admin.*`` pages an admin, ``api.*`` a valid bearer token. Every login failure shows
the same sentence: unknown user, wrong password, wrong or reused code, throttled account.
"""

from __future__ import annotations

from typing import cast

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from app.journalist.accounts import AccountError, Journalist, check_password, suggest_passphrase
from app.journalist.confirm import ask, confirmed
from app.journalist.pages import View, gettext
from app.journalist.state import get_state
from app.server.session import EncryptedSessionInterface, SourceSession

bp = Blueprint("auth", __name__)

TOKEN_KEY = "t"  # noqa: S105 - a session key name
PUBLIC = frozenset({"auth.login", "static"})
MAX_FIELD = 1024


def current() -> Journalist:
    """The signed-in journalist (only called where :func:`authenticate` ensured one)."""
    journalist: Journalist = g.journalist
    return journalist


def _bearer() -> Journalist | None:
    kind, _, token = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        return None
    return get_state().tokens.resolve(token.strip())


def authenticate() -> Response | tuple[Response, int, dict[str, str]] | None:
    """Find who is asking, and refuse what they may not do (first ``before_request``)."""
    endpoint = request.endpoint or ""
    if endpoint.startswith("api."):
        g.journalist = _bearer()
        if g.journalist is None:
            body = jsonify(error=gettext("A valid API token is needed."))
            return body, 401, {"WWW-Authenticate": "Bearer"}
        return None
    token = session.get(TOKEN_KEY)
    g.journalist = get_state().sessions.resume(token) if isinstance(token, str) else None
    if g.journalist is None and isinstance(token, str):
        session.clear()
        flash(gettext("Your session ended. Please log in again."), "error")
    if endpoint in PUBLIC or not endpoint:
        return None
    if g.journalist is None:
        return redirect(url_for("auth.login"), 303)
    if endpoint.startswith("admin.") and not g.journalist.is_admin:
        abort(403)
    return None


def _field(name: str) -> str:
    return request.form.get(name, "")[:MAX_FIELD]


@bp.route("/login", methods=["GET", "POST"])
def login() -> View:
    """Username, password and a TOTP code; one sentence for every failure."""
    if request.method == "GET":
        return render_template("login.html")
    state = get_state()
    journalist = state.accounts.login(_field("username"), _field("password"), _field("code"))
    if journalist is None:
        flash(
            gettext(
                "Login failed. Check your username, password and code, wait for a new code, "
                "and try again in a minute."
            ),
            "error",
        )
        return render_template("login.html"), 200
    interface = cast(EncryptedSessionInterface, current_app.session_interface)
    cast(SourceSession, session).restart(interface.now())  # a new session: no fixation
    session[TOKEN_KEY] = state.sessions.start(journalist)
    return redirect(url_for("sources.index"), 303)


@bp.post("/logout")
def logout() -> Response:
    """End the session here and on the server."""
    token = session.get(TOKEN_KEY)
    if isinstance(token, str):
        get_state().sessions.end(token)
    session.clear()
    flash(gettext("You are logged out."), "success")
    return redirect(url_for("auth.login"), 303)


@bp.get("/account")
def account() -> View:
    """Change the password; create and revoke API tokens."""
    tokens = get_state().tokens.of(current())
    return render_template("account.html", tokens=tokens, suggestion=suggest_passphrase())


@bp.post("/account/password")
def change_password() -> View:
    """A new password (the current one is asked again); every session ends."""
    state, me = get_state(), current()
    if not state.accounts.verify_password(me.id, _field("current")):
        flash(gettext("The current password is not right."), "error")
        return redirect(url_for("auth.account"), 303)
    try:
        state.accounts.set_password(me.username, check_password(_field("new")))
    except AccountError as exc:
        flash(exc.message, "error")
        return redirect(url_for("auth.account"), 303)
    session.clear()
    flash(gettext("Your password was changed. Log in with it."), "success")
    return redirect(url_for("auth.login"), 303)


@bp.post("/account/tokens")
def create_token() -> View:
    """A new API token, shown once."""
    try:
        token = get_state().tokens.create(current(), _field("name"))
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("auth.account"), 303)
    return render_template("token.html", token=token, name=_field("name"))


@bp.post("/account/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int) -> View:
    """Revoke one of the journalist's own tokens, once confirmed."""
    token = next((t for t in get_state().tokens.of(current()) if t.id == token_id), None)
    if token is not None and not confirmed():
        return ask(
            gettext("Revoke the token %(name)s?", name=token.name),
            gettext("Scripts that use it stop working at once. This cannot be undone."),
            gettext("Revoke the token"),
            url_for("auth.account"),
        )
    if token is not None and get_state().tokens.revoke(current(), token_id):
        flash(gettext("The token was revoked."), "success")
    else:
        flash(gettext("That token was already revoked."), "error")
    return redirect(url_for("auth.account"), 303)
