"""Rotating the newsroom key from classical (X25519) to post-quantum (hybrid), step by step as the
README's "Rotating the newsroom key" says: old items still open with the old identity, new ones
are hybrid, and keys/ never holds both kinds at once (the apps refuse to start on a mix).

The keys are made with the real ``tipbox keygen``; submissions go through the real source app;
the bundle is what the journalist app streams; it is opened with the real ``tipbox open``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flask import Flask

from app import words
from app.bundle import write_bundle
from app.config import Config
from app.crypto import derive_source_keys
from app.errors import ConfigError
from app.journalist.inbox import Inbox
from tests.fixtures_app import TEST_KDF, login, make_app, new_source, state_of, submit
from tests.helpers import assert_cli_error, tipbox


def _keygen(cwd: Path, name: str, *flags: str) -> None:
    proc = tipbox("keygen", "--no-passphrase", "--identity", f"{name}.txt",
                  "--recipient", f"{name}.pub", *flags, cwd=cwd)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def _server(config: Config, keys: Path) -> Flask:
    """The source app over the same data folder, started again on ``keys`` (a restart)."""
    return make_app(config, keys_dir=keys)


def _stanzas(item_path: Path) -> list[str]:
    head = item_path.read_bytes().split(b"\n---")[0].decode("ascii")
    return [line.split()[1] for line in head.splitlines() if line.startswith("-> ")]


def _bundle(app: Flask, path: Path) -> None:
    store = state_of(app).store
    entries, _ = Inbox(store.database).bundle_sources([s.id for s in store.list_sources()])
    recipients = [str(r) for r in store.recipients]
    with path.open("wb") as out:
        write_bundle(out, entries, lambda i: (store.items / i.id).open("rb"), recipients=recipients)


def test_rotation_from_a_classical_to_a_hybrid_key(config: Config, tmp_path: Path) -> None:
    airgap, keys = tmp_path / "airgap", tmp_path / "server-keys"
    airgap.mkdir()
    keys.mkdir()
    # Before: a newsroom on a classical key (tipbox keygen --classic, or an older Tipbox).
    _keygen(airgap, "old", "--classic")
    shutil.copy(airgap / "old.pub", keys / "newsroom.pub")
    before = _server(config, keys)
    client = before.test_client()
    codename = new_source(client)
    submit(client, "sent before the rotation")
    store = state_of(before).store
    [source] = store.list_sources()
    old_reply = store.add_reply_text(source.id, "a reply before the rotation")

    # 1. On the air-gapped machine: a new (hybrid) key. 2. On the server: it replaces the old
    # recipient in keys/ (both at once would be refused), and the apps restart.
    _keygen(airgap, "new")
    shutil.copy(airgap / "new.pub", keys / "new.pub")
    with pytest.raises(ConfigError, match="mixes post-quantum"):
        _server(config, keys)
    (keys / "newsroom.pub").unlink()
    after = _server(config, keys)
    client = after.test_client()
    assert login(client, codename).status_code == 303  # the source gets its hybrid reply key
    submit(client, "sent after the rotation")
    store = state_of(after).store
    new_reply = store.add_reply_text(source.id, "a reply after the rotation")

    items = store.items_of(source.id)  # newest first
    assert [i.kind for i in items] == ["reply", "message", "reply", "message"]
    new_items, old_items = items[:2], items[2:]
    assert [i.id for i in (new_reply, old_reply)] == [items[0].id, items[2].id]
    for item in new_items:
        assert item.post_quantum
        assert set(_stanzas(store.path_of(item))) == {"mlkem768x25519"}
    for item in old_items:  # (the old reply also has a stanza for the source's hybrid key)
        assert not item.post_quantum
        assert "X25519" in _stanzas(store.path_of(item))

    # 3. Old items open with the old identity only, new ones with the new identity only.
    for item, opens, refuses in [*((i, "old", "new") for i in old_items),
                                 *((i, "new", "old") for i in new_items)]:  # fmt: skip
        shutil.copy(store.path_of(item), airgap / "item.age")
        assert tipbox("decrypt", "-i", f"{opens}.txt", "item.age", cwd=airgap).returncode == 0
        assert_cli_error(
            tipbox("decrypt", "-i", f"{refuses}.txt", "item.age", cwd=airgap), "no identity"
        )

    # 4. A bundle of everything opens in one run with both identities.
    _bundle(after, airgap / "b.tar")
    proc = tipbox("open", "b.tar", "-i", "old.txt", "-i", "new.txt", "--out", "out", cwd=airgap)
    assert proc.returncode == 0, proc.stderr
    folder = airgap / "out" / store.list_sources()[0].designation.replace(" ", "-")
    texts = sorted(p.read_text("utf-8") for p in folder.rglob("*.txt"))
    assert texts == [
        "a reply after the rotation",
        "a reply before the rotation",
        "sent after the rotation",
        "sent before the rotation",
    ]
    pepper = state_of(after).pepper
    now = derive_source_keys(words.normalise_codename(codename), pepper, TEST_KDF)
    upgraded = store.source(source.id)
    assert upgraded is not None
    assert upgraded.reply_recipient == str(now.reply_identity.recipient)
