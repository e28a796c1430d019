"""Replies written on the air-gapped machine, and the server's check of them before storing one.

A reply is an age v1 file encrypted to the source's reply key and to every newsroom key (a
classical file if any of them is still X25519: see :func:`reply_recipients`); its
plaintext is the item format (:mod:`app.item`) with one member, ``reply.txt``, padded
like stored items so its size tells only a size bucket. age hides whom a file is encrypted to,
so the header also carries one stanza that age ignores (as it ignores the spec's "grease")::

    -> tipbox-recipients <base64 SHA-256 of the sorted, distinct recipients joined by "\\n">
    <empty body>

The stanza is a DECLARATION, NOT A PROOF. Whoever writes a file can declare any set of keys and
wrap the file key to others; the header MAC only shows that the declaration was there when the
file was made. It lets the server catch honest mistakes (a reply made for the wrong source, or
without the newsroom key, so the newsroom could not read its own reply) before storing them; it
cannot stop a malicious writer, who can always encrypt something else to the source's key.
Making and checking are pure; ``tipbox reply`` (:mod:`app.cli.reply`) handles the files.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from app import item
from app.crypto.header import Header, Stanza, b64decode, parse_header
from app.crypto.hpke import ENC_SIZE
from app.crypto.hybrid import HYBRID_TAG
from app.crypto.keyfile import KeyRecipient, is_post_quantum, parse_recipient
from app.crypto.recipients import Recipient, Unlabelled
from app.crypto.stream import ENC_CHUNK_SIZE, NONCE_SIZE, TAG_SIZE
from app.errors import HeaderError, ReplyError

TAG = "tipbox-recipients"
NAME = "reply.txt"
CONTENT_TYPE = "text/plain"
MAX_TEXT_BYTES = 1 << 20
MAX_FILE_BYTES = 2 << 20  # the largest reply (1 MiB of text) pads up to this bucket
BUCKET_MIN = 1024  # replies pad to powers of two (at most 2 MiB: cheap)
PADDING = item.Padding(BUCKET_MIN, steps=1)
_MAC_LINE = len(b" ") + 43 + len(b"\n")  # what follows "---" in a header


def recipients_digest(recipients: Iterable[str | KeyRecipient]) -> str:
    """The declaration's argument: unpadded base64 of SHA-256 over the sorted recipients."""
    keys = sorted({str(parse_recipient(str(r))) for r in recipients})
    digest = hashlib.sha256("\n".join(keys).encode("ascii")).digest()
    return base64.b64encode(digest).rstrip(b"=").decode("ascii")


def declaration(recipients: Iterable[str | KeyRecipient]) -> Stanza:
    """The ``tipbox-recipients`` stanza declaring ``recipients``."""
    return Stanza(TAG, (recipients_digest(recipients),), b"")


def reply_recipients(recipients: Sequence[KeyRecipient]) -> list[Recipient]:
    """What a reply is encrypted to: ``recipients`` themselves, or, when one of them is classical
    (a source's reply key from before hybrid keys), all of them with their labels waived: the
    reply is classical anyway, and the newsroom must still open it with a hybrid key."""
    if all(is_post_quantum(r) for r in recipients):
        return list(recipients)
    return [Unlabelled(r) for r in recipients]


def make_reply(text: str, recipients: Sequence[KeyRecipient]) -> bytes:
    """The reply file for ``text``, encrypted to ``recipients`` and declaring them."""
    data = text.encode("utf-8")
    if len(data) > MAX_TEXT_BYTES:
        raise ReplyError(f"the reply is too long (at most {MAX_TEXT_BYTES >> 20} MiB of text)")
    out = io.BytesIO()
    reply = item.Writer(
        out,
        reply_recipients(recipients),
        NAME,
        CONTENT_TYPE,
        padding=PADDING,
        extra_stanzas=[declaration(recipients)],
    )
    reply.write(data)
    reply.finish()
    return out.getvalue()


_SHARE_SIZES = {"X25519": 32, HYBRID_TAG: ENC_SIZE}  # what a reply's recipient stanzas carry


def _well_formed(stanza: Stanza) -> bool:
    try:
        share = b64decode(stanza.args[0]) if len(stanza.args) == 1 else b""
    except HeaderError:
        return False
    return len(share) == _SHARE_SIZES[stanza.tag] and len(stanza.body) == 32


def _check_stanzas(header: Header, expected: Sequence[str]) -> None:
    tags = [s.tag for s in header.stanzas]
    if "scrypt" in tags:
        raise ReplyError("the reply is encrypted with a passphrase, not to the source's keys")
    if any(tag not in (*_SHARE_SIZES, TAG) for tag in tags):
        raise ReplyError("the reply's header has a recipient type Tipbox does not write")
    count = len(tags) - tags.count(TAG)
    if count != len(expected):
        raise ReplyError(
            f"the reply is encrypted to {count} keys, expected {len(expected)} "
            "(the source's reply key and every newsroom key)"
        )
    if not all(_well_formed(s) for s in header.stanzas if s.tag != TAG):
        raise ReplyError("the reply has a malformed recipient stanza")
    declared = [s for s in header.stanzas if s.tag == TAG]
    if len(declared) != 1 or declared[0].body or len(declared[0].args) != 1:
        raise ReplyError("the reply does not declare its recipients (was it made by tipbox?)")
    if declared[0].args[0] != recipients_digest(expected):
        raise ReplyError(
            "the reply was made for other keys: another source, or without the newsroom keys",
            hint="make the reply again with 'tipbox reply' from this source's latest bundle",
        )


def _check_payload(size: int) -> None:
    """A payload of ``size`` bytes (nonce included) must be whole chunks as age writes them."""
    full, last = divmod(size - NONCE_SIZE, ENC_CHUNK_SIZE)
    if full and not last:
        full, last = full - 1, ENC_CHUNK_SIZE
    if size < NONCE_SIZE + TAG_SIZE or last < TAG_SIZE or (last == TAG_SIZE and full):
        raise ReplyError("the reply is truncated or damaged")


def _rest_size(src: BinaryIO, limit: int) -> int:
    total = 0
    while block := src.read(min(1 << 16, limit + 1 - total)):
        total += len(block)
        if total > limit:
            break
    return total


def check_reply(
    data: bytes | BinaryIO,
    expected: Sequence[str | KeyRecipient],
    limit: int = MAX_FILE_BYTES,
) -> None:
    """Refuse anything but a well-formed reply that declares exactly ``expected``.

    ``expected`` is the source's reply recipient and every newsroom recipient. The stream is
    read to its end (at most ``limit`` bytes). What this checks is the writer's declaration:
    see the module's docstring for what it can and cannot prove.

    :raises ReplyError: naming what is wrong.
    """
    keys = sorted({str(parse_recipient(str(r))) for r in expected})
    src = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    try:
        header = parse_header(src)
    except HeaderError as exc:
        raise ReplyError(f"the reply is not a valid age file: {exc.message}") from None
    _check_stanzas(header, keys)
    header_size = len(header.sealed) + _MAC_LINE
    rest = _rest_size(src, max(limit - header_size, 0))
    if header_size + rest > limit:
        raise ReplyError(f"the reply is larger than {limit} bytes")
    _check_payload(rest)
