"""app.reply with post-quantum keys: replies to hybrid keys, and to a source still on X25519."""

from __future__ import annotations

import pytest

from app.crypto import X25519Identity
from app.crypto.header import Stanza, b64encode, encode_header
from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import KeyIdentity
from app.errors import ReplyError
from app.reply import check_reply, declaration, make_reply
from tests.helpers import decrypt_bytes


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
