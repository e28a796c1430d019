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

from app.journalist.accounts import AccountError, Journalist, provisioning_uri, suggest_passphrase
from app.journalist.auth import current
from app.journalist.confirm import ask, confirmed
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
def remove_user(user_id: int) -> View:
    """Delete an account (not one's own), once confirmed."""
    journalist = _user(user_id)
    if journalist.id == current().id:
        flash(gettext("You cannot delete your own account."), "error")
        return _to_users()
    if not confirmed():
        return ask(
            gettext("Delete the account of %(name)s?", name=journalist.username),
            gettext(
                "They can no longer log in, and their sessions and API tokens end."
                " This cannot be undone."
            ),
            gettext("Delete the account"),
            url_for("admin.users"),
        )
    get_state().accounts.remove(journalist.username)
    flash(gettext("%(name)s was deleted.", name=journalist.username), "success")
    return _to_users()


@bp.post("/users/<int:user_id>/reset-password")
def reset_password(user_id: int) -> View:
    """A new passphrase for someone (their sessions and API tokens end), once confirmed."""
    journalist, password = _user(user_id), suggest_passphrase()
    if not confirmed():
        return ask(
            gettext("Give %(name)s a new password?", name=journalist.username),
            gettext(
                "Their current password stops working, and their sessions and API tokens end."
                " The new one is shown to you once, to hand over in person."
            ),
            gettext("Make a new password"),
            url_for("admin.users"),
        )
    get_state().accounts.set_password(journalist.username, password)
    return render_template("enrol.html", user=journalist, secret=None, password=password)


@bp.post("/users/<int:user_id>/reset-totp")
def reset_totp(user_id: int) -> View:
    """A new TOTP secret for someone (sessions and tokens end), once confirmed: enrol again."""
    journalist = _user(user_id)
    if not confirmed():
        return ask(
            gettext("Give %(name)s a new TOTP secret?", name=journalist.username),
            gettext(
                "The codes of their authenticator app stop working, and their sessions and API"
                " tokens end, until they scan the new QR code, shown to you once."
            ),
            gettext("Make a new TOTP secret"),
            url_for("admin.users"),
        )
    journalist, secret = get_state().accounts.reset_totp(journalist.username)
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


@bp.post("/users/<int:user_id>/tokens/<int:token_id>/revoke")
def revoke_token(user_id: int, token_id: int) -> View:
    """Revoke one of a journalist's tokens, once confirmed."""
    journalist = _user(user_id)
    token = _token(journalist, token_id)
    if not confirmed():
        return ask(
            gettext(
                "Revoke the token %(token)s of %(name)s?",
                token=token.name,
                name=journalist.username,
            ),
            gettext("Scripts that use it stop working at once. This cannot be undone."),
            gettext("Revoke the token"),
            url_for("admin.tokens", user_id=journalist.id),
        )
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
