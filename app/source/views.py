"""The source's pages: landing, codename, submission, replies, logout.

Every page lives under its language (``/es/submit``); English is also served at ``/``. The
session never holds a codename: generating one or logging in runs the one slow derivation and
keeps only the source id and the reply identity's secret. Nothing is stored before the first
submission, which creates the source in the store.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from app import limits, words
from app.crypto import SourceKeys, X25519Identity, derive_source_keys
from app.errors import TipboxError
from app.limits import SESSION_KEY as LIMIT_KEY
from app.session import EncryptedSessionInterface, SourceSession
from app.source.forms import LoginForm, SubmitForm
from app.source.language import current_language, gettext, ngettext
from app.source.state import get_state
from app.store import Item, PendingItem
from app.upload import UploadRequest

bp = Blueprint("source", __name__)

SOURCE_ID = "sid"
REPLY_KEY = "rk"
ASSET_MAX_AGE = 24 * 3600
# Pages that only make sense with a source's keys in the session.
SOURCE_ENDPOINTS = frozenset(
    {"source.submit", "source.lookup", "source.delete_reply", "source.delete_all"}
)

View = str | Response | tuple[str, int]


def _session() -> SourceSession:
    return cast(SourceSession, session)


def _sign_in(keys: SourceKeys) -> None:
    """Start a fresh session holding only what was derived from the codename."""
    _sign_out()
    session[SOURCE_ID] = keys.source_id
    session[REPLY_KEY] = keys.reply_identity.secret_bytes()


def _sign_out() -> None:
    """Drop the source's keys (and everything else but the rate-limit key)."""
    interface = cast(EncryptedSessionInterface, current_app.session_interface)
    _session().restart(interface.now(), keep=(LIMIT_KEY,))


def _source() -> tuple[str, X25519Identity] | None:
    """The signed-in source's id and reply identity, if any."""
    source_id, secret = session.get(SOURCE_ID), session.get(REPLY_KEY)
    if isinstance(source_id, str) and isinstance(secret, bytes) and len(secret) == 32:
        return source_id, X25519Identity(secret)
    return None


# At most two codename derivations at a time per worker: each takes the KDF's memory (64 MiB by
# default), and a burst of logins on 96 threads must not take 6 GiB; the others wait their turn.
_KDF_SLOTS = threading.BoundedSemaphore(2)


def _derive(codename: str) -> SourceKeys:
    limits.spend()  # the derivation is the costly work the rate limits count
    state = get_state()
    with _KDF_SLOTS:
        return derive_source_keys(
            words.normalise_codename(codename), state.pepper, state.config.kdf_cost
        )


def _to_landing() -> Response:
    return redirect(url_for(".landing"), 303)


@bp.url_value_preprocessor
def _drop_lang(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    # The language is read from the path (app.source.language); views do not take it.
    if values is not None:
        values.pop("lang", None)


@bp.url_defaults
def _add_lang(endpoint: str, values: dict[str, Any]) -> None:
    if current_app.url_map.is_endpoint_expecting(endpoint, "lang"):
        values.setdefault("lang", current_language())


@bp.app_context_processor
def _page_values() -> dict[str, Any]:
    config = get_state().config
    return {
        "lang": current_language(),
        "newsroom": config.newsroom_name,
        "max_submission": config.max_submission_bytes,
    }


@bp.before_app_request
def _end_expired_session() -> View | None:
    """An expired session tells the source to start over with a New Identity."""
    if not _session().expired:
        return None
    if request.method == "POST" or request.endpoint in SOURCE_ENDPOINTS:
        return render_template("new_identity.html", expired=True)
    return None


@bp.get("/", defaults={"lang": "en"})
@bp.get("/<lang:lang>/")
def landing() -> View:
    """What this is, how to stay safe, the key's fingerprint, and the two ways in."""
    return render_template("landing.html", fingerprint=" ".join(get_state().fingerprint))


@bp.get("/logo.png")
def logo() -> Response:
    """The newsroom's logo (also the page icon)."""
    return send_file(get_state().logo, mimetype="image/png", max_age=ASSET_MAX_AGE)


@bp.get("/<lang:lang>/generate")
def generate() -> View:
    """A fresh codename, shown once; only its derived keys stay in the session."""
    lang = current_language()
    codename = words.generate_codename(lang if lang in words.LANGUAGES else "en")
    _sign_in(_derive(codename))
    return render_template("generate.html", codename=codename)


@bp.route("/<lang:lang>/submit", methods=["GET", "POST"])
def submit() -> View:
    """The message and files form; a valid submission is encrypted and committed at once."""
    source = _source()
    if source is None:
        return _to_landing()
    if request.method == "GET":
        return render_template("submit.html", form=SubmitForm("", ""))
    form = SubmitForm.read(request.form)
    pending = cast(UploadRequest, request).pending_items()
    if sum(item.plain_size for item in pending) > get_state().config.max_submission_bytes:
        abort(413)
    if form.is_bot:
        # Look exactly like a success; the teardown discards the files.
        return _received(form, pending)
    error = _submission_error(form, pending)
    if error is not None:
        flash(error, "error")
        return render_template("submit.html", form=form)
    store = get_state().store
    source_id, identity = source
    limits.spend()  # a stored submission counts (once, with any file already written)
    messages = [store.add_message(form.message)] if form.has_message else []
    store.commit(source_id, str(identity.recipient), messages + pending)
    return _received(form, pending)


def _submission_error(form: SubmitForm, pending: list[PendingItem]) -> str | None:
    if form.too_long:
        return gettext(
            "Your message is too long: the limit is 100,000 characters. "
            "Shorten it, or send the rest in another message."
        )
    if not form.has_message and not pending:
        return gettext("Write a message or choose at least one file.")
    return None


def _received(form: SubmitForm, pending: list[PendingItem]) -> str:
    return render_template(
        "received.html",
        message_size=len(form.message.encode("utf-8")) if form.has_message else 0,
        file_count=len(pending),
        file_size=sum(item.plain_size for item in pending),
    )


@bp.route("/<lang:lang>/login", methods=["GET", "POST"])
def login() -> View:
    """Sign in with a codename; one generic message for any failure."""
    if request.method == "GET":
        return render_template("login.html")
    # Every attempt does the same work: one derivation and one lookup, whatever was typed.
    keys = _derive(LoginForm.read(request.form).codename)
    if get_state().store.source(keys.source_id) is None:
        _sign_out()
        flash(
            gettext(
                "That codename did not work. Check that you typed every word, "
                "with spaces between them, and try again."
            ),
            "error",
        )
        return render_template("login.html")
    _sign_in(keys)
    return redirect(url_for(".lookup"), 303)


@bp.get("/<lang:lang>/lookup")
def lookup() -> View:
    """The source's replies, decrypted in memory, newest first."""
    source = _source()
    if source is None:
        return _to_landing()
    source_id, identity = source
    store = get_state().store
    replies = [(item, _reply_text(item, identity)) for item in store.replies(source_id)]
    return render_template("lookup.html", replies=replies)


def _reply_text(item: Item, identity: X25519Identity) -> str | None:
    try:
        return get_state().store.reply_text(item, identity)
    except (TipboxError, OSError):
        return None


@bp.post("/<lang:lang>/replies/<item_id>/delete")
def delete_reply(item_id: str) -> View:
    """Hide one reply from the source."""
    source = _source()
    if source is None:
        return _to_landing()
    if get_state().store.hide_reply(source[0], item_id):
        flash(gettext("The reply was deleted."), "success")
    else:
        flash(gettext("That reply was already deleted."), "error")
    return redirect(url_for(".lookup"), 303)


@bp.post("/<lang:lang>/replies/delete")
def delete_all() -> View:
    """Hide every reply from the source."""
    source = _source()
    if source is None:
        return _to_landing()
    count = get_state().store.hide_all_replies(source[0])
    flash(ngettext("%(num)d reply was deleted.", "%(num)d replies were deleted.", count), "success")
    return redirect(url_for(".lookup"), 303)


@bp.post("/<lang:lang>/logout")
def logout() -> View:
    """End the session and tell the source to use New Identity."""
    session.clear()
    return render_template("new_identity.html", expired=False)
