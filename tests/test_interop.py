"""Interoperability with Debian's age: each side reads what the other writes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.crypto import ScryptIdentity, ScryptRecipient, X25519Identity, parse_identities
from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import identity_file_text
from app.errors import TamperedChunkError
from tests.helpers import (
    PASSPHRASE,
    TIPBOX,
    age_keygen,
    decrypt_bytes,
    encrypt_bytes,
    finish,
    payload_offset,
    run,
    spawn,
    tipbox,
)

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="Debian's age is required")

C = 64 * 1024
SIZES = [
    pytest.param(0, id="empty"),
    pytest.param(1, id="1 byte"),
    pytest.param(C, id="64 KiB"),
    pytest.param(C + 1, id="64 KiB + 1"),
    pytest.param(10 << 20, id="10 MiB", marks=pytest.mark.slow),
]


def _age_identities(tmp_path: Path, count: int) -> list[tuple[Path, str]]:
    """``count`` identity files written by age-keygen, with their recipients."""
    keys = []
    for n in range(count):
        path = tmp_path / f"age-key-{n}.txt"
        keys.append((path, age_keygen(path)))
    return keys


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("count", [1, 3])
def test_age_decrypts_ours(tmp_path: Path, size: int, count: int) -> None:
    keys = _age_identities(tmp_path, count)
    data = os.urandom(size)
    recipients = [parse_identities(path.read_text())[0].recipient for path, _ in keys]
    assert [str(r) for r in recipients] == [r for _, r in keys]
    (tmp_path / "tip.age").write_bytes(encrypt_bytes(data, recipients))
    for path, _ in keys:  # each recipient alone (to stdout: age -o creates nothing when empty)
        proc = run(["age", "-d", "-i", path, "tip.age"], tmp_path)
        assert (proc.returncode, proc.stderr) == (0, b"")
        assert proc.stdout == data


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("count", [1, 3])
def test_we_decrypt_age(tmp_path: Path, size: int, count: int) -> None:
    keys = _age_identities(tmp_path, count)
    data = os.urandom(size)
    (tmp_path / "plain").write_bytes(data)
    args = [arg for _, recipient in keys for arg in ("-r", recipient)]
    proc = run(["age", *args, "-o", "tip.age", "plain"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    ciphertext = (tmp_path / "tip.age").read_bytes()
    assert ciphertext.count(b"\n-> X25519 ") == count
    for path, _ in keys:
        assert decrypt_bytes(ciphertext, parse_identities(path.read_text())) == data
    if count > 1:  # and through the command, once per size
        cli = tipbox("decrypt", "-i", keys[-1][0], cwd=tmp_path, stdin=ciphertext)
        assert (cli.returncode, cli.stdout, cli.stderr) == (0, data, b"")


def test_age_and_we_agree_on_tampering(tmp_path: Path) -> None:
    [(key, recipient)] = _age_identities(tmp_path, 1)
    (tmp_path / "plain").write_bytes(os.urandom(3 * C))
    assert run(["age", "-r", recipient, "-o", "tip.age", "plain"], tmp_path).returncode == 0
    damaged = bytearray((tmp_path / "tip.age").read_bytes())
    damaged[payload_offset(bytes(damaged)) + C + 100] ^= 1
    (tmp_path / "bad.age").write_bytes(bytes(damaged))
    assert run(["age", "-d", "-i", key, "-o", "out", "bad.age"], tmp_path).returncode != 0
    with pytest.raises(TamperedChunkError):
        decrypt_bytes(bytes(damaged), parse_identities(key.read_text()))


@pytest.mark.slow  # scrypt at age's cost, twice
def test_age_opens_identity_from_tipbox_keygen(tmp_path: Path) -> None:
    # --classic: Debian's age 1.1.1 reads no hybrid key (tests/test_interop_typage.py and the
    # vectors cover those); what is checked here is the passphrase-protected identity file.
    child = spawn([*TIPBOX, "keygen", "--classic"], tmp_path)
    for prompt in ("Choose a passphrase", "Type it again"):
        child.expect(prompt)
        child.sendline(PASSPHRASE)
    status, out = finish(child)
    assert status == 0, out
    proc = tipbox("encrypt", "-R", "newsroom.pub", "-o", "tip.age", cwd=tmp_path, stdin=b"hello")
    assert proc.returncode == 0, proc.stderr
    child = spawn(["age", "-d", "-i", "newsroom-identity.age", "tip.age"], tmp_path)
    child.expect("passphrase")
    child.sendline(PASSPHRASE)
    status, out = finish(child)
    assert status == 0, out
    assert out.strip().endswith("hello")
    assert PASSPHRASE not in out


@pytest.mark.slow  # scrypt at age's cost, twice
def test_tipbox_opens_identity_from_age_p(tmp_path: Path) -> None:
    [(key, _)] = _age_identities(tmp_path, 1)
    child = spawn(["age", "-p", "-o", "key.age", key], tmp_path)
    for prompt in ("Enter passphrase", "Confirm passphrase"):
        child.expect(prompt)
        child.sendline(PASSPHRASE)
    assert finish(child)[0] == 0
    assert (tmp_path / "key.age").read_bytes().startswith(b"age-encryption.org/v1\n-> scrypt ")
    identity = parse_identities(key.read_text())[0]
    (tmp_path / "tip.age").write_bytes(encrypt_bytes(b"for the desk", [identity.recipient]))
    child = spawn([*TIPBOX, "decrypt", "-i", "key.age", "-o", "out", "tip.age"], tmp_path)
    child.expect("Passphrase for key.age: ")
    child.sendline(PASSPHRASE)
    status, out = finish(child)
    assert status == 0, out
    assert (tmp_path / "out").read_bytes() == b"for the desk"


@pytest.mark.slow  # scrypt at age's cost, twice
def test_passphrase_files_both_ways(tmp_path: Path) -> None:
    """Our scrypt stanza opens in age, and age's opens with ScryptIdentity."""
    identity_text = identity_file_text(X25519Identity.generate(), "2024-05-01")
    (tmp_path / "ours.age").write_bytes(
        encrypt_bytes(identity_text.encode(), [ScryptRecipient(PASSPHRASE, 10)])
    )
    child = spawn(["age", "-d", "-o", "out", "ours.age"], tmp_path)
    child.expect("passphrase")
    child.sendline(PASSPHRASE)
    assert finish(child)[0] == 0
    assert (tmp_path / "out").read_text() == identity_text
    child = spawn(["age", "-p", "-o", "theirs.age", "out"], tmp_path)
    for prompt in ("Enter passphrase", "Confirm passphrase"):
        child.expect(prompt)
        child.sendline(PASSPHRASE)
    assert finish(child)[0] == 0
    theirs = (tmp_path / "theirs.age").read_bytes()
    assert decrypt_bytes(theirs, [ScryptIdentity(PASSPHRASE)]).decode() == identity_text


def test_armored_files_both_ways(tmp_path: Path) -> None:
    """age -a's armor opens with tipbox decrypt, and tipbox encrypt -a's with age -d."""
    [(key, recipient)] = _age_identities(tmp_path, 1)
    data = os.urandom(3 * C + 5)
    (tmp_path / "plain").write_bytes(data)
    assert (
        run(["age", "-a", "-r", recipient, "-o", "theirs.age", "plain"], tmp_path).returncode == 0
    )
    assert (tmp_path / "theirs.age").read_bytes().startswith(b"-----BEGIN AGE ENCRYPTED FILE")
    ours = tipbox("decrypt", "-i", key, "theirs.age", cwd=tmp_path)
    assert (ours.returncode, ours.stdout, ours.stderr) == (0, data, b"")
    enc = tipbox("encrypt", "-a", "-r", recipient, "-o", "ours.age", "plain", cwd=tmp_path)
    assert enc.returncode == 0, enc.stderr
    proc = run(["age", "-d", "-i", key, "ours.age"], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, data, b"")


def test_debian_age_cannot_read_hybrid_files(tmp_path: Path) -> None:
    """What the README says: age before 1.3 (Debian 12 has 1.1.1) cannot open a hybrid file."""
    identity = HybridIdentity.generate()
    (tmp_path / "id.txt").write_text(f"{identity}\n")
    (tmp_path / "tip.age").write_bytes(encrypt_bytes(b"tip", [identity.recipient]))
    version = run(["age", "--version"], tmp_path).stdout.decode().strip()
    proc = run(["age", "-d", "-i", "id.txt", "tip.age"], tmp_path)
    if version.startswith(("v1.0", "v1.1", "v1.2", "1.0", "1.1", "1.2")):
        assert proc.returncode != 0
    else:  # a newer age on this machine: it must read it
        assert (proc.returncode, proc.stdout) == (0, b"tip"), proc.stderr
