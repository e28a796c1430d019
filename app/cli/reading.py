"""The reading view ``tipbox open`` writes: ``index.html`` and a conversation page per source.

Static HTML for any browser, Tor Browser at its Safest level on Tails included, opened from
``file://``: no JavaScript, no image, no font, nothing fetched. A restrictive Content Security
Policy in a meta tag allows only the one inline style sheet, by its hash, so even a page
someone edited could load nothing. Everything that came from a source (text, file names) is
escaped with :func:`html.escape` after :func:`shown` has made it printable; long lines wrap.
Standard library only (the air-gapped commands must not load Jinja2). Pages are streamed to
their files an item at a time, so a long conversation costs no more memory than a short one.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Iterator
from html import escape
from pathlib import Path
from urllib.parse import quote

from app.cli.index import Entry, FolderIndex, Held
from app.cli.summary import plural, size
from app.files import atomic_write

PAGE = "conversation.html"
MAX_INLINE = 1 << 20  # a longer message is cut on the page (the file holds it whole)
STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:46rem;padding:1rem;color:#111;
background:#fff}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin:0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem;
border-bottom:1px solid #ccc;vertical-align:top}
.sub{border:1px solid #999;border-radius:.4rem;margin:1rem 0;padding:.5rem}
.reply{border-color:#36c;background:#eef3ff}
.item{margin:.5rem 0}.meta{color:#444;font-size:.9rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;padding:.5rem;margin:.3rem 0;
font:15px/1.4 monospace}
.new{background:#ffe066;padding:0 .3rem;border-radius:.3rem;font-size:.8rem}
.warn{color:#a00;font-weight:bold}
a{overflow-wrap:anywhere}
@media (max-width:30rem){body{padding:.5rem}th:nth-child(n+3),td:nth-child(n+3){display:none}}
"""
_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_HASH}'; img-src 'none'; form-action 'none'; "
    "base-uri 'none'"
)
# Controls (but tab and newline) and the marks that reorder text (bidi overrides, isolates).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_VERDICTS = {
    "none": "mat2 found no metadata",
    "unreadable": "mat2 cannot check this kind of file: check it yourself",
    "unchecked": "not checked (mat2 is not installed)",
}


def shown(text: str) -> str:
    """Text a source wrote, made safe to show: controls and direction marks become U+FFFD."""
    return _UNSAFE.sub("\ufffd", text)


def _head(title: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n"
    )


def write_pages(index: FolderIndex, out: Path, touched: Iterable[str]) -> None:
    """Write the conversation pages of the ``touched`` sources, then ``index.html``."""
    for designation in touched:
        held = index.sources[designation]
        _write(out / held.folder / PAGE, conversation(held, index.run, out))
    _write(out / "index.html", overview(index))


def _write(path: Path, parts: Iterator[str]) -> None:
    with atomic_write(path, 0o600, overwrite=True, durable=False) as handle:
        for part in parts:
            handle.write(part.encode("utf-8"))


def overview(index: FolderIndex) -> Iterator[str]:
    """``index.html``: every source, most recently active first, with what the last run added."""
    sources = sorted(index.sources.values(), key=lambda h: (h.last_active_day, h.designation))
    yield _head("Tipbox: sources")
    yield f"<h1>Tipbox: {plural(len(sources), 'source')}</h1>\n"
    yield "<table><tr><th>Source</th><th>New</th><th>Last day</th><th>Items</th></tr>\n"
    for held in reversed(sources):
        new = sum(1 for e in held.entries if e.run == index.run)
        mark = f'<span class="new">{new} new</span>' if new else ""
        link = f'<a href="{quote(held.folder)}/{PAGE}">{escape(held.designation)}</a>'
        yield f"<tr><td>{link}</td><td>{mark}</td><td>{escape(held.last_active_day)}</td>"
        yield f"<td>{escape(_counts(held.entries))}</td></tr>\n"
    yield "</table>\n<p class=meta>New: added by the last <code>tipbox open</code>.</p>"
    yield "</body></html>\n"


def _counts(entries: Iterable[Entry]) -> str:
    found = Counter(e.kind for e in entries)
    kinds = ("message", "file", "reply")
    return ", ".join(plural(found[k], k) for k in kinds if found[k]) or "nothing yet"


def conversation(held: Held, run: int, out: Path) -> Iterator[str]:
    """A source's page: every item in the server's order, a box per submission."""
    folder = out / held.folder
    yield _head(f"Tipbox: {held.designation}")
    yield f'<p><a href="../index.html">All sources</a></p><h1>{escape(held.designation)}</h1>\n'
    yield f"<p>Last active {escape(held.last_active_day)}; {escape(_counts(held.entries))}.</p>\n"
    entries = sorted(held.entries, key=lambda e: e.seq)
    for number, entry in enumerate(entries):
        if number == 0 or entry.submission != entries[number - 1].submission:
            if number:
                yield "</section>\n"
            kind = " reply" if entry.kind == "reply" else ""
            yield f'<section class="sub{kind}">\n'
        yield from _item(entry, folder, run)
    if entries:
        yield "</section>\n"
    yield from _reply_help(held, out)
    yield "</body></html>\n"


def _item(entry: Entry, folder: Path, run: int) -> Iterator[str]:
    new = ' <span class="new">new</span>' if entry.run == run else ""
    who = {"message": "message from the source", "reply": "reply from the newsroom"}
    yield f'<div class=item id="item-{entry.seq}"><h2>#{entry.seq} '
    yield f"{who.get(entry.kind, 'file')}{new}</h2>\n<p class=meta>{escape(entry.day)}</p>\n"
    if entry.kind == "file":
        yield from _file(entry)
    else:
        yield f"<pre>{escape(shown(_text(folder / entry.name)))}</pre>\n"
    yield "</div>\n"


def _text(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_INLINE + 1)
    cut = len(data) > MAX_INLINE
    text = data[:MAX_INLINE].decode("utf-8", "replace")
    return text + ("\n[… cut here: the file holds the whole message]" if cut else "")


def _file(entry: Entry) -> Iterator[str]:
    kind = mimetypes.guess_type(entry.name, strict=False)[0] or "unknown type"
    name = escape(shown(entry.name))
    yield f'<p><a href="{escape(quote(entry.name))}">{name}</a> '
    yield f"<span class=meta>{size(entry.size)}, {escape(kind)} (by its name)</span></p>\n"
    if entry.verdict == "identifying":
        yield "<p class=warn>Metadata that may identify the source:</p>\n<pre>"
        yield escape(shown("\n".join(entry.fields))) + "</pre>\n"
    else:
        yield f"<p class=meta>{_VERDICTS.get(entry.verdict, 'not checked')}</p>\n"
    if entry.report:
        href = escape(quote(entry.report))
        yield f'<p class=meta><a href="{href}">mat2\'s whole report</a></p>\n'


def _reply_help(held: Held, out: Path) -> Iterator[str]:
    draft = f"reply-to-{held.folder}.txt"
    command = shlex.join(
        ["tipbox", "reply", str(out.resolve()), "--source", held.designation, "--file", draft]
    )
    yield "<h2>Reply</h2>\n<p>Write the reply in a UTF-8 text file "
    yield f"<code>{escape(draft)}</code>, then run:</p>\n<pre>{escape(command)}</pre>\n"
    yield "<p class=meta>Upload the file it writes in the journalist app.</p>\n"
