"""What a journalist can do, shared by the pages and the JSON API: each call checks that the
source (and item) exist, and answers 404 otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from flask import Response, abort, send_file, stream_with_context

from app.bundle import BundleItem, iter_bundle
from app.days import today
from app.journalist.accounts import Journalist
from app.journalist.inbox import SourceRow
from app.journalist.replies import ReplySink
from app.journalist.replies import store_reply as _store_reply
from app.journalist.state import get_state
from app.server.store import Item, Source

MARKS = ("read", "unread", "star", "unstar")
MAX_SELECTED = 100_000


def source_of(source_id: str) -> Source:
    """The source, or a 404."""
    found = get_state().store.source(source_id)
    if found is None:
        abort(404)
    return found


def source_row(journalist: Journalist, source_id: str) -> SourceRow:
    """The source's list line for this journalist, or a 404."""
    row = get_state().inbox.row(journalist.id, source_id)
    if row is None:
        abort(404)
    return row


def item_of(source_id: str, item_id: str) -> Item:
    """The item of that source, or a 404."""
    found = get_state().store.item(source_id, item_id)
    if found is None:
        abort(404)
    return found


def send_item(source_id: str, item_id: str) -> Response:
    """One item's ciphertext as an attachment named after its source and id."""
    source, item = source_of(source_id), item_of(source_id, item_id)
    name = f"{'-'.join(source.designation.split())}-{item.kind}-{item.id}.age"
    response = send_file(
        get_state().store.path_of(item),
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=name,
        conditional=False,
        etag=False,
        max_age=0,
    )
    response.headers.pop("Last-Modified", None)  # the epoch (items' mtimes are reset): noise
    return response


def send_bundle(journalist: Journalist, scope: str, ids: list[str]) -> Response:
    """Stream a bundle (``selected`` ids, ``unread`` or ``all``); once it was all sent, mark
    what it holds read.

    ``tipbox open`` refuses a bundle cut short (an item deleted meanwhile, the journalist's
    connection lost) as a whole, so such a bundle delivered nothing and marks nothing.
    """
    state = get_state()
    chosen = state.inbox.select(journalist.id, scope, ids[:MAX_SELECTED])
    if scope == "selected" and not chosen:
        abort(400)
    entries, seqs = state.inbox.bundle_sources(chosen)
    items = state.store.items

    def open_item(item: BundleItem) -> BinaryIO:
        return (items / item.id).open("rb")

    blocks = iter_bundle(entries, open_item, recipients=[str(r) for r in state.store.recipients])
    first = next(blocks)  # the manifest is checked before anything is sent

    def stream() -> Iterator[bytes]:
        yield first
        yield from blocks
        # Resumed only once the server has written the last block to the connection.
        state.inbox.mark_read(journalist.id, seqs)

    response = Response(stream_with_context(stream()), mimetype="application/x-tar")
    response.headers["Content-Disposition"] = f"attachment; filename=tipbox-{today()}.tar"
    return response


def mark(journalist: Journalist, source_id: str, action: str) -> None:
    """Read, unread, star or unstar a source."""
    source_of(source_id)
    inbox = get_state().inbox
    if action == "read":
        inbox.read_all_of(journalist.id, source_id)
    elif action == "unread":
        inbox.mark_unread(journalist.id, source_id)
    else:
        inbox.star(source_id, action == "star")


def delete_items(source_id: str, item_ids: list[str]) -> int:
    """Delete these items of the source (row and file); how many there were."""
    source_of(source_id)
    store, count = get_state().store, 0
    for item_id in dict.fromkeys(item_ids):
        item = store.item(source_id, item_id)
        if item is not None:
            store.delete_item(item)
            count += 1
    return count


def delete_source(source_id: str) -> int:
    """Delete the source, its items and files, its reply key, its marks; how many items."""
    source_of(source_id)
    return get_state().store.delete_source(source_id)


def store_reply(source_id: str, sink: ReplySink) -> Item:
    """Check an uploaded reply and store it (see :mod:`app.journalist.replies`)."""
    source = source_of(source_id)
    return _store_reply(get_state().store, source, sink)


def reply_text(source_id: str, text: str) -> Item:
    """Encrypt a typed reply to the source and the newsroom; the text is not kept."""
    source_of(source_id)
    return get_state().store.add_reply_text(source_id, text)
