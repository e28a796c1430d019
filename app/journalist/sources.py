"""The journalist's pages: sources, a source's items, downloads, bundles, replies, deletion.

Every action goes through :mod:`app.journalist.actions`, which the JSON API shares, so a page
and the API can never disagree on what deleting or replying does.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.crypto.hybrid import RECIPIENT_PREFIX as HYBRID_PREFIX
from app.errors import ReplyError
from app.journalist import actions
from app.journalist.auth import current
from app.journalist.confirm import ask, confirmed
from app.journalist.inbox import FILTERS, page_number
from app.journalist.pages import View, gettext
from app.journalist.state import get_state, reply_sink
from app.server.retention import deletion_day

bp = Blueprint("sources", __name__)

MAX_REPLY_CHARS = 100_000


def _back(source_id: str) -> Response:
    return redirect(url_for("sources.source", source_id=source_id), 303)


@bp.get("/")
def index() -> View:
    """Sources, most recently active first, a page at a time."""
    show = request.args.get("show", "all")
    if show not in FILTERS:
        abort(404)
    number = page_number(request.args.get("page", "1")) or 1  # a bad number is ignored
    state = get_state()
    page = state.inbox.page(current().id, number, show)
    days = state.config.retention_days
    return render_template(
        "sources.html", page=page, show=show, retention=days, deletion_day=deletion_day
    )


@bp.get("/sources/<source_id>")
def source(source_id: str) -> View:
    """One source: its items in conversation order, and what can be done with them."""
    row = actions.source_row(current(), source_id)
    state = get_state()
    known = state.store.source(source_id)
    # A source from before hybrid keys keeps its X25519 reply key until it logs in again.
    classical_key = known is not None and not known.reply_recipient.startswith(HYBRID_PREFIX)
    return render_template(
        "source.html",
        source=row,
        entries=state.inbox.conversation(current().id, source_id),
        max_chars=MAX_REPLY_CHARS,
        classical_key=classical_key,
        retention=state.config.retention_days,
        deletion_day=deletion_day,
    )


@bp.get("/sources/<source_id>/items/<item_id>")
def download(source_id: str, item_id: str) -> Response:
    """One item's ciphertext, as stored."""
    return actions.send_item(source_id, item_id)


@bp.post("/bundle")
def bundle() -> Response:
    """A bundle of the chosen sources, the unread ones, or all, streamed as it is written."""
    scope = request.form.get("scope", "")
    if scope not in ("selected", "unread", "all"):
        abort(400)
    ids = request.form.getlist("source")
    return actions.send_bundle(current(), scope, ids)


@bp.post("/sources/<source_id>/mark")
def mark(source_id: str) -> Response:
    """Read, unread, star or unstar a source."""
    action = request.form.get("action", "")
    if action not in actions.MARKS:
        abort(400)
    actions.mark(current(), source_id, action)
    target = request.form.get("next")
    return redirect(url_for("sources.index"), 303) if target == "list" else _back(source_id)


@bp.post("/sources/<source_id>/items/delete")
def delete_items(source_id: str) -> View:
    """Delete the chosen items (files and rows), once confirmed."""
    row, chosen = actions.source_row(current(), source_id), request.form.getlist("item")
    if not chosen:
        flash(gettext("Select the items to delete."), "error")
        return _back(source_id)
    if not confirmed():
        return ask(
            gettext(
                "Delete %(num)d item(s) of %(name)s?", num=len(set(chosen)), name=row.designation
            ),
            gettext("The selected items are deleted from the server. This cannot be undone."),
            gettext("Delete the items"),
            url_for("sources.source", source_id=source_id),
        )
    count = actions.delete_items(source_id, chosen)
    flash(gettext("%(num)d item(s) deleted.", num=count), "success")
    return _back(source_id)


@bp.post("/sources/<source_id>/delete")
def delete_source(source_id: str) -> View:
    """Delete the source, all its items and its reply key, once confirmed."""
    row = actions.source_row(current(), source_id)
    if not confirmed():
        return ask(
            gettext("Delete %(name)s?", name=row.designation),
            gettext(
                "Everything this source sent, every reply and its reply key are deleted."
                " This cannot be undone."
            ),
            gettext("Delete the source"),
            url_for("sources.source", source_id=source_id),
        )
    actions.delete_source(source_id)
    flash(gettext("The source and everything it sent were deleted."), "success")
    return redirect(url_for("sources.index"), 303)


@bp.post("/sources/<source_id>/reply")
def upload_reply(source_id: str) -> Response:
    """Store a reply file made by ``tipbox reply`` on the air-gapped machine."""
    upload = request.files.get("reply")
    sink = reply_sink(upload.stream) if upload else None
    if sink is None:
        flash(gettext("Choose the reply file that 'tipbox reply' wrote."), "error")
        return _back(source_id)
    try:
        actions.store_reply(source_id, sink)
    except ReplyError as exc:
        flash(gettext("The reply was refused: %(why)s.", why=exc.message), "error")
        return _back(source_id)
    flash(gettext("The reply was stored. The source will see it at its next visit."), "success")
    return _back(source_id)


@bp.post("/sources/<source_id>/reply-text")
def reply_text(source_id: str) -> Response:
    """Encrypt a reply typed in the page (the less private path: the server sees it once)."""
    text = request.form.get("text", "").replace("\r\n", "\n")
    if not text.strip() or len(text) > MAX_REPLY_CHARS:
        flash(gettext("Write a reply of at most 100,000 characters."), "error")
        return _back(source_id)
    actions.reply_text(source_id, text)
    flash(gettext("The reply was encrypted and stored."), "success")
    return _back(source_id)
