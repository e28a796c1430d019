"""``tipbox backup restore-key`` and ``reencrypt`` (app/cli/backup.py): a backup moves from the
newsroom's key to a new server's one-time key without the newsroom identity leaving the
air-gapped machine. The whole restore, with ``make restore``, runs in tests/test_deploy.py."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from app.crypto import X25519Identity, parse_identities
from app.crypto.keyfile import identity_file_text
from app.errors import NoIdentityMatchError
from tests.helpers import (
    AIR_GAPPED_FORBIDDEN,
    assert_cli_error,
    decrypt_bytes,
    encrypt_bytes,
    leftovers,
    run,
    tipbox,
)

BACKUP = b"a tar of the server, pretend\n" * 10_000  # several chunks


@pytest.fixture
def newsroom(tmp_path: Path) -> X25519Identity:
    """The newsroom identity on the air-gapped machine, and a backup encrypted to it."""
    identity = X25519Identity.generate()
    (tmp_path / "newsroom.txt").write_text(identity_file_text(identity, "2025-01-01"))
    (tmp_path / "backup.tar.age").write_bytes(encrypt_bytes(BACKUP, [identity.recipient]))
    return identity


def _restore_key(tmp_path: Path) -> tuple[X25519Identity, str]:
    made = tipbox("backup", "restore-key", "--identity", "restore.txt", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (key,) = parse_identities((tmp_path / "restore.txt").read_text())
    return key, made.stdout.decode()


def test_restore_key_is_made_once_and_shown_again(tmp_path: Path) -> None:
    key, out = _restore_key(tmp_path)
    assert f"restore recipient: {key.recipient}\n" in out
    assert out.splitlines()[1].startswith("fingerprint: ")
    assert stat.S_IMODE((tmp_path / "restore.txt").stat().st_mode) == 0o600
    again, out_again = _restore_key(tmp_path)
    assert str(again) == str(key)  # the recipient a backup went to stays valid
    assert out_again == out


def test_restore_key_refuses_a_file_that_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "restore.txt").write_text("notes\n")
    proc = tipbox("backup", "restore-key", "--identity", "restore.txt", cwd=tmp_path)
    assert_cli_error(proc, "restore.txt")
    assert (tmp_path / "restore.txt").read_text() == "notes\n"


def test_reencrypt_moves_the_backup_to_the_restore_key(
    tmp_path: Path, newsroom: X25519Identity
) -> None:
    key, _ = _restore_key(tmp_path)
    args = ["-i", "newsroom.txt", "-r", str(key.recipient), "-o", "for-server.age"]
    proc = tipbox("backup", "reencrypt", *args, "backup.tar.age", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    moved = (tmp_path / "for-server.age").read_bytes()
    assert decrypt_bytes(moved, [key]) == BACKUP
    with pytest.raises(NoIdentityMatchError):  # the newsroom key no longer opens this copy
        decrypt_bytes(moved, [newsroom])
    piped = tipbox(
        "backup", "reencrypt", "-i", "newsroom.txt", "-r", str(key.recipient),
        cwd=tmp_path, stdin=(tmp_path / "backup.tar.age").read_bytes(),
    )  # fmt: skip
    assert decrypt_bytes(piped.stdout, [key]) == BACKUP


@pytest.mark.usefixtures("newsroom")
@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("wrong identity", "no identity"),
        ("damaged", "damaged"),
        ("own key", "the newsroom's own key"),
        ("no recipient", "no recipient given"),
    ],
)
def test_reencrypt_errors_leave_no_file(tmp_path: Path, case: str, needle: str) -> None:
    key, _ = _restore_key(tmp_path)
    identity, recipient = "newsroom.txt", ["-r", str(key.recipient)]
    if case == "wrong identity":
        identity = "other.txt"
        (tmp_path / identity).write_text(str(X25519Identity.generate()) + "\n")
    elif case == "damaged":
        data = bytearray((tmp_path / "backup.tar.age").read_bytes())
        data[-10] ^= 1
        (tmp_path / "backup.tar.age").write_bytes(bytes(data))
    elif case == "own key":
        own = parse_identities((tmp_path / "newsroom.txt").read_text())[0].recipient
        recipient = ["-r", str(own)]
    elif case == "no recipient":
        recipient = []
    args = ["-i", identity, *recipient, "-o", "for-server.age", "backup.tar.age"]
    err = assert_cli_error(tipbox("backup", "reencrypt", *args, cwd=tmp_path))
    assert needle in err.lower()
    assert not (tmp_path / "for-server.age").exists()
    assert leftovers(tmp_path) == []


PROBE = (
    "import json,sys; from app.cli import main; c = main(sys.argv[1:]); "
    "print(json.dumps(sorted(sys.modules))); sys.exit(c)"
)


@pytest.mark.usefixtures("newsroom")
def test_reencrypt_is_an_air_gapped_command(tmp_path: Path) -> None:
    key, _ = _restore_key(tmp_path)
    args = ["backup", "reencrypt", "-i", "newsroom.txt", "-r", str(key.recipient)]
    proc = run([sys.executable, "-c", PROBE, *args, "-o", "x.age", "backup.tar.age"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout.decode().splitlines()[-1])
    assert "app.cli.backup" in modules
    forbidden = AIR_GAPPED_FORBIDDEN
    assert [m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)] == []
