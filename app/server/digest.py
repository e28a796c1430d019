"""The daily digest: one OpenPGP-encrypted email a day per journalist, saying only whether
anything new arrived, so they know when to look without the mail saying when a tip came in.

It is sent every day at the same time (``tipbox-digest.timer``), news or not, with the same
subject and a body padded to :data:`BODY_SIZE` before encryption (without compression, see
:mod:`app.server.openpgp`), so the "something new" and "nothing new" digests have the same
size: who sees the mail (the relay, the journalists' providers) learns nothing from it.

"The past 24 hours", honestly: the store keeps only the UTC day of each item
(:func:`app.days.today`), and the digest keeps nothing more. So the digest counts the
sources' items (not replies) of yesterday and of today, UTC. Sent at ``TIPBOX_DIGEST_TIME``
(default 00:15 UTC), that window is the past 24 hours plus the day's first quarter hour; sent
later in the day it reaches further back (at most 48 hours), and an item may be announced by
two digests in a row. None is ever missed, and no arrival time is stored to do better.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from email.encoders import encode_7or8bit
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.utils import format_datetime
from pathlib import Path

from app.db import DATABASE, Database
from app.errors import ConfigError, DigestError
from app.files import atomic_write
from app.server import mail, openpgp
from app.server.digest_config import DigestConfig, load_digest_config

SUBJECT = "Tipbox daily digest"
BODY_SIZE = 1024  # bytes of plaintext (a MIME entity) before encryption, whatever it says
SENT_FILE = "digest-sent"  # in the data folder: the UTC day of the last daily digest sent
NEW = "Something new arrived yesterday or today (UTC): open the journalist interface."
NOTHING = "Nothing new arrived yesterday or today (UTC)."
TEST = "This is a test digest, sent on request: it says nothing about submissions."
ABOUT = (
    "Tipbox sends this message every day at the same time and with the same\r\n"
    "size, whether or not anything arrived, so that neither tells anyone when\r\n"
    "a tip came in. Submissions are known by their day only: one that arrived\r\n"
    "yesterday may be announced again today."
)


def anything_new(db_path: Path, day: date) -> bool:
    """Whether any source sent anything on ``day`` or the day before (UTC)."""
    if not db_path.is_file():
        raise DigestError(
            f"no database at {db_path}", hint="TIPBOX_DATA_DIR must be the apps' data folder"
        )
    since = (day - timedelta(days=1)).isoformat()
    query = "SELECT EXISTS (SELECT 1 FROM items WHERE kind != 'reply' AND day >= ?)"
    try:
        with Database(db_path).connect() as db:  # a read: no migration, nothing written
            (found,) = db.execute(query, (since,)).fetchone()
    except sqlite3.Error as exc:
        raise DigestError(f"cannot read the database {db_path}: {exc}") from None
    return bool(found)


def body(day: date, new: bool | None) -> bytes:
    """The plaintext (a MIME entity), exactly :data:`BODY_SIZE` bytes; ``new`` None: a test."""
    said = TEST if new is None else NEW if new else NOTHING
    text = (
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n"
        f"{SUBJECT}, {day.isoformat()}\r\n\r\n{said}\r\n\r\n{ABOUT}\r\n"
    ).encode("ascii")
    if len(text) > BODY_SIZE:  # the sentences above are fixed: a test guards this
        raise DigestError("the digest's text is longer than its fixed size")
    return text + b" " * (BODY_SIZE - len(text))


def compose(config: DigestConfig, to: str, armored: str, now: datetime) -> Message:
    """A PGP/MIME message (RFC 3156) whose headers have the same length every day."""
    control = MIMEApplication(b"Version: 1\r\n", "pgp-encrypted", encode_7or8bit)
    data = MIMEApplication(armored.encode("ascii"), "octet-stream", encode_7or8bit)
    data.add_header("Content-Disposition", "inline", filename="encrypted.asc")
    message = MIMEMultipart(
        "encrypted",
        boundary=f"tipbox-{secrets.token_hex(16)}",
        _subparts=[control, data],
        protocol="application/pgp-encrypted",
    )
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = SUBJECT
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{config.domain}>"
    return message


def send_digest(
    config: DigestConfig,
    *,
    test: bool = False,
    now: datetime | None = None,
    sleep: Callable[[float], object] = time.sleep,
    warn: Callable[[str], object] | None = None,
) -> int:
    """Send today's digest (or a test) to every recipient; how many messages were sent."""
    now = now or datetime.now(UTC)
    day = now.astimezone(UTC).date()
    plain = body(day, None if test else anything_new(config.data_dir / DATABASE, day))
    messages, unusable = _encrypt_all(config, plain, now)
    if messages:
        relay, tries, first = config.relay(), config.tries, config.retry_seconds
        mail.deliver(relay, config.sender, messages, tries, first, sleep, warn or _warn)
        if not test:
            with atomic_write(config.data_dir / SENT_FILE, 0o600, overwrite=True) as handle:
                handle.write(f"{day.isoformat()}\n".encode())
    if unusable:
        sent = f"sent to the {len(messages)} other recipient(s), but " if messages else ""
        raise DigestError(sent + "; ".join(unusable), hint="replace the key, then 'tipbox status'")
    return len(messages)


def _encrypt_all(
    config: DigestConfig, plain: bytes, now: datetime
) -> tuple[dict[str, Message], list[str]]:
    """A message per recipient, and why a key could not be used: one journalist's expired key
    must not silence everyone's digest."""
    messages, unusable = {}, []
    for recipient in openpgp.recipients(config.recipients_dir):
        try:
            armored = openpgp.encrypt(plain, recipient.key)
        except DigestError as exc:
            unusable.append(exc.message)
        else:
            messages[recipient.address] = compose(config, recipient.address, armored, now)
    return messages, unusable


def _warn(text: str) -> None:
    print(f"tipbox: warning: {text}", file=sys.stderr, flush=True)


def last_sent(data_dir: Path) -> date | None:
    """The UTC day of the last daily digest sent, if any."""
    with contextlib.suppress(OSError, ValueError):
        return date.fromisoformat((data_dir / SENT_FILE).read_text(encoding="ascii").strip())
    return None


def status(env: Mapping[str, str], today: date | None = None) -> list[tuple[bool, str]]:
    """``tipbox status``'s lines about the digest: settings and keys, then the last one sent."""
    try:
        config = load_digest_config(env)
    except ConfigError as exc:
        return [(False, f"daily digest: {exc.message}")]
    if config is None:
        return [(True, "daily digest not configured (TIPBOX_DIGEST_RELAY is empty)")]
    tls = {"none": "no TLS", "starttls": "STARTTLS", "tls": "TLS"}.get(config.tls, config.tls)
    relay = f"{config.relay_host}:{config.port} ({tls})"
    what = f"daily digest at {config.time} UTC through {relay} to {_count(config)} recipient(s)"
    wrong = openpgp.problems(config.recipients_dir)
    try:
        mail.tls_context(config.relay())  # the password file and the CA file can be read
    except DigestError as exc:
        wrong.append(exc.message)
    lines = [(not wrong, f"{what}: {'; '.join(wrong)}" if wrong else f"{what}, keys valid")]
    sent, today = last_sent(config.data_dir), today or datetime.now(UTC).date()
    if sent is None:
        lines.append((True, f"no daily digest sent yet (the first goes at {config.time} UTC)"))
    elif today - sent > timedelta(days=1):
        lines.append((False, f"last daily digest sent on {sent} (see journalctl -u tipbox-digest)"))
    else:
        lines.append((True, f"last daily digest sent on {sent}"))
    return lines


def _count(config: DigestConfig) -> int:
    with contextlib.suppress(DigestError):
        return len(openpgp.recipients(config.recipients_dir))
    return 0
