"""app.reply: the reply format, and the server's check of a reply before it is stored."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import pytest

from app.crypto import ScryptRecipient, X25519Identity, X25519Recipient, encrypt
from app.crypto.header import Stanza
from app.errors import ReplyError
from app.reply import MAX_FILE_BYTES, check_reply, declaration, make_reply
from tests.helpers import encrypt_bytes

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
