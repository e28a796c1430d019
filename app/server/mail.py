"""Mail delivery for the daily digest (stdlib ``smtplib``): one connection per try carries every
message not yet accepted, and a bounded number of tries waits twice as long before each next one.

The retry lives here, not in systemd: a timer's ``Persistent=true`` only catches up a run missed
while the server was off, and ``Restart=`` would resend to the journalists the relay already took.
Retrying only the refused messages means nobody gets the same digest twice.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from app.errors import DigestError

TLS_MODES = ("starttls", "tls", "none")
SMTP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Relay:
    """The newsroom's SMTP relay and how to log in to it."""

    host: str
    port: int
    tls: str
    helo: str  # our name in EHLO: the sender's domain, never this server's host name
    user: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # None: the system's certificate authorities

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def delays(tries: int, first: float) -> list[float]:
    """The waits between ``tries`` tries: ``first``, then twice the one before."""
    return [first * 2**n for n in range(tries - 1)]


def deliver(
    relay: Relay,
    sender: str,
    messages: dict[str, Message],
    tries: int,
    first_delay: float,
    sleep: Callable[[float], object],
    warn: Callable[[str], object],
) -> None:
    """Send each message to its address (the key), trying again what the relay did not take."""
    pending = dict(messages)
    for wait in [*delays(tries, first_delay), None]:
        reason = _send(relay, sender, pending)
        if not pending:
            return
        failed = f"the digest did not reach {', '.join(pending)}"
        if wait is None:
            raise DigestError(
                f"{failed} after {tries} {'try' if tries == 1 else 'tries'}: {reason}"
            )
        warn(f"{failed}: {reason}; trying again in {wait:g} s")
        sleep(wait)


def _send(relay: Relay, sender: str, pending: dict[str, Message]) -> str:
    """One try: send what is pending, drop what the relay took; why the rest failed."""
    reason = ""
    try:
        with _connect(relay) as smtp:
            for address, message in list(pending.items()):
                try:
                    smtp.send_message(message, sender, [address])
                except smtplib.SMTPRecipientsRefused as exc:
                    reason = _refused(relay, *exc.recipients[address])
                except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                    reason = _refused(relay, exc.smtp_code, exc.smtp_error)
                else:
                    del pending[address]
    except ssl.SSLCertVerificationError as exc:
        reason = f"the relay {relay}'s certificate is not trusted ({exc.verify_message})"
    except smtplib.SMTPNotSupportedError as exc:  # smtplib's words name the missing extension
        missing = "STARTTLS (nothing was sent in the clear)" if "STARTTLS" in str(exc) else "AUTH"
        reason = f"the relay {relay} does not offer {missing}"
    except smtplib.SMTPAuthenticationError as exc:
        reason = f"the relay {relay} refused the login: {exc.smtp_code} {_text(exc.smtp_error)}"
    except smtplib.SMTPResponseException as exc:
        reason = _refused(relay, exc.smtp_code, exc.smtp_error)
    except (smtplib.SMTPException, OSError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = f"cannot reach the relay {relay}: {text.lower() or type(exc).__name__}"
    return reason


def _connect(relay: Relay) -> smtplib.SMTP:
    """A connection, encrypted as configured (certificates checked), logged in if configured."""
    context = tls_context(relay)
    smtp: smtplib.SMTP
    if relay.tls == "tls":
        smtp = smtplib.SMTP_SSL(
            relay.host, relay.port, relay.helo, timeout=SMTP_TIMEOUT, context=context
        )
    else:
        smtp = smtplib.SMTP(relay.host, relay.port, relay.helo, timeout=SMTP_TIMEOUT)
    try:
        if relay.tls == "starttls":
            smtp.starttls(context=context)
        if relay.user:
            smtp.login(relay.user, relay.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def tls_context(relay: Relay) -> ssl.SSLContext:
    """Certificates checked against the system's authorities, or the relay's own CA file."""
    try:
        return ssl.create_default_context(cafile=relay.ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DigestError(f"cannot read TIPBOX_DIGEST_CA_FILE {relay.ca_file}: {reason}") from None


def _refused(relay: Relay, code: int, text: bytes | str) -> str:
    return f"the relay {relay} refused it: {code} {_text(text)}"


def _text(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
