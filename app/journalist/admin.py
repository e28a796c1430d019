"""Managing journalists in the web app (admins only; ``tipbox user`` does the same on the server).

An admin sees every journalist's API tokens (names and days, never the tokens) and can revoke
one; revoking cannot be undone, so the button leads to a page that asks first, and only that
page's form revokes.

Enrolment shows a new account's TOTP secret once: as text, and as a QR code served by
:func:`enrol_qr`, a same-origin PNG (``no-store``, like every page) drawn from the secret kept
in the admin's encrypted session until the next enrolment or logout, never from the database.
"""

from __future__ import annotations

import io

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from app.accounts import AccountError, Journalist, provisioning_uri, suggest_passphrase
from app.journalist.auth import current
from app.journalist.credentials import ApiToken
from app.journalist.pages import View, gettext
from app.journalist.state import get_state

bp = Blueprint("admin", __name__, url_prefix="/admin")

ENROL_KEY = "enrol"


def _user(user_id: int) -> Journalist:
    found = get_state().accounts.get(user_id)
    if found is None:
        abort(404)
    return found


def _to_users() -> Response:
    return redirect(url_for("admin.users"), 303)


def _enrol(journalist: Journalist, secret: str, password: str | None) -> str:
    session[ENROL_KEY] = {"username": journalist.username, "secret": secret}
    return render_template("enrol.html", user=journalist, secret=secret, password=password)


@bp.get("/users")
def users() -> View:
    """Every journalist, and the form to add one (with a suggested passphrase)."""
    everyone = get_state().accounts.all()
    return render_template("users.html", users=everyone, suggestion=suggest_passphrase())


@bp.post("/users")
def add_user() -> View:
    """Create an account and show its enrolment (password and TOTP) once."""
    password = request.form.get("password", "")
    try:
        journalist, secret = get_state().accounts.add(
            request.form.get("username", ""), password, request.form.get("admin") == "yes"
        )
    except AccountError as exc:
        flash(exc.message, "error")
        return _to_users()
    return _enrol(journalist, secret, password)


@bp.post("/users/<int:user_id>/delete")
def remove_user(user_id: int) -> Response:
    """Delete an account (not one's own)."""
    journalist = _user(user_id)
    if journalist.id == current().id:
        flash(gettext("You cannot delete your own account."), "error")
        return _to_users()
    get_state().accounts.remove(journalist.username)
    flash(gettext("%(name)s was deleted.", name=journalist.username), "success")
    return _to_users()


@bp.post("/users/<int:user_id>/reset-password")
def reset_password(user_id: int) -> View:
    """A new generated passphrase for someone else (their sessions and API tokens end)."""
    journalist, password = _user(user_id), suggest_passphrase()
    get_state().accounts.set_password(journalist.username, password)
    return render_template("enrol.html", user=journalist, secret=None, password=password)


@bp.post("/users/<int:user_id>/reset-totp")
def reset_totp(user_id: int) -> View:
    """A new TOTP secret for someone (their sessions and API tokens end): enrol it again."""
    journalist, secret = get_state().accounts.reset_totp(_user(user_id).username)
    return _enrol(journalist, secret, None)


def _token(journalist: Journalist, token_id: int) -> ApiToken:
    found = next((t for t in get_state().tokens.of(journalist) if t.id == token_id), None)
    if found is None:
        abort(404)
    return found


@bp.get("/users/<int:user_id>/tokens")
def tokens(user_id: int) -> View:
    """A journalist's API tokens, each with a way to revoke it."""
    journalist = _user(user_id)
    return render_template(
        "user_tokens.html", user=journalist, tokens=get_state().tokens.of(journalist)
    )


@bp.get("/users/<int:user_id>/tokens/<int:token_id>/revoke")
def confirm_revoke(user_id: int, token_id: int) -> View:
    """Ask before revoking a token: a script that uses it stops working."""
    journalist = _user(user_id)
    return render_template("revoke_token.html", user=journalist, token=_token(journalist, token_id))


@bp.post("/users/<int:user_id>/tokens/<int:token_id>/revoke")
def revoke_token(user_id: int, token_id: int) -> Response:
    """Revoke one of a journalist's tokens (confirmed on the page before)."""
    journalist = _user(user_id)
    if get_state().tokens.revoke(journalist, token_id):
        flash(gettext("The token was revoked."), "success")
    else:
        flash(gettext("That token was already revoked."), "error")
    return redirect(url_for("admin.tokens", user_id=journalist.id), 303)


@bp.get("/enrol.png")
def enrol_qr() -> Response:
    """The QR code of the last enrolment this admin made, as a PNG."""
    import qrcode  # type: ignore[import-untyped]
    from qrcode.image.pure import PyPNGImage  # type: ignore[import-untyped]

    pending = session.get(ENROL_KEY)
    if not isinstance(pending, dict):
        abort(404)
    issuer = get_state().config.base.newsroom_name
    uri = provisioning_uri(str(pending["secret"]), str(pending["username"]), issuer)
    image = qrcode.make(uri, image_factory=PyPNGImage, box_size=6, border=4)
    out = io.BytesIO()
    image.save(out)
    return Response(out.getvalue(), mimetype="image/png")
