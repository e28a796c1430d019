"""The admin's pages for the instance: the settings (the newsroom's name, its landing text per
language, what the tip box accepts, a minimum message length and the logo; stored by
:mod:`app.server.settings`, read by the source portal on its next page) and the audit log
(:mod:`app.journalist.audit`). Admins only (see :mod:`app.journalist.auth`).

The logo arrives as an upload of at most 256 KiB, refused by its declared length before the
form is read, and is held in memory (it is public, and no upload in this app goes to a
temporary file).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.journalist import audit
from app.journalist.auth import current
from app.journalist.pages import View, gettext
from app.journalist.state import get_state
from app.server import settings
from app.server.settings import Settings, SettingsError
from app.source.language import discover_languages

bp = Blueprint("admin_settings", __name__, url_prefix="/admin")

LOGO_FORM_ROOM = 4096  # the multipart envelope around the logo


def _languages() -> tuple[str, ...]:
    return discover_languages(get_state().config.base.translations_dir)


def _to_page() -> Response:
    return redirect(url_for("admin_settings.page"), 303)


@bp.get("/settings")
def page() -> View:
    """The settings as they are, in one form; the logo in a second."""
    state = get_state()
    chosen = settings.load(state.store.database)
    return render_template(
        "settings.html",
        chosen=chosen,
        languages=_languages(),
        default_name=state.config.base.newsroom_name,
        max_landing=settings.MAX_LANDING_CHARS,
    )


def _read_form(languages: tuple[str, ...], has_logo: bool) -> Settings:
    form = request.form
    return Settings(
        newsroom_name=settings.check_name(form.get("newsroom_name", "")),
        landing={
            lang: text
            for lang in languages
            if (text := settings.check_landing(form.get(f"landing_{lang}", "")))
        },
        accept_messages=form.get("accept_messages") == "yes",
        accept_files=form.get("accept_files") == "yes",
        min_message_length=settings.check_min_length(form.get("min_message_length", "")),
        has_logo=has_logo,
    )


@bp.post("/settings")
def save() -> View:
    """Check every field, then store them all (or none, with the reason)."""
    database = get_state().store.database
    try:
        chosen = _read_form(_languages(), settings.load(database).has_logo)
        settings.save(database, chosen)
    except SettingsError as exc:
        flash(exc.message, "error")
        return _to_page()
    audit.record(database, current().username, "changed settings", "texts and rules")
    flash(gettext("Settings saved. The source pages use them from now on."), "success")
    return _to_page()


@bp.post("/settings/logo")
def logo() -> View:
    """Replace the logo with an uploaded PNG, or go back to the configured one."""
    database = get_state().store.database
    # Before anything reads the body: a larger upload is refused by its declared length.
    if (request.content_length or 0) > settings.MAX_LOGO_BYTES + LOGO_FORM_ROOM:
        abort(413)
    if request.form.get("action") == "remove":
        settings.save_logo(database, None)
        audit.record(database, current().username, "changed settings", "logo")
        flash(gettext("Logo removed: the source pages show the configured one."), "success")
        return _to_page()
    upload = request.files.get("logo")
    try:
        if upload is None or not upload.filename:
            raise SettingsError("Choose a PNG file for the logo.")
        chosen = settings.check_logo(upload.read(settings.MAX_LOGO_BYTES + 1))
    except SettingsError as exc:
        flash(exc.message, "error")
        return _to_page()
    settings.save_logo(database, chosen)
    audit.record(database, current().username, "changed settings", "logo")
    flash(gettext("Logo saved."), "success")
    return _to_page()


@bp.get("/audit")
def audit_log() -> View:
    """Who downloaded or deleted what, by day (newest first)."""
    state = get_state()
    days = state.config.retention_days or audit.DEFAULT_DAYS
    return render_template("audit.html", entries=audit.entries(state.store.database), days=days)
