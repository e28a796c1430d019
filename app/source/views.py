"""The source's pages: landing, codename, submission, replies, logout.

Every page lives under its language (``/es/submit``); English is also served at ``/``. The
session never holds a codename: generating one or logging in runs the one slow derivation and
keeps only the source id and the reply identity's secret. Nothing is stored before the first
submission, which creates the source in the store.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import Any, cast

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response

from app import words
from app.crypto import SourceKeys, X25519Identity, derive_source_keys
from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import KeyIdentity
from app.server import settings
from app.server.session import EncryptedSessionInterface, SourceSession
from app.server.store import PendingItem
from app.source import limits, refusals
from app.source.forms import LoginForm, SubmitForm
from app.source.language import current_language, gettext, human_size
from app.source.limits import SESSION_KEY as LIMIT_KEY
from app.source.state import get_state
from app.source.upload import UploadRequest

bp = Blueprint("source", __name__)

SOURCE_ID = "sid"
REPLY_KEY = "rk"  # the classic (X25519) reply identity's secret, as before hybrid keys
HYBRID_REPLY_KEY = "rkpq"  # the hybrid reply identity's seed (absent from older sessions)
# The codename generated for this session, kept until its first submission or logout.
CODENAME = "cn"
# What the last submission brought: [message bytes, file count, file bytes].
RECEIVED = "rcv"
ASSET_MAX_AGE = 24 * 3600
# Pages that only make sense with a source's keys in the session.
SOURCE_ENDPOINTS = frozenset(
    {
        "source.submit",
        "source.received",
        "source.lookup",
        "source.delete_reply",
        "source.delete_all",
    }
)

View = str | Response | tuple[str, int]


def _session() -> SourceSession:
    return cast(SourceSession, session)


def _sign_in(keys: SourceKeys) -> None:
    """Start a fresh session holding only what was derived from the codename."""
    _sign_out()
    session[SOURCE_ID] = keys.source_id
    session[REPLY_KEY] = keys.classic_reply_identity.secret_bytes()
    session[HYBRID_REPLY_KEY] = keys.reply_identity.secret_bytes()


def _sign_out() -> None:
    """Drop the source's keys (and everything else but the rate-limit key)."""
    interface = cast(EncryptedSessionInterface, current_app.session_interface)
    _session().restart(interface.now(), keep=(LIMIT_KEY,))


@dataclass(frozen=True)
class SignedIn:
    """The signed-in source: its id, the recipient new replies go to, and every identity that
    opens its replies (the hybrid one, and the classic one for replies from before)."""

    source_id: str
    identities: tuple[KeyIdentity, ...]  # the first is the one new replies go to

    @property
    def recipient(self) -> str:
        """The reply recipient a new source is created with (made only when needed: a hybrid
        one is ~1,960 Bech32 characters)."""
        return str(self.identities[0].recipient)


def signed_in_source() -> SignedIn | None:
    """The signed-in source, if any."""
    source_id, secret = session.get(SOURCE_ID), session.get(REPLY_KEY)
    if not (isinstance(source_id, str) and isinstance(secret, bytes) and len(secret) == 32):
        return None
    classic = X25519Identity(secret)
    seed = session.get(HYBRID_REPLY_KEY)
    if not (isinstance(seed, bytes) and len(seed) == 32):  # a session from before hybrid keys
        return SignedIn(source_id, (classic,))
    return SignedIn(source_id, (HybridIdentity(seed), classic))


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


def to_landing() -> Response:
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


def _settings() -> settings.Settings:
    """The admin's settings (app.server.settings), read once per request."""
    if "tipbox_settings" not in g:
        g.tipbox_settings = get_state().settings.get()
    found: settings.Settings = g.tipbox_settings
    return found


@bp.app_context_processor
def _page_values() -> dict[str, Any]:
    config, chosen = get_state().config, _settings()
    return {
        "lang": current_language(),
        "newsroom": chosen.newsroom_name or config.newsroom_name,
        "landing_text": chosen.landing.get(current_language()),
        "accept_messages": chosen.accept_messages,
        "accept_files": chosen.accept_files,
        "min_length": chosen.min_message_length,
        "max_submission": config.max_submission_bytes,
    }


@bp.before_app_request
def _end_expired_session() -> View | None:
    """An expired session tells the source to start over with a New Identity."""
    if not _session().expired:
        return None
    if request.method == "POST" and request.endpoint == "source.submit":
        return refusals.session_lost()
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
    """The newsroom's logo (also the page icon): the admin's, or the configured one."""
    chosen = settings.load_logo(get_state().store.database) if _settings().has_logo else None
    if chosen:
        return send_file(io.BytesIO(chosen), mimetype="image/png", max_age=0)
    return send_file(get_state().logo, mimetype="image/png", max_age=ASSET_MAX_AGE)


@bp.get("/<lang:lang>/generate")
def generate() -> View:
    """This session's codename (a new one the first time); reloads and languages keep it.

    Once it has been used it is no longer kept: the page then says so, rather than switching
    the source to a new codename because it went back to this page.
    """
    codename = session.get(CODENAME)
    if signed_in_source() is None:
        codename = _new_codename()
    elif not isinstance(codename, str):
        codename = None
    return render_template("generate.html", codename=codename)


@bp.post("/<lang:lang>/generate")
def another() -> View:
    """Replace this session's codename with a new one, then show it."""
    _new_codename()
    return redirect(url_for(".generate"), 303)


def _new_codename() -> str:
    lang = current_language()
    codename = words.generate_codename(lang if lang in words.LANGUAGES else "en")
    _sign_in(_derive(codename))
    session[CODENAME] = codename
    return codename


@bp.route("/<lang:lang>/submit", methods=["GET", "POST"])
def submit() -> View:
    """The message and files form; a valid submission is encrypted and committed at once."""
    source = signed_in_source()
    if source is None:
        return to_landing() if request.method == "GET" else refusals.session_lost()
    if request.method == "GET":
        return render_template("submit.html", form=SubmitForm("", ""))
    form = SubmitForm.read(request.form)
    pending = cast(UploadRequest, request).pending_items()
    if form.is_bot:
        # Look exactly like a success; the teardown discards the files.
        return _received(form, pending)
    error = _submission_error(form, pending)
    if error is not None:
        return refusals.form_again(form, error, bool(pending), 200)
    store = get_state().store
    limits.spend()  # a stored submission counts (once, with any file already written)
    messages = [store.add_message(form.message)] if form.has_message else []
    store.commit(source.source_id, source.recipient, messages + pending)
    session.pop(CODENAME, None)  # it exists now: the source must have written it down
    return _received(form, pending)


def _submission_error(form: SubmitForm, pending: list[PendingItem]) -> str | None:
    chosen = _settings()
    if pending and not chosen.accept_files:
        return gettext("This tip box accepts messages only. Nothing was saved.")
    if form.has_message and not chosen.accept_messages:
        return gettext("This tip box accepts files only. Nothing was saved.")
    if form.has_message and len(form.message.strip()) < chosen.min_message_length:
        return gettext(
            "Your message is too short: write at least %(n)d characters.",
            n=chosen.min_message_length,
        )
    if form.too_long:
        return gettext(
            "Your message is too long: the limit is 100,000 characters. "
            "Shorten it, or send the rest in another message."
        )
    if not form.has_message and not pending:
        if not chosen.accept_files:
            return gettext("Write a message.")
        if not chosen.accept_messages:
            return gettext("Choose at least one file.")
        return gettext("Write a message or choose at least one file.")
    return None


def _received(form: SubmitForm, pending: list[PendingItem]) -> Response:
    message_size = len(form.message.encode("utf-8")) if form.has_message else 0
    session[RECEIVED] = [message_size, len(pending), sum(item.plain_size for item in pending)]
    return redirect(url_for(".received"), 303)


@bp.get("/<lang:lang>/received")
def received() -> View:
    """What the last submission brought (from the session: a reload stores nothing)."""
    if signed_in_source() is None:
        return to_landing()
    summary = session.get(RECEIVED)
    if not (isinstance(summary, list) and len(summary) == 3):
        return redirect(url_for(".submit"), 303)
    message_size, file_count, file_size = summary
    return render_template(
        "received.html", message_size=message_size, file_count=file_count, file_size=file_size
    )


@bp.route("/<lang:lang>/login", methods=["GET", "POST"])
def login() -> View:
    """Sign in with a codename; one generic message for any failure."""
    if request.method == "GET":
        return render_template("login.html")
    # Every attempt does the same work: one derivation and one lookup, whatever was typed.
    keys = _derive(LoginForm.read(request.form).codename)
    store = get_state().store
    if store.source(keys.source_id) is None:
        _sign_out()
        flash(
            gettext(
                "That codename did not work. Check that you typed every word, "
                "with spaces between them, and try again. If you never sent anything with "
                "it, it was not kept: choose “This is my first time” to get a new one."
            ),
            "error",
        )
        return redirect(url_for(".login"), 303)
    # A source from before hybrid keys gets one now: replies from here on are post-quantum.
    store.upgrade_reply_recipient(keys.source_id, str(keys.reply_identity.recipient))
    _sign_in(keys)
    return redirect(url_for(".lookup"), 303)


def refused_submission(error: HTTPException) -> Response | None:
    """The answer to a submission refused before the view ran (too large, session lost)."""
    # The session ended, or the browser lost it: the form's token went with it.
    if signed_in_source() is None:
        return refusals.session_lost()
    if isinstance(error, RequestEntityTooLarge) and refusals.token_is_valid():
        reason = gettext(
            "What you sent is too large: the limit is %(limit)s in total. Nothing was saved.",
            limit=human_size(get_state().config.max_submission_bytes),
        )
        return refusals.form_again(SubmitForm.read(refusals.typed_fields()), reason, True, 413)
    return None


@bp.post("/<lang:lang>/logout")
def logout() -> View:
    """End the session (and forget a codename never used), then advise New Identity."""
    session.clear()
    return redirect(url_for(".logged_out"), 303)


@bp.get("/<lang:lang>/logged-out")
def logged_out() -> View:
    """Tell the source to use New Identity."""
    return render_template("new_identity.html", expired=False)
