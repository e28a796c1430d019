"""The source's replies: read them, and delete them after a confirmation (a page of its own, so
that it works without JavaScript). Deleting hides a reply from the source; the newsroom keeps its
copy. Routes of :data:`app.source.views.bp`.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from app.errors import TipboxError
from app.server.store import Item
from app.source.language import gettext, ngettext
from app.source.state import get_state
from app.source.views import SignedIn, View, bp, signed_in_source, to_landing


@bp.get("/<lang:lang>/lookup")
def lookup() -> View:
    """The source's replies, decrypted in memory, newest first."""
    source = signed_in_source()
    if source is None:
        return to_landing()
    store = get_state().store
    replies = [(item, _reply_text(item, source)) for item in store.replies(source.source_id)]
    return render_template("lookup.html", replies=replies)


def _reply_text(item: Item, source: SignedIn) -> str | None:
    try:
        return get_state().store.reply_text(item, source.identities)
    except (TipboxError, OSError):
        return None


@bp.route("/<lang:lang>/replies/<item_id>/delete", methods=["GET", "POST"])
def delete_reply(item_id: str) -> View:
    """Ask, then hide one reply from the source (the newsroom keeps its copy)."""
    source = signed_in_source()
    if source is None:
        return to_landing()
    source_id = source.source_id
    if request.method == "GET":
        reply = next((r for r in get_state().store.replies(source_id) if r.id == item_id), None)
        if reply is None:
            flash(gettext("That reply was already deleted."), "error")
            return redirect(url_for(".lookup"), 303)
        text = _reply_text(reply, source)
        return render_template("confirm_delete.html", replies=[(reply, text)], one=True)
    if get_state().store.hide_reply(source_id, item_id):
        flash(gettext("The reply was deleted."), "success")
    else:
        flash(gettext("That reply was already deleted."), "error")
    return redirect(url_for(".lookup"), 303)


@bp.route("/<lang:lang>/replies/delete", methods=["GET", "POST"])
def delete_all() -> View:
    """Ask, then hide every reply from the source."""
    source = signed_in_source()
    if source is None:
        return to_landing()
    if request.method == "GET":
        return render_template("confirm_delete.html", replies=[], one=False)
    count = get_state().store.hide_all_replies(source.source_id)
    flash(ngettext("%(num)d reply was deleted.", "%(num)d replies were deleted.", count), "success")
    return redirect(url_for(".lookup"), 303)
