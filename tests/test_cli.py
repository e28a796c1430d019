"""The tipbox command: round trips, keygen, its error contract, terminals and its imports."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from app import words
from app.cli import COMMANDS, build_parser
from app.cli import main as cli_main
from app.cli.terminal import Progress
from app.crypto import X25519Identity, encrypt_identity, parse_identities, parse_recipients
from app.crypto.keyfile import decrypt_identity, identity_file_text
from tests.conftest import REPO
from tests.helpers import (
    AIR_GAPPED_FORBIDDEN,
    PASSPHRASE,
    TIPBOX,
    assert_cli_error,
    decrypt_bytes,
    encrypt_bytes,
    finish,
    leftovers,
    payload_offset,
    run,
    spawn,
    tipbox,
)
from tests.test_bundle import Newsroom

PLAIN = b"the mayor's office shreds invoices on fridays\n" * 3000  # three chunks


@pytest.fixture
def world(tmp_path: Path) -> X25519Identity:
    """A newsroom in tmp_path: keys, a tip, its ciphertext and damaged copies of it."""
    identity = X25519Identity.generate()
    (tmp_path / "id.txt").write_text(identity_file_text(identity, "2024-05-01"))
    (tmp_path / "other.txt").write_text(str(X25519Identity.generate()) + "\n")
    (tmp_path / "newsroom.pub").write_text(f"# newsroom\n{identity.recipient}\n")
    (tmp_path / "bad.pub").write_text(f"{identity.recipient}\nage1notakey\n")
    (tmp_path / "binary.pub").write_bytes(b"\xff\xfe\x00age")
    (tmp_path / "plain.txt").write_bytes(PLAIN)
    tip = encrypt_bytes(PLAIN, [identity.recipient])
    (tmp_path / "tip.age").write_bytes(tip)
    damaged = bytearray(tip)
    damaged[-5] ^= 1  # in the last chunk: the first two are written out before it fails
    (tmp_path / "tampered.age").write_bytes(bytes(damaged))
    (tmp_path / "truncated.age").write_bytes(tip[: payload_offset(tip) + 65552])
    return identity


@pytest.mark.usefixtures("world")
def test_round_trip_through_files(tmp_path: Path) -> None:
    enc = tipbox("encrypt", "-R", "newsroom.pub", "-o", "out.age", "plain.txt", cwd=tmp_path)
    assert (enc.returncode, enc.stdout, enc.stderr) == (0, b"", b"")
    dec = tipbox("decrypt", "-i", "id.txt", "-o", "out.txt", "out.age", cwd=tmp_path)
    assert (dec.returncode, dec.stdout, dec.stderr) == (0, b"", b"")
    assert (tmp_path / "out.txt").read_bytes() == PLAIN
    assert leftovers(tmp_path) == []


def test_round_trip_through_pipes(tmp_path: Path, world: X25519Identity) -> None:
    second = X25519Identity.generate()
    (tmp_path / "second.txt").write_text(str(second) + "\n")
    recipients = ["-r", str(world.recipient), "-r", str(second.recipient)]
    enc = tipbox("encrypt", *recipients, cwd=tmp_path, stdin=b"from stdin")
    assert (enc.returncode, enc.stderr) == (0, b"")
    for name in ("id.txt", "second.txt"):
        dec = tipbox("decrypt", "-i", name, cwd=tmp_path, stdin=enc.stdout)
        assert (dec.returncode, dec.stdout, dec.stderr) == (0, b"from stdin", b"")


@pytest.mark.usefixtures("world")
def test_armored_round_trip(tmp_path: Path) -> None:
    """-a writes ASCII armor (allowed on a terminal: it is text); decrypt reads it as it is."""
    enc = tipbox("encrypt", "-a", "-R", "newsroom.pub", "-o", "out.txt.age", "plain.txt",
                 cwd=tmp_path)  # fmt: skip
    assert (enc.returncode, enc.stdout, enc.stderr) == (0, b"", b"")
    armored = (tmp_path / "out.txt.age").read_bytes()
    assert armored.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert armored.endswith(b"-----END AGE ENCRYPTED FILE-----\n")
    assert all(len(line) <= 64 for line in armored.splitlines())
    dec = tipbox("decrypt", "-i", "id.txt", cwd=tmp_path, stdin=b"\r\n  " + armored)
    assert (dec.returncode, dec.stdout, dec.stderr) == (0, PLAIN, b"")
    damaged = armored.replace(b"\n", b" \n", 3)
    assert_cli_error(tipbox("decrypt", "-i", "id.txt", cwd=tmp_path, stdin=damaged), "armor")


def test_a_reader_that_stops_early_is_no_error(tmp_path: Path, world: X25519Identity) -> None:
    """`tipbox decrypt item | tar -x`: tar stops before a stored item's padding. Like a filter
    killed by SIGPIPE, tipbox says nothing and exits 141."""
    big = tmp_path / "big.age"
    big.write_bytes(encrypt_bytes(bytes(8 << 20), [world.recipient]))
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdin is not None
    writer = subprocess.run(
        [*TIPBOX, "decrypt", "-i", "id.txt", "big.age"],
        cwd=tmp_path, stdout=reader.stdin, stderr=subprocess.PIPE, timeout=60, check=False,
    )  # fmt: skip
    reader.stdin.close()
    assert reader.stdout is not None
    assert reader.stdout.read() == bytes(10)
    assert reader.wait(timeout=60) == 0
    reader.stdout.close()
    assert (writer.returncode, writer.stderr) == (141, b"")


def test_decrypt_overwrites_output_only_on_success(tmp_path: Path, world: X25519Identity) -> None:
    (tmp_path / "out.txt").write_bytes(b"yesterday's tip")
    bad = tipbox("decrypt", "-i", "id.txt", "-o", "out.txt", "tampered.age", cwd=tmp_path)
    assert_cli_error(bad, "failed authentication")
    assert (tmp_path / "out.txt").read_bytes() == b"yesterday's tip"
    good = tipbox("decrypt", "-i", "id.txt", "-o", "out.txt", "tip.age", cwd=tmp_path)
    assert good.returncode == 0
    assert (tmp_path / "out.txt").read_bytes() == PLAIN


# --- the error contract --------------------------------------------------------------------------

ERRORS = [
    ("missing input", ["encrypt", "-R", "newsroom.pub", "-o", "out.txt", "nope.txt"], "nope.txt"),
    ("missing ciphertext", ["decrypt", "-i", "id.txt", "-o", "out.txt", "nope.age"], "nope.age"),
    ("bad recipient", ["encrypt", "-r", "age1notakey", "plain.txt"], "not a valid age recipient"),
    ("bad recipients file", ["encrypt", "-R", "bad.pub", "plain.txt"], "line 2"),
    ("identity as recipients", ["encrypt", "-R", "id.txt", "plain.txt"], "line 3"),
    ("missing recipients file", ["encrypt", "-R", "nope.pub", "plain.txt"], "nope.pub"),
    ("binary recipients file", ["encrypt", "-R", "binary.pub", "plain.txt"], "binary.pub"),
    ("no recipients", ["encrypt", "-o", "out.txt", "plain.txt"], "no recipient given"),
    ("identity is a folder", ["decrypt", "-i", ".", "tip.age"], "is a directory"),
    ("missing identity", ["decrypt", "-i", "nope.txt", "tip.age"], "nope.txt"),
    ("identity not a key", ["decrypt", "-i", "plain.txt", "tip.age"], "line 1"),
    ("wrong identity", ["decrypt", "-i", "other.txt", "-o", "out.txt", "tip.age"], "no identity"),
    ("tampered", ["decrypt", "-i", "id.txt", "-o", "out.txt", "tampered.age"], "authentication"),
    ("truncated", ["decrypt", "-i", "id.txt", "-o", "out.txt", "truncated.age"], "truncated"),
    ("not age", ["decrypt", "-i", "id.txt", "-o", "out.txt", "plain.txt"], "not a valid age"),
    ("unknown subcommand", ["frobnicate"], "invalid choice"),
    ("no subcommand", [], "required"),
    ("missing -i", ["decrypt", "tip.age"], "-i/--identity"),
    ("unknown option", ["encrypt", "--frobnicate", "plain.txt"], "unrecognized"),
    ("no output dir", ["encrypt", "-R", "newsroom.pub", "-o", "no/out.txt", "plain.txt"], "no/"),
    ("no output dir (decrypt)", ["decrypt", "-i", "id.txt", "-o", "no/out.txt", "tip.age"], "no/"),
]


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(
    ("args", "needle"),
    [pytest.param(a, n, id=i) for i, a, n in ERRORS],
)
def test_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    err = assert_cli_error(tipbox(*args, cwd=tmp_path), needle)
    assert not (tmp_path / "out.txt").exists()
    assert leftovers(tmp_path) == []
    if "tipbox: hint: " in err:
        assert err.count("\n") == 2


def test_hints(tmp_path: Path, world: X25519Identity) -> None:
    assert "tipbox: hint: check that you used the identity" in assert_cli_error(
        tipbox("decrypt", "-i", "other.txt", "tip.age", cwd=tmp_path)
    )
    assert "tipbox: hint: run 'tipbox --help'" in assert_cli_error(tipbox("nope", cwd=tmp_path))


# --- keygen --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "hybrid"),
    [pytest.param((), True, id="hybrid by default"), pytest.param(("--classic",), False)],
)
def test_keygen_without_passphrase(tmp_path: Path, flags: tuple[str, ...], hybrid: bool) -> None:
    proc = tipbox("keygen", "--no-passphrase", "--identity", "k.txt", "--recipient", "k.pub",
                  *flags, cwd=tmp_path)  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, b"")
    [identity] = parse_identities((tmp_path / "k.txt").read_text())
    [recipient] = parse_recipients((tmp_path / "k.pub").read_text())
    assert identity.recipient == recipient
    assert str(identity).startswith("AGE-SECRET-KEY-PQ-1" if hybrid else "AGE-SECRET-KEY-1")
    assert str(recipient).startswith("age1pq1") == hybrid
    out = proc.stdout.decode()
    assert f"recipient: {recipient}\n" in out
    assert f"fingerprint: {' '.join(words.fingerprint(str(recipient).encode()))}\n" in out
    assert str(identity) not in out
    assert stat.S_IMODE((tmp_path / "k.txt").stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", ["newsroom-identity.age", "newsroom.pub"])
def test_keygen_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("precious")
    assert_cli_error(tipbox("keygen", "--no-passphrase", cwd=tmp_path), existing, "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
    assert (tmp_path / existing).read_text() == "precious"
    assert tipbox("keygen", "--no-passphrase", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / existing).read_text() != "precious"


def _keygen(tmp_path: Path, first: str, second: str | None) -> tuple[int, str]:
    child = spawn([*TIPBOX, "keygen"], tmp_path)
    child.expect("Choose a passphrase")
    child.sendline(first)
    if second is not None:
        child.expect("Type it again")
        child.sendline(second)
    return finish(child)


@pytest.mark.slow
def test_keygen_with_passphrase(tmp_path: Path) -> None:
    status, out = _keygen(tmp_path, PASSPHRASE, PASSPHRASE)
    assert status == 0, out
    assert PASSPHRASE not in out  # typed without echo
    data = (tmp_path / "newsroom-identity.age").read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n-> scrypt ")
    [identity] = parse_identities(decrypt_identity(data, PASSPHRASE))
    assert f"recipient: {identity.recipient}" in out


@pytest.mark.parametrize(
    ("first", "second", "needle"),
    [(PASSPHRASE, PASSPHRASE + "!", "differ"), ("short", None, "at least 12")],
)
def test_keygen_bad_passphrase_writes_nothing(
    tmp_path: Path, first: str, second: str | None, needle: str
) -> None:
    status, out = _keygen(tmp_path, first, second)
    assert status == 1
    assert "tipbox: error: " in out
    assert needle in out
    assert "Traceback" not in out
    assert list(tmp_path.iterdir()) == []


# --- terminals: passphrases, binary output, progress ---------------------------------------------


def test_wrong_passphrase(tmp_path: Path, world: X25519Identity) -> None:
    protected = encrypt_identity(identity_file_text(world, "2024-05-01"), PASSPHRASE, 10)
    (tmp_path / "id.age").write_bytes(protected)
    for passphrase, expected in ((PASSPHRASE + "?", 1), (PASSPHRASE, 0)):
        child = spawn([*TIPBOX, "decrypt", "-i", "id.age", "-o", "out.txt", "tip.age"], tmp_path)
        child.expect("Passphrase for id.age: ")
        child.sendline(passphrase)
        status, out = finish(child)
        assert status == expected, out
        assert ("tipbox: error: wrong passphrase" in out) == (expected == 1)
    assert (tmp_path / "out.txt").read_bytes() == PLAIN


def test_passphrase_is_never_read_from_stdin(tmp_path: Path, world: X25519Identity) -> None:
    protected = encrypt_identity(identity_file_text(world, "2024-05-01"), PASSPHRASE, 10)
    (tmp_path / "id.age").write_bytes(protected)
    proc = tipbox("decrypt", "-i", "id.age", "tip.age", cwd=tmp_path, stdin=PASSPHRASE.encode())
    assert_cli_error(proc, "no terminal")


@pytest.mark.usefixtures("world")
def test_binary_output_to_a_terminal_is_refused(tmp_path: Path) -> None:
    child = spawn([*TIPBOX, "encrypt", "-R", "newsroom.pub", "plain.txt"], tmp_path)
    status, out = finish(child)
    assert status == 1
    assert out.splitlines()[0].startswith("tipbox: error: refusing to write binary")
    assert "age-encryption.org" not in out
    child = spawn([*TIPBOX, "decrypt", "-i", "id.txt", "tip.age"], tmp_path)  # text is fine
    assert finish(child)[0] == 0


@pytest.mark.slow
@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_progress_only_on_a_terminal(tmp_path: Path, world: X25519Identity, command: str) -> None:
    big = os.urandom(9 << 20)
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "big.age").write_bytes(encrypt_bytes(big, [world.recipient]))
    args = {"encrypt": ["-R", "newsroom.pub", "big"], "decrypt": ["-i", "id.txt", "big.age"]}
    argv = [command, "-o", "out", *args[command]]
    status, out = finish(spawn([*TIPBOX, *argv], tmp_path))
    assert status == 0, out
    assert re.search(rf"{command}ing \[#* *\] +\d+% \d+ MiB", out)
    assert out.count("100% 9 MiB") == 1  # once, from finish() (decryption counts plaintext)
    piped = tipbox(*argv, cwd=tmp_path)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, b"", b"")
    result = (tmp_path / "out").read_bytes()
    assert (decrypt_bytes(result, [world]) if command == "encrypt" else result) == big


# --- the air-gapped commands stay small ----------------------------------------------------------

PROBE = """
import json, sys
from app.cli import main
status = main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)))
sys.exit(status)
"""
FORBIDDEN = AIR_GAPPED_FORBIDDEN
AIR_GAPPED = [
    ["encrypt", "-R", "newsroom.pub", "-o", "x.age", "plain.txt"],
    ["decrypt", "-i", "id.txt", "-o", "x.txt", "tip.age"],
    ["keygen", "--no-passphrase", "--identity", "k.txt", "--recipient", "k.pub"],
    ["codename"],
    ["fingerprint", "-R", "newsroom.pub"],
]


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize("args", AIR_GAPPED, ids=[a[0] for a in AIR_GAPPED])
def test_air_gapped_imports(tmp_path: Path, args: list[str]) -> None:
    proc = run([sys.executable, "-c", PROBE, *args], tmp_path)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout.decode().splitlines()[-1])
    assert "app.cli" in modules  # the probe really ran the command
    loaded = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert loaded == []


# --- help, version, hints and progress (issue 13) ----------------------------------------------


def _command_parsers(command: str) -> list[argparse.ArgumentParser]:
    """The parser of ``tipbox COMMAND`` and of each of its own sub-commands."""
    parser = build_parser([command])
    found = [_subparsers(parser)[command]]
    for p in found:  # grows while it is walked: sub-commands of sub-commands
        found += _subparsers(p).values()
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_has_a_sentence_and_every_command_an_example(command: str) -> None:
    parsers = _command_parsers(command)
    main = parsers[0]
    assert main.description
    assert main.description.endswith(".")
    assert main.epilog
    assert f"tipbox {command}" in main.epilog
    for p in parsers:
        for action in p._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert (action.help or "").strip(), (p.prog, action.dest)


def test_subcommand_help_on_the_terminal(tmp_path: Path) -> None:
    proc = tipbox("open", "--help", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, b"")
    out = proc.stdout.decode()
    assert "example:" in out
    assert "tipbox open bundle.tar -i newsroom-identity.age --out tips" in out


def _pyproject_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def test_version(tmp_path: Path) -> None:
    proc = tipbox("--version", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"tipbox {_pyproject_version()}\n".encode(),
        b"",
    )


def test_version_without_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout run with ``python -m app.cli`` and no installed metadata reads pyproject.toml."""

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    from app.cli import version  # noqa: PLC0415 - after the patch

    assert version() == _pyproject_version()


def test_decrypt_given_a_bundle_points_to_open(tmp_path: Path) -> None:
    newsroom = Newsroom(tmp_path)
    newsroom.submit("a tip")
    newsroom.bundle(tmp_path / "b.tar")
    proc = tipbox("decrypt", "-i", newsroom.identity_file, "-o", "out.txt", "b.tar", cwd=tmp_path)
    err = assert_cli_error(proc, "b.tar is a bundle, not a single age file")
    assert "tipbox: hint: use 'tipbox open b.tar -i IDENTITY --out DIR'" in err
    assert err.count("\n") == 2
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.usefixtures("world")
def test_open_given_an_item_points_to_decrypt(tmp_path: Path) -> None:
    proc = tipbox("open", "tip.age", "-i", "id.txt", "--out", "out", cwd=tmp_path)
    err = assert_cli_error(proc, "tip.age is a single age file, not a bundle")
    assert "tipbox: hint: use 'tipbox decrypt -i IDENTITY -o OUT tip.age'" in err
    assert err.count("\n") == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["decrypt", "open"])
@pytest.mark.parametrize("given", ["file", "key"])
def test_an_identity_option_given_a_public_key_says_so(
    tmp_path: Path, world: X25519Identity, command: str, given: str
) -> None:
    key = "newsroom.pub" if given == "file" else str(world.recipient)
    args = {"decrypt": ["-o", "out", "tip.age"], "open": ["plain.txt", "--out", "out"]}[command]
    err = assert_cli_error(tipbox(command, "-i", key, *args, cwd=tmp_path))
    assert err.splitlines() == [
        f"tipbox: error: {key} is a public key (a recipient), not an identity",
        "tipbox: hint: -i takes the secret identity file (newsroom-identity.age from "
        "'tipbox keygen'); the public key is for encrypting",
    ]
    assert not (tmp_path / "out").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("end", [1.0, 0.97])  # encryption counts its whole input; decryption less
def test_progress_prints_100_percent_once_with_a_rate(
    monkeypatch: pytest.MonkeyPatch, end: float
) -> None:
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    clock = iter(range(100))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    total = 64 << 20
    bar = Progress("decrypting", total)
    for step in range(1, 9):
        bar(int(total * end * step / 8))
    bar(int(total * end))  # the last block is reported twice by some writers
    bar.finish()
    shown = screen.getvalue()
    assert shown.count("100%") == 1, shown
    assert shown.endswith("\n")
    assert re.search(r"\d+(\.\d)? MiB/s", shown), shown


def test_a_server_command_without_the_server_libraries_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As on the air-gapped kit (tests/test_airgap_kit.py runs the real one)."""
    real = importlib.import_module

    def without_flask(name: str, package: str | None = None) -> object:
        if name == "app.cli.server":
            raise ModuleNotFoundError("No module named 'flask'", name="flask")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_flask)
    assert cli_main(["status"]) == 1
    assert capsys.readouterr().err == (
        "tipbox: error: 'tipbox status' runs on the server, not from the air-gapped kit "
        "(its library 'flask' is not installed here)\n"
    )


def test_the_dispatcher_and_its_help_import_no_web_stack_or_database() -> None:
    """``tipbox --help`` lists the server commands without loading their family's libraries."""
    code = (
        "import contextlib, io, sys, app.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    app.cli.main(['--help'])\n"
        "print(sorted(m for m in ('flask', 'sqlite3', 'argon2', 'stem', 'app.cli.users')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.usefixtures("world")
def test_decrypt_reads_a_pipe_given_by_name(tmp_path: Path) -> None:
    """Telling a bundle from an item must not read a pipe (the bytes read would be lost)."""
    script = f"exec {' '.join(TIPBOX)} decrypt -i id.txt <(cat tip.age)"
    proc = run(["bash", "-c", script], tmp_path)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert proc.stdout == PLAIN
