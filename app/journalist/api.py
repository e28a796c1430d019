"""The JSON API (``/api/v1``): everything the pages do, for scripts, with a bearer token.

Documented in ``docs/api.md``. Authentication is :func:`app.journalist.auth.authenticate`; CSRF
does not apply (a browser never sends the ``Authorization`` header on its own). Errors are
``{"error": "…"}`` with the HTTP status.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request
from werkzeug.wrappers import Response

from app.errors import ReplyError
from app.journalist import actions
from app.journalist.auth import current
from app.journalist.inbox import FILTERS, SourceRow, page_number
from app.journalist.state import get_state, new_sink
from app.server.store import Item

bp = Blueprint("api", __name__, url_prefix="/api/v1")

JSONReply = Response | tuple[Response, int]


def _source(row: SourceRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "designation": row.designation,
        "last_active_day": row.last_active_day,
        "counts": {"message": row.messages, "file": row.files, "reply": row.replies},
        "unread": row.unread,
        "starred": row.starred,
    }


def _item(item: Item) -> dict[str, Any]:
    return {"id": item.id, "kind": item.kind, "day": item.day, "size": item.size}


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        abort(400)
    return body


@bp.get("/me")
def me() -> JSONReply:
    """Who the token belongs to."""
    journalist = current()
    return jsonify(username=journalist.username, admin=journalist.is_admin)


@bp.get("/sources")
def sources() -> JSONReply:
    """A page of sources (``?page=N&show=all|unread|starred``)."""
    show, number = request.args.get("show", "all"), page_number(request.args.get("page", "1"))
    if show not in FILTERS or number is None:
        abort(400)
    page = get_state().inbox.page(current().id, number, show)
    return jsonify(
        page=page.number,
        pages=page.pages,
        total=page.total,
        sources=[_source(row) for row in page.rows],
    )


@bp.get("/sources/<source_id>")
def source(source_id: str) -> JSONReply:
    """One source and its items, newest first."""
    row = actions.source_row(current(), source_id)
    items = get_state().store.items_of(source_id)
    return jsonify(source=_source(row), items=[_item(i) for i in items])


@bp.get("/sources/<source_id>/items/<item_id>")
def download(source_id: str, item_id: str) -> Response:
    """One item's ciphertext."""
    return actions.send_item(source_id, item_id)


@bp.post("/bundle")
def bundle() -> Response:
    """``{"scope": "unread" | "all" | "selected", "sources": [id, …]}``: a streamed bundle."""
    body = _json()
    scope, ids = body.get("scope", ""), body.get("sources", [])
    if scope not in ("selected", "unread", "all") or not isinstance(ids, list):
        abort(400)
    return actions.send_bundle(current(), scope, [str(i) for i in ids])


@bp.post("/sources/<source_id>/<action>")
def mark(source_id: str, action: str) -> JSONReply:
    """``read``, ``unread``, ``star`` or ``unstar``."""
    if action not in actions.MARKS:
        abort(404)
    actions.mark(current(), source_id, action)
    return jsonify(source=_source(actions.source_row(current(), source_id)))


@bp.delete("/sources/<source_id>/items/<item_id>")
def delete_item(source_id: str, item_id: str) -> JSONReply:
    """Delete one item."""
    actions.item_of(source_id, item_id)
    actions.delete_items(source_id, [item_id])
    return jsonify(deleted=1)


@bp.delete("/sources/<source_id>")
def delete_source(source_id: str) -> JSONReply:
    """Delete a source with everything it sent and its reply key."""
    return jsonify(deleted=actions.delete_source(source_id))


@bp.post("/sources/<source_id>/replies")
def reply(source_id: str) -> JSONReply:
    """Store a reply: the body is the age file from ``tipbox reply`` (or JSON ``{"text": …}``)."""
    actions.source_of(source_id)
    if request.mimetype == "application/json":
        text = _json().get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > 100_000:
            abort(400)
        return jsonify(item=_item(actions.reply_text(source_id, text))), 201
    sink = new_sink()
    try:
        sink.fill(request.stream)
        item = actions.store_reply(source_id, sink)
    except ReplyError as exc:
        return jsonify(error=exc.message), 422
    return jsonify(item=_item(item)), 201
