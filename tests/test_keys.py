"""app.server.newsroom.load_recipients: the server's keys/ folder holds only public recipients."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from app.crypto import X25519Identity, encrypt_identity
from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import KeyRecipient
from app.errors import ConfigError
from app.server.newsroom import classical_warning, load_recipients
from tests.helpers import encrypt_bytes

# Fixed keys (the same in every xdist worker), so each row reads as the file a newsroom copies.
IDENTITIES = [X25519Identity(bytes([n]) * 32) for n in (1, 2, 3)]
SECRET = str(IDENTITIES[0])
R0, R1, R2 = (str(i.recipient) for i in IDENTITIES)
HYBRID = [HybridIdentity(bytes([n]) * 32) for n in (1, 2)]
PQ_SECRET = str(HYBRID[0])
P0, P1 = (str(i.recipient) for i in HYBRID)
README = "# keys\n\nCopy newsroom.pub here. Never an AGE-SECRET-KEY-1... line.\n"

VALID = [
    pytest.param({"newsroom.pub": f"{R0}\n"}, [R0], id="one file"),
    pytest.param(
        {"newsroom.pub": f"# created 2024-05-01\n\n  {R0}  \n# end\n"}, [R0], id="comments"
    ),
    pytest.param({"team.pub": f"{R0}\n{R1}\n{R2}\n"}, [R0, R1, R2], id="several per file"),
    pytest.param(
        {"a.pub": f"{R0}\n{R1}\n", "b.pub": f"{R1}\n{R0}\n{R2}\n"}, [R0, R1, R2], id="deduplicated"
    ),
    pytest.param(
        {"a.pub": f"{R0}\n{R0}\n"},
        [R0],
        id="same line twice",
    ),
    pytest.param({"README.md": README, "newsroom.pub": f"{R1}\n"}, [R1], id="readme ignored"),
    pytest.param({".gitkeep": "", "newsroom.pub": f"{R1}\n"}, [R1], id="gitkeep ignored"),
    pytest.param({"desk/news.pub": f"{R2}\n", "newsroom.pub": f"{R0}\n"}, [R2, R0], id="subfolder"),
    pytest.param({"newsroom.pub": f"{R0}\r\n{R1}\r\n"}, [R0, R1], id="crlf"),
    pytest.param({"newsroom.pub": f"{P0}\n"}, [P0], id="hybrid"),
    pytest.param({"a.pub": f"{P0}\n", "b.pub": f"{P1}\n{P0}\n"}, [P0, P1], id="hybrid, several"),
]


def _write(root: Path, files: dict[str, str | bytes]) -> Path:
    keys = root / "keys"
    keys.mkdir()
    for name, content in files.items():
        path = keys / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)
    return keys


@pytest.mark.parametrize(
    ("files", "expected"),
    VALID,
)
def test_valid_folders(tmp_path: Path, files: dict[str, str | bytes], expected: list[str]) -> None:
    assert [str(r) for r in load_recipients(_write(tmp_path, files))] == expected


SECRET_MESSAGE = "contains a secret key"


def _embedded(name: str, text: str) -> object:
    return pytest.param({"newsroom.pub": f"{R0}\n# {text}\n"}, SECRET_MESSAGE, id=name)


INVALID = [
    pytest.param({}, "no newsroom recipient", id="empty folder"),
    pytest.param({"README.md": README}, "no newsroom recipient", id="only a readme"),
    pytest.param({"id.pub": f"{SECRET}\n"}, SECRET_MESSAGE, id="secret key"),
    pytest.param({"id.pub": f"{SECRET.lower()}\n"}, SECRET_MESSAGE, id="secret key lowercase"),
    pytest.param({"id.txt": f"{SECRET}\n"}, SECRET_MESSAGE, id="secret key not .pub"),
    pytest.param(
        {"README.md": f"{SECRET}\n", "newsroom.pub": f"{R0}\n"},
        SECRET_MESSAGE,
        id="secret key in readme",
    ),
    pytest.param({"a.pub": f"{R0}\n", "b.pub": f"{R1} {SECRET}\n"}, SECRET_MESSAGE, id="mixed"),
    _embedded("in a comment", f"backup: {SECRET}"),
    _embedded("between commas", f"old,{SECRET.lower()},gone"),
    _embedded("after KEY=", f"KEY={SECRET}"),
    _embedded("quoted", f'"{SECRET}"'),
    _embedded("in a sentence", f"the key was {SECRET}."),
    pytest.param({"newsroom.pub": "age-encrypted"}, "age-encrypted file", id="age file .pub"),
    pytest.param({"identity.age": "age-encrypted"}, "age-encrypted file", id="protected identity"),
    pytest.param({"newsroom.txt": f"{R0}\n"}, "not a recipient file", id="not .pub"),
    pytest.param({"newsroom.pub": f"{R0}\n", "notes": "hi"}, "not a recipient file", id="stray"),
    pytest.param({"newsroom.pub": f"# ok\n{R0}\nage1nope\n"}, "line 3", id="malformed line"),
    pytest.param({"newsroom.pub": f"{R0.upper()}\n"}, "line 1", id="uppercase recipient"),
    pytest.param({"newsroom.pub": f"{R0} {R1}\n"}, "line 1", id="two on one line"),
    pytest.param({"newsroom.pub": "# just a comment\n"}, "no recipient found", id="no key"),
    pytest.param({"id.pub": f"{PQ_SECRET}\n"}, SECRET_MESSAGE, id="hybrid secret key"),
    _embedded("hybrid, after KEY=", f"KEY={PQ_SECRET.lower()}"),
    pytest.param(
        {"newsroom.pub": f"{P0}\n", "old.pub": f"{R0}\n"},
        "mixes post-quantum",
        id="hybrid and classical mixed",
    ),
    pytest.param({"newsroom.pub": b"\xff\xfe" + R0.encode()}, "newsroom.pub", id="not utf-8"),
]


@pytest.mark.parametrize(("files", "message"), INVALID)
def test_invalid_folders(tmp_path: Path, files: dict[str, str | bytes], message: str) -> None:
    files = {
        name: encrypt_identity(f"{SECRET}\n", "a long passphrase", 2)
        if content == "age-encrypted"
        else content
        for name, content in files.items()
    }
    with pytest.raises(ConfigError) as caught:
        load_recipients(_write(tmp_path, files))
    assert message in caught.value.message
    if message == SECRET_MESSAGE:
        assert caught.value.hint
        assert "compromised" in caught.value.hint


def test_age_encrypted_message_file(tmp_path: Path) -> None:
    """Any age file, not just a protected identity, is refused."""
    data = encrypt_bytes(b"a stored tip", [IDENTITIES[1].recipient])
    with pytest.raises(ConfigError, match="age-encrypted"):
        load_recipients(_write(tmp_path, {"tip.pub": data}))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipients(tmp_path / "keys")


def test_keys_folder_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(f"{R0}\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipients(tmp_path / "keys")


def test_classical_keys_are_named() -> None:
    """The start-up log and tipbox status say it plainly when a newsroom key is classical."""
    hybrid = load_recipients_of({"newsroom.pub": f"{P0}\n{P1}\n"})
    assert classical_warning(hybrid) is None
    warning = classical_warning(load_recipients_of({"newsroom.pub": f"{R0}\n{R1}\n"}))
    assert warning is not None
    assert warning.startswith("2 of 2 newsroom recipients are classical (X25519")


def load_recipients_of(files: dict[str, str | bytes]) -> list[KeyRecipient]:
    with tempfile.TemporaryDirectory() as root:
        return load_recipients(_write(Path(root), files))
