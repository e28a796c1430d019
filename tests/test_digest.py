"""The daily digest (app/server/digest.py): real gpg keys, a real SMTP server on loopback
(aiosmtpd), a real store, and the ``tipbox digest`` command run as a process."""

from __future__ import annotations

import contextlib
import email
import email.policy
import ipaddress
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.crypto import X25519Identity
from app.db import migrated
from app.errors import ConfigError, DigestError
from app.server import digest, digest_config, mail, openpgp
from app.server.store import Store

REPO = Path(__file__).resolve().parent.parent
GPG = "/usr/bin/gpg"
TIMEOUT = 60
NOW = datetime(2026, 12, 3, 0, 15, tzinfo=UTC)
UNITS = ["tipbox-digest.service", "tipbox-digest.timer"]
ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
MAX_EXPOSURE = 1.0  # 0.9: the apps score 0.2, the digest has a network (the relay only)


@dataclass
class Handler:
    """An SMTP server's DATA handler: refuses the first ``refuse`` messages, keeps the rest."""

    refuse: int = 0
    received: list[Any] = field(default_factory=list)
    refused: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.refused < self.refuse:
            self.refused += 1
            return "550 5.7.1 relaying denied"
        self.received.append(envelope)
        return "250 OK"


@contextlib.contextmanager
def relay(handler: Handler) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 (a free port); yields the port, stops it after."""
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def free_port() -> int:
    """A loopback port where nothing listens (bound by the kernel, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Recipient:
    """A journalist with a gpg key: the home that holds the secret key, the address."""

    home: Path
    address: str

    def decrypt(self, armored: str) -> bytes:
        run = subprocess.run(
            [GPG, "--homedir", str(self.home), "--batch", "--decrypt"],
            input=armored.encode(),
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
        return run.stdout


@pytest.fixture(scope="module")
def journalists() -> Iterator[list[Recipient]]:
    """Two throwaway gpg keys, made with gpg itself (no passphrase) in short-lived homes."""
    made: list[Recipient] = []
    try:
        for name in ("alice", "bob"):
            home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))  # short: agent socket path
            address = f"{name}@example.org"
            gpg(home, "--passphrase", "", "--quick-gen-key", address, "future-default")
            made.append(Recipient(home, address))
        yield made
    finally:
        for recipient in made:
            subprocess.run(
                ["gpgconf", "--homedir", str(recipient.home), "--kill", "gpg-agent"],
                check=False,
                timeout=TIMEOUT,
            )
            shutil.rmtree(recipient.home)


def gpg(home: Path, *args: str) -> bytes:
    run = subprocess.run(
        [GPG, "--homedir", str(home), "--batch", *args],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    return run.stdout


def keys_dir(tmp_path: Path, recipients: list[Recipient]) -> Path:
    """The digest's recipients folder: one armored public key per address."""
    folder = tmp_path / "digest-keys"
    folder.mkdir(exist_ok=True)
    for r in recipients:
        (folder / f"{r.address}.asc").write_bytes(gpg(r.home, "--armor", "--export", r.address))
    return folder


def settings(
    tmp_path: Path, port: int, recipients: list[Recipient], **extra: str
) -> dict[str, str]:
    return {
        "TIPBOX_DATA_DIR": str(tmp_path / "data"),
        "TIPBOX_DIGEST_RELAY": "127.0.0.1",
        "TIPBOX_DIGEST_PORT": str(port),
        "TIPBOX_DIGEST_TLS": "none",
        "TIPBOX_DIGEST_RECIPIENTS": str(keys_dir(tmp_path, recipients)),
        "TIPBOX_DIGEST_FROM": "tipbox@example.org",
        "TIPBOX_DIGEST_RETRY_SECONDS": "0",
        **extra,
    }


def store_with(tmp_path: Path, days: list[str]) -> Store:
    """A real store whose messages were received on ``days`` (the day rewritten in SQL: the
    store only ever writes today's date)."""
    store = Store(migrated(tmp_path / "data"), [X25519Identity.generate().recipient])
    for day in days:
        reply = str(X25519Identity.generate().recipient)
        (item,) = store.commit(os.urandom(32).hex(), reply, [store.add_message("a tip")])
        with contextlib.closing(sqlite3.connect(store.db_path)) as db, db:
            db.execute("UPDATE items SET day = ? WHERE id = ?", (day, item.id))
    return store


def config_of(env: dict[str, str]) -> digest_config.DigestConfig:
    config = digest_config.load_digest_config(env)
    assert config is not None
    return config


def encrypted_part(raw: bytes) -> tuple[email.message.EmailMessage, str]:
    """The message and its armored OpenPGP part (PGP/MIME, RFC 3156)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message.get_content_type() == "multipart/encrypted"
    assert message.get_param("protocol") == "application/pgp-encrypted"
    control, data = message.iter_parts()
    assert control.get_content_type() == "application/pgp-encrypted"
    assert control.get_payload(decode=True).strip() == b"Version: 1"
    armored = data.get_payload(decode=True).decode("ascii")
    assert armored.startswith("-----BEGIN PGP MESSAGE-----")
    return message, armored


# --- What a digest says ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "new"),
    [
        ([], False),
        (["2026-12-03"], True),  # today, before the digest
        (["2026-12-02"], True),  # yesterday: within the past 24 hours, or a little before
        (["2026-12-01"], False),
        (["2026-11-01", "2026-12-01"], False),
    ],
)
def test_what_counts_as_new(tmp_path: Path, days: list[str], new: bool) -> None:
    store = store_with(tmp_path, days)
    assert digest.anything_new(store.db_path, NOW.date()) is new


def test_replies_are_not_news(tmp_path: Path) -> None:
    store = store_with(tmp_path, ["2026-12-03"])
    with contextlib.closing(sqlite3.connect(store.db_path)) as db, db:
        db.execute("UPDATE items SET kind = 'reply'")
    assert digest.anything_new(store.db_path, NOW.date()) is False


def test_no_database_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DigestError, match="no database"):
        digest.anything_new(tmp_path / "store.sqlite3", NOW.date())


def test_bodies_have_one_length() -> None:
    day = date(2026, 12, 3)
    bodies = [digest.body(day, new) for new in (True, False, None)]
    assert {len(b) for b in bodies} == {digest.BODY_SIZE}
    assert b"Something new" in bodies[0]
    assert b"Nothing new" in bodies[1]
    assert b"test" in bodies[2]
    assert len({b.rstrip() for b in bodies}) == 3


# --- The digest through a real relay ---------------------------------------------------------


def test_digests_with_and_without_news_look_alike(
    tmp_path: Path, journalists: list[Recipient]
) -> None:
    """Same subject, same size (ciphertext and whole message), different plaintext; each
    journalist gets a message of their own that decrypts with their key."""
    handler = Handler()
    with relay(handler) as port:
        config = config_of(settings(tmp_path, port, journalists))
        store_with(tmp_path, [])
        assert digest.send_digest(config, now=NOW) == 2
        store_with(tmp_path, ["2026-12-03"])
        assert digest.send_digest(config, now=NOW) == 2
    assert len(handler.received) == 4
    sizes: dict[str, set[int]] = {j.address: set() for j in journalists}
    armored_sizes, plain = set(), []
    for envelope, to in zip(handler.received, [*journalists, *journalists], strict=True):
        assert envelope.rcpt_tos == [to.address]
        assert envelope.mail_from == "tipbox@example.org"
        message, armored = encrypted_part(envelope.content)
        assert message["Subject"] == digest.SUBJECT
        assert message["To"] == to.address
        sizes[to.address].add(len(envelope.content))  # the To: header differs between them
        armored_sizes.add(len(armored))
        plain.append(to.decrypt(armored))
    assert len(armored_sizes) == 1
    assert [len(s) for s in sizes.values()] == [1, 1]
    assert b"Nothing new" in plain[0]
    assert b"Nothing new" in plain[1]
    assert b"Something new" in plain[2]
    assert b"Something new" in plain[3]
    assert {len(p) for p in plain} == {len(plain[0])}
    assert (tmp_path / "data" / digest.SENT_FILE).read_text() == "2026-12-03\n"


def test_a_refusing_relay_is_retried(tmp_path: Path, journalists: list[Recipient]) -> None:
    """The first attempt is refused (550): the digest goes on the second, once per recipient."""
    handler = Handler(refuse=1)
    warnings: list[str] = []
    delays: list[float] = []
    with relay(handler) as port:
        env = settings(tmp_path, port, journalists[:1], TIPBOX_DIGEST_RETRY_SECONDS="5")
        store_with(tmp_path, [])
        digest.send_digest(config_of(env), now=NOW, sleep=delays.append, warn=warnings.append)
    assert len(handler.received) == 1
    assert delays == [5]
    (warning,) = warnings
    assert "refused" in warning
    assert "550 5.7.1 relaying denied" in warning
    assert "trying again in 5 s" in warning


def test_retries_are_bounded_and_back_off(tmp_path: Path, journalists: list[Recipient]) -> None:
    handler = Handler(refuse=100)
    delays: list[float] = []
    with relay(handler) as port:
        env = settings(
            tmp_path, port, journalists, TIPBOX_DIGEST_TRIES="4", TIPBOX_DIGEST_RETRY_SECONDS="3"
        )
        store_with(tmp_path, [])
        with pytest.raises(DigestError) as caught:
            digest.send_digest(config_of(env), now=NOW, sleep=delays.append, warn=lambda _: None)
    assert delays == [3, 6, 12]
    assert handler.refused == 8  # two recipients, four tries each
    assert "alice@example.org" in caught.value.message
    assert "550 5.7.1 relaying denied" in caught.value.message
    assert "4 tries" in caught.value.message
    assert not (tmp_path / "data" / digest.SENT_FILE).exists()


def test_only_the_refused_recipients_are_retried(
    tmp_path: Path, journalists: list[Recipient]
) -> None:
    handler = Handler(refuse=1)  # alice's first message is refused, bob's is taken
    with relay(handler) as port:
        store_with(tmp_path, [])
        config = config_of(settings(tmp_path, port, journalists))
        digest.send_digest(config, now=NOW, sleep=lambda _: None, warn=lambda _: None)
    assert [e.rcpt_tos for e in handler.received] == [["bob@example.org"], ["alice@example.org"]]


def test_starttls_is_required_when_asked(tmp_path: Path, journalists: list[Recipient]) -> None:
    """A relay that offers no STARTTLS gets nothing in the clear."""
    handler = Handler()
    with relay(handler) as port:
        env = settings(tmp_path, port, journalists, TIPBOX_DIGEST_TLS="starttls")
        store_with(tmp_path, [])
        with pytest.raises(DigestError, match="STARTTLS"):
            digest.send_digest(config_of(env), now=NOW, sleep=lambda _: None, warn=lambda _: None)
    assert handler.received == []


def test_sleep_grows_by_doubling() -> None:
    assert mail.delays(4, 60.0) == [60.0, 120.0, 240.0]
    assert mail.delays(1, 60.0) == []


# --- Configuration ---------------------------------------------------------------------------


def test_not_configured_without_a_relay() -> None:
    assert digest_config.load_digest_config({}) is None
    assert digest_config.load_digest_config({"TIPBOX_DIGEST_RELAY": " "}) is None


def test_defaults(tmp_path: Path) -> None:
    config = config_of({"TIPBOX_DIGEST_RELAY": "smtp.example.org", "TIPBOX_DIGEST_FROM": "a@b.c"})
    assert (config.port, config.tls, config.time, config.tries) == (587, "starttls", "00:15", 4)
    assert config.recipients_dir == Path("/etc/tipbox/digest-keys")
    assert config_of({**_base(), "TIPBOX_DIGEST_TLS": "tls"}).port == 465
    assert config_of({**_base(), "TIPBOX_DIGEST_TLS": "none"}).port == 25


def _base() -> dict[str, str]:
    return {"TIPBOX_DIGEST_RELAY": "smtp.example.org", "TIPBOX_DIGEST_FROM": "a@b.c"}


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("TIPBOX_DIGEST_PORT", "smtp", "TIPBOX_DIGEST_PORT must be a whole number from 1 to 65535"),
        ("TIPBOX_DIGEST_PORT", "70000", "TIPBOX_DIGEST_PORT must be a whole number"),
        ("TIPBOX_DIGEST_TLS", "ssl", "TIPBOX_DIGEST_TLS must be one of starttls, tls, none"),
        ("TIPBOX_DIGEST_TIME", "25:00", "TIPBOX_DIGEST_TIME must be HH:MM"),
        ("TIPBOX_DIGEST_TIME", "7am", "TIPBOX_DIGEST_TIME must be HH:MM"),
        ("TIPBOX_DIGEST_FROM", "", "TIPBOX_DIGEST_FROM must be an email address"),
        ("TIPBOX_DIGEST_FROM", "a b@c", "TIPBOX_DIGEST_FROM must be an email address"),
        ("TIPBOX_DIGEST_TRIES", "0", "TIPBOX_DIGEST_TRIES must be a whole number"),
        ("TIPBOX_DIGEST_RELAY", "a b", "TIPBOX_DIGEST_RELAY must be a host name or address"),
    ],
)
def test_bad_settings(name: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        digest_config.load_digest_config({**_base(), name: value})


def test_password_and_password_file_exclude_each_other(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    config = config_of(
        {**_base(), "TIPBOX_DIGEST_USER": "u", "TIPBOX_DIGEST_PASSWORD_FILE": str(secret)}
    )
    assert config.password() == "s3cret"
    assert config_of({**_base(), "TIPBOX_DIGEST_PASSWORD": "pw"}).password() == "pw"
    with pytest.raises(ConfigError, match="not both"):
        digest_config.load_digest_config(
            {**_base(), "TIPBOX_DIGEST_PASSWORD": "pw", "TIPBOX_DIGEST_PASSWORD_FILE": str(secret)}
        )
    missing = config_of({**_base(), "TIPBOX_DIGEST_PASSWORD_FILE": str(tmp_path / "nope")})
    with pytest.raises(DigestError, match="cannot read the relay's password"):
        missing.password()


# --- Keys ------------------------------------------------------------------------------------


def test_keys_are_checked(tmp_path: Path, journalists: list[Recipient]) -> None:
    folder = keys_dir(tmp_path, journalists)
    assert [r.address for r in openpgp.recipients(folder)] == [j.address for j in journalists]
    assert openpgp.problems(folder) == []
    (folder / "carol@example.org.asc").write_text("not a key\n")
    (folder / "README").write_text("ignored: not *.asc\n")
    (problem,) = openpgp.problems(folder)
    assert problem.startswith("carol@example.org.asc: gpg cannot encrypt to it")
    with pytest.raises(DigestError, match="carol@example.org.asc"):
        openpgp.encrypt(b"x", folder / "carol@example.org.asc")


def test_file_names_are_addresses(tmp_path: Path, journalists: list[Recipient]) -> None:
    folder = keys_dir(tmp_path, journalists[:1])
    (folder / "alice@example.org.asc").rename(folder / "alice.asc")
    with pytest.raises(DigestError, match=r"alice\.asc: name each key file after its address"):
        openpgp.recipients(folder)
    with pytest.raises(DigestError, match="no recipient key"):
        openpgp.recipients(tmp_path / "empty")


def test_ciphertext_size_depends_on_the_length_only(
    journalists: list[Recipient], tmp_path: Path
) -> None:
    """No compression: equal plaintext lengths give equal ciphertext sizes."""
    key = keys_dir(tmp_path, journalists[:1]) / "alice@example.org.asc"
    sizes = {len(openpgp.encrypt(text, key)) for text in (b"a" * 500, os.urandom(500), b" " * 500)}
    assert len(sizes) == 1


# --- The command -----------------------------------------------------------------------------


def tipbox(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``tipbox`` as a process, with the settings in a throwaway root's tipbox.env."""
    root = tmp_path / "root"
    (root / "etc/tipbox").mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{k}={v}\n" for k, v in env.items())
    (root / "etc/tipbox/tipbox.env").write_text(lines)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**clean, "TIPBOX_ROOT": str(root)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_send_a_test_digest(tmp_path: Path, journalists: list[Recipient]) -> None:
    handler = Handler()
    with relay(handler) as port:
        run = tipbox(tmp_path, settings(tmp_path, port, journalists), "digest", "send", "--test")
    assert (run.returncode, run.stderr) == (0, "")
    assert f"test digest sent to 2 recipient(s) through 127.0.0.1:{port}" in run.stdout
    assert len(handler.received) == 2
    _, armored = encrypted_part(handler.received[0].content)
    assert b"This is a test" in journalists[0].decrypt(armored)
    assert not (tmp_path / "data" / digest.SENT_FILE).exists()  # a test is not the daily digest


def test_send_the_digest_now(tmp_path: Path, journalists: list[Recipient]) -> None:
    handler = Handler()
    store_with(tmp_path, [datetime.now(UTC).date().isoformat()])
    with relay(handler) as port:
        run = tipbox(tmp_path, settings(tmp_path, port, journalists[:1]), "digest", "send")
    assert (run.returncode, run.stderr) == (0, "")
    _, armored = encrypted_part(handler.received[0].content)
    assert b"Something new" in journalists[0].decrypt(armored)


@pytest.mark.parametrize("down", ["refuses", "is down"])
def test_a_relay_that_fails_is_a_clear_error(
    tmp_path: Path, journalists: list[Recipient], down: str
) -> None:
    store_with(tmp_path, [])
    handler = Handler(refuse=100)
    with relay(handler) as port:
        if down == "is down":
            port = free_port()
        env = settings(tmp_path, port, journalists[:1], TIPBOX_DIGEST_TRIES="2")
        run = tipbox(tmp_path, env, "digest", "send")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[0].startswith("tipbox: warning: ")
    assert lines[0].endswith("trying again in 0 s")
    assert lines[-1].startswith("tipbox: error: the digest did not reach alice@example.org")
    assert "after 2 tries" in lines[-1]
    if down == "is down":
        assert f"cannot reach the relay 127.0.0.1:{port}: connection refused" in lines[-1]
    else:
        assert f"the relay 127.0.0.1:{port} refused it: 550 5.7.1 relaying denied" in lines[-1]


def test_not_configured_is_a_clear_error(tmp_path: Path) -> None:
    run = tipbox(tmp_path, {}, "digest", "send", "--test")
    assert run.returncode == 1
    env_file = tmp_path / "root/etc/tipbox/tipbox.env"
    assert run.stderr.splitlines() == [
        "tipbox: error: the daily digest is not configured: TIPBOX_DIGEST_RELAY is empty",
        f"tipbox: hint: set the TIPBOX_DIGEST_* settings in {env_file} (README: the daily digest)",
    ]


# --- tipbox status ---------------------------------------------------------------------------


def test_status_lines(tmp_path: Path, journalists: list[Recipient]) -> None:
    ((ok, text),) = digest.status({})
    assert ok
    assert text.startswith("daily digest not configured")
    env = settings(tmp_path, 2525, journalists)
    today = NOW.date()
    assert digest.status(env, today=today) == [
        (
            True,
            "daily digest at 00:15 UTC through 127.0.0.1:2525 (no TLS) to 2 recipient(s), "
            "keys valid",
        ),
        (True, "no daily digest sent yet (the first goes at 00:15 UTC)"),
    ]
    data = tmp_path / "data"
    data.mkdir()
    (data / digest.SENT_FILE).write_text("2026-12-03\n")
    assert digest.status(env, today=today)[1] == (True, "last daily digest sent on 2026-12-03")
    assert digest.status(env, today=today + timedelta(days=1))[1][0]
    assert digest.status(env, today=today + timedelta(days=2))[1] == (
        False,
        "last daily digest sent on 2026-12-03 (see journalctl -u tipbox-digest)",
    )
    (Path(env["TIPBOX_DIGEST_RECIPIENTS"]) / "carol@example.org.asc").write_text("junk")
    ok, text = digest.status(env, today=today)[0]
    assert not ok
    assert "carol@example.org.asc: gpg cannot encrypt to it" in text
    assert digest.status({**env, "TIPBOX_DIGEST_TLS": "ssl"}) == [
        (False, "daily digest: TIPBOX_DIGEST_TLS must be one of starttls, tls, none")
    ]


def test_status_command_has_the_digest_line(tmp_path: Path) -> None:
    """``tipbox status`` (no tor here: that check fails, the digest line is still there)."""
    env = {"TIPBOX_TOR_CONTROL": str(tmp_path / "no-tor"), "TIPBOX_DATA_DIR": str(tmp_path)}
    run = tipbox(tmp_path, env, "status")
    assert run.returncode == 1
    assert "ok    daily digest not configured" in run.stdout


# --- systemd ---------------------------------------------------------------------------------


def test_the_units(tmp_path: Path) -> None:
    service = (REPO / "deploy/tipbox-digest.service").read_text()
    timer = (REPO / "deploy/tipbox-digest.timer").read_text()
    assert "IPAddressDeny=any" in service
    assert "ExecStart=/opt/tipbox/venv/bin/tipbox digest send\n" in service
    assert "Persistent=true" in timer
    assert "OnCalendar=*-*-* 00:15:00 UTC" in timer


def test_drop_ins(tmp_path: Path) -> None:
    """The relay's addresses and the time, as drop-ins beside the units (make deploy)."""
    env = {**_base(), "TIPBOX_DIGEST_RELAY": "127.0.0.1", "TIPBOX_DIGEST_TIME": "06:30"}
    service, timer = digest_config.drop_ins(config_of(env), resolvers=["127.0.0.53"])
    assert service == (
        "# Written by make deploy from TIPBOX_DIGEST_RELAY: the relay's addresses now, and the\n"
        "# resolvers that find them. Run make deploy again if the relay moves.\n"
        "[Service]\nIPAddressAllow=127.0.0.1\n"
    )
    by_name = {**env, "TIPBOX_DIGEST_RELAY": "localhost"}  # /etc/hosts: no query leaves
    service, _ = digest_config.drop_ins(config_of(by_name), resolvers=["127.0.0.53"])
    assert "IPAddressAllow=127.0.0.1\n" in service
    assert service.endswith("IPAddressAllow=127.0.0.53\n")
    assert timer == (
        "# Written by make deploy from TIPBOX_DIGEST_TIME.\n"
        "[Timer]\nOnCalendar=\nOnCalendar=*-*-* 06:30:00 UTC\n"
    )


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A root with systemd's own units, ours, and a stand-in for the venv's tipbox."""
    root = tmp_path / "sysroot"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    command = root / "opt/tipbox/venv/bin/tipbox"
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy2(REPO / "deploy" / unit, root / "etc/systemd/system" / unit)
    return root


@needs_systemd
def test_units_pass_systemd_analyze(unit_root: Path) -> None:
    verify = analyze("verify", f"--root={unit_root}", *UNITS, cwd=unit_root)
    assert (verify.returncode, verify.stderr) == (0, "")
    security = analyze(
        "security", "--offline=yes", f"--root={unit_root}", "tipbox-digest.service", cwd=unit_root
    )
    match = re.search(
        r"Overall exposure level for tipbox-digest.service: ([0-9.]+) (\w+)", security.stdout
    )
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, security.stdout
    assert match.group(2) == "SAFE"


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def test_units_command(tmp_path: Path) -> None:
    """``tipbox digest units`` (make deploy): drop-ins when a relay is set, none otherwise."""
    out = tmp_path / "systemd"
    out.mkdir()
    env = {**_base(), "TIPBOX_DIGEST_RELAY": "127.0.0.1", "TIPBOX_DIGEST_TIME": "07:05"}
    run = tipbox(tmp_path, env, "digest", "units", "--out", str(out))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == "daily digest at 07:05 UTC through 127.0.0.1:587\n"
    timer = (out / "tipbox-digest.timer.d/time.conf").read_text()
    assert "OnCalendar=*-*-* 07:05:00 UTC" in timer
    assert "IPAddressAllow=127.0.0.1\n" in (out / "tipbox-digest.service.d/relay.conf").read_text()
    run = tipbox(tmp_path, {}, "digest", "units", "--out", str(out))
    assert run.stdout.startswith("daily digest not configured")
    assert not (out / "tipbox-digest.timer.d/time.conf").exists()
    assert not (out / "tipbox-digest.service.d/relay.conf").exists()


# --- TLS and login, for real ------------------------------------------------------------------


@dataclass(frozen=True)
class Authority:
    """A throwaway CA and the relay's certificate for 127.0.0.1, as PEM files."""

    ca_file: Path
    context: ssl.SSLContext


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    folder = tmp_path_factory.mktemp("ca")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test relay CA")])
    start = datetime.now(UTC) - timedelta(days=1)
    ca = (
        x509.CertificateBuilder(
            ca_name, ca_name, ca_key.public_key(), 1, start, start + timedelta(2)
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder(ca_name, name, key.public_key(), 2, start, start + timedelta(2))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return Authority(folder / "ca.pem", context)


def login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    """The relay's one account: digest / s3cret."""
    good = isinstance(data, LoginPassword) and (data.login, data.password) == (b"digest", b"s3cret")
    return AuthResult(success=good, handled=False)  # not handled: aiosmtpd answers 535


@contextlib.contextmanager
def tls_relay(handler: Handler, authority: Authority, mode: str) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 speaking TLS: implicit, or STARTTLS with a login
    required (aiosmtpd 1.4 offers AUTH only after STARTTLS)."""
    tls: dict[str, Any] = (
        {"ssl_context": authority.context}
        if mode == "tls"
        else {
            "tls_context": authority.context,
            "require_starttls": True,
            "authenticator": login,
            "auth_required": True,
        }
    )
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="127.0.0.1", **tls
    )
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_with_the_relays_own_ca(
    tmp_path: Path, journalists: list[Recipient], authority: Authority, mode: str
) -> None:
    handler = Handler()
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    store_with(tmp_path, [])
    login = {"TIPBOX_DIGEST_USER": "digest", "TIPBOX_DIGEST_PASSWORD_FILE": str(password)}
    with tls_relay(handler, authority, mode) as port:
        env = settings(
            tmp_path,
            port,
            journalists[:1],
            TIPBOX_DIGEST_TLS=mode,
            TIPBOX_DIGEST_CA_FILE=str(authority.ca_file),
            **(login if mode == "starttls" else {}),
        )
        assert digest.send_digest(config_of(env), now=NOW) == 1
        untrusted = {**env, "TIPBOX_DIGEST_CA_FILE": ""}  # the system's CAs do not know it
        with pytest.raises(DigestError, match="certificate is not trusted"):
            digest.send_digest(config_of(untrusted), now=NOW, sleep=lambda _: None, warn=print)
    assert len(handler.received) == 1
    _, armored = encrypted_part(handler.received[0].content)
    assert b"Nothing new" in journalists[0].decrypt(armored)


def test_a_wrong_password_is_said(
    tmp_path: Path, journalists: list[Recipient], authority: Authority
) -> None:
    password = tmp_path / "password"
    password.write_text("wrong\n")
    store_with(tmp_path, [])
    with tls_relay(Handler(), authority, "starttls") as port:
        env = settings(
            tmp_path,
            port,
            journalists[:1],
            TIPBOX_DIGEST_TLS="starttls",
            TIPBOX_DIGEST_CA_FILE=str(authority.ca_file),
            TIPBOX_DIGEST_USER="digest",
            TIPBOX_DIGEST_PASSWORD_FILE=str(password),
            TIPBOX_DIGEST_TRIES="1",
        )
        with pytest.raises(DigestError) as caught:
            digest.send_digest(config_of(env), now=NOW)
    assert caught.value.message == (
        f"the digest did not reach alice@example.org after 1 try: the relay 127.0.0.1:{port}"
        " refused the login: 535 5.7.8 Authentication credentials invalid"
    )


def test_an_unreadable_ca_file_is_said_at_once(
    tmp_path: Path, journalists: list[Recipient]
) -> None:
    env = settings(tmp_path, 2525, journalists[:1], TIPBOX_DIGEST_CA_FILE=str(tmp_path / "no"))
    store_with(tmp_path, [])
    with pytest.raises(DigestError, match="cannot read TIPBOX_DIGEST_CA_FILE"):
        digest.send_digest(config_of(env), now=NOW, sleep=pytest.fail)
    ok, text = digest.status(env)[0]
    assert not ok
    assert "cannot read TIPBOX_DIGEST_CA_FILE" in text


def test_a_bad_key_does_not_silence_the_others(
    tmp_path: Path, journalists: list[Recipient]
) -> None:
    handler = Handler()
    store_with(tmp_path, [])
    with relay(handler) as port:
        env = settings(tmp_path, port, journalists)
        (Path(env["TIPBOX_DIGEST_RECIPIENTS"]) / "carol@example.org.asc").write_text("junk\n")
        run = tipbox(tmp_path, env, "digest", "send")
    assert [e.rcpt_tos for e in handler.received] == [["alice@example.org"], ["bob@example.org"]]
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert lines[0].startswith(
        "tipbox: error: sent to the 2 other recipient(s), but carol@example.org.asc: gpg cannot"
        " encrypt to it ("
    )
    assert lines[1] == "tipbox: hint: replace the key, then 'tipbox status'"
    assert (tmp_path / "data" / digest.SENT_FILE).exists()
