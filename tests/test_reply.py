"""app.reply: the reply format, and the server's check of a reply before it is stored, with
classical and post-quantum keys (and a source still on X25519 beside a hybrid newsroom key)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import pytest

from app.crypto import ScryptRecipient, X25519Identity, X25519Recipient, encrypt
from app.crypto.header import Stanza, b64encode, encode_header
from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import KeyIdentity
from app.errors import ReplyError
from app.reply import MAX_FILE_BYTES, check_reply, declaration, make_reply
from tests.helpers import decrypt_bytes, encrypt_bytes

SOURCE, NEWSROOM, OTHER = (X25519Identity.generate() for _ in range(3))
RIGHT = [SOURCE.recipient, NEWSROOM.recipient]


def _declared(recipients: Sequence[X25519Recipient], declared: Sequence[X25519Recipient]) -> bytes:
    out = io.BytesIO()
    encrypt(io.BytesIO(b"hi"), out, recipients, extra_stanzas=[declaration(declared)])
    return out.getvalue()


def _grease() -> bytes:
    out = io.BytesIO()
    extra = [declaration(RIGHT), Stanza("grease", ("x",), b"")]
    encrypt(io.BytesIO(b"hi"), out, RIGHT, extra_stanzas=extra)
    return out.getvalue()


def _cases() -> list[object]:
    good = make_reply("hello", RIGHT)
    scrypt = encrypt_bytes(b"hi", [ScryptRecipient("pass", 2)])
    return [
        pytest.param(good, None, id="right_source"),
        pytest.param(
            make_reply("hello", [NEWSROOM.recipient, SOURCE.recipient]), None, id="any_order"
        ),
        pytest.param(
            make_reply("hello", [OTHER.recipient, NEWSROOM.recipient]),
            "made for other keys",
            id="wrong_source",
        ),
        pytest.param(
            make_reply("hello", [SOURCE.recipient]),
            "encrypted to 1 keys, expected 2",
            id="no_newsroom",
        ),
        pytest.param(
            _declared([SOURCE.recipient], RIGHT), "encrypted to 1 keys", id="no_newsroom_lying"
        ),
        pytest.param(
            make_reply("hello", [*RIGHT, OTHER.recipient]),
            "encrypted to 3 keys",
            id="extra_recipient",
        ),
        pytest.param(
            _declared([OTHER.recipient, NEWSROOM.recipient], RIGHT), None, id="lie_is_not_caught"
        ),
        pytest.param(encrypt_bytes(b"hi", RIGHT), "does not declare", id="undeclared"),
        pytest.param(_grease(), "recipient type", id="unknown_stanza"),
        pytest.param(scrypt, "passphrase", id="scrypt"),
        pytest.param(os.urandom(3000), "not a valid age file", id="garbage"),
        pytest.param(b"", "not a valid age file", id="empty"),
        pytest.param(good[:60], "not a valid age file", id="truncated_header"),
        pytest.param(good[: good.index(b"\n---") + 48], "truncated", id="header_only"),
        pytest.param(good[: good.index(b"\n---") + 48 + 20], "truncated", id="nonce_only"),
        pytest.param(good + bytes(MAX_FILE_BYTES), "larger than", id="too_large"),
    ]


@pytest.mark.parametrize(("data", "needle"), _cases())
def test_check_reply(data: bytes, needle: str | None) -> None:
    if needle is None:
        check_reply(data, [str(r) for r in RIGHT])
        check_reply(io.BytesIO(data), list(reversed(RIGHT)))  # a stream, keys in any order
        return
    with pytest.raises(ReplyError, match=needle):
        check_reply(data, [str(r) for r in RIGHT])
    with pytest.raises(ReplyError, match=needle):
        check_reply(io.BytesIO(data), RIGHT)


def test_replies_are_capped() -> None:
    with pytest.raises(ReplyError, match="too long"):
        make_reply("x" * ((1 << 20) + 1), RIGHT)
    check_reply(make_reply("é" * (1 << 19), RIGHT), RIGHT)  # exactly 1 MiB of UTF-8 fits


def _stanza_tags(reply: bytes) -> list[str]:
    head = reply.split(b"\n---")[0].decode("ascii")
    return [line.split()[1] for line in head.splitlines() if line.startswith("-> ")]


@pytest.mark.parametrize("source_kind", ["hybrid", "x25519"])
def test_a_reply_opens_for_the_source_and_the_newsroom(source_kind: str) -> None:
    source: KeyIdentity = (
        HybridIdentity.generate() if source_kind == "hybrid" else X25519Identity.generate()
    )
    newsroom = HybridIdentity.generate()
    keys = [source.recipient, newsroom.recipient]
    reply = make_reply("thank you", keys)
    check_reply(reply, [str(k) for k in keys])
    tags = _stanza_tags(reply)
    # A source still on X25519 gets a classical reply the hybrid newsroom key opens too.
    expected = "mlkem768x25519" if source_kind == "hybrid" else "X25519"
    assert tags == [expected, "mlkem768x25519", "tipbox-recipients"]
    for identity in (source, newsroom):
        assert b"thank you" in decrypt_bytes(reply, [identity])


def test_a_malformed_hybrid_stanza_is_refused() -> None:
    source, newsroom = HybridIdentity.generate(), HybridIdentity.generate()
    keys = [str(source.recipient), str(newsroom.recipient)]
    short = Stanza("mlkem768x25519", (b64encode(bytes(1119)),), bytes(32))
    header = encode_header(
        bytes(16), [short, newsroom.recipient.wrap(bytes(16)), declaration(keys)]
    )
    with pytest.raises(ReplyError, match="malformed recipient stanza"):
        check_reply(header + bytes(16 + 1040), keys)
