"""The daily digest's settings (``TIPBOX_DIGEST_*`` in ``/etc/tipbox/tipbox.env``), and the
systemd drop-ins ``make deploy`` derives from them.

| variable | default |
|---|---|
| ``TIPBOX_DIGEST_RELAY`` | empty: no digest (the relay's host name or address) |
| ``TIPBOX_DIGEST_PORT`` | 587 for ``starttls``, 465 for ``tls``, 25 for ``none`` |
| ``TIPBOX_DIGEST_TLS`` | ``starttls`` (or ``tls``: implicit TLS; ``none``: a relay on loopback) |
| ``TIPBOX_DIGEST_USER``, ``TIPBOX_DIGEST_PASSWORD`` | no login (or ``_PASSWORD_FILE``: a file) |
| ``TIPBOX_DIGEST_CA_FILE`` | the system's authorities (or a PEM file: the relay's own CA) |
| ``TIPBOX_DIGEST_RECIPIENTS`` | ``/etc/tipbox/digest-keys`` (``ADDRESS.asc`` per journalist) |
| ``TIPBOX_DIGEST_FROM`` | required: the sender's address |
| ``TIPBOX_DIGEST_TIME`` | ``00:15`` (UTC, ``HH:MM``; see :mod:`app.server.digest` for why) |
| ``TIPBOX_DIGEST_TRIES``, ``TIPBOX_DIGEST_RETRY_SECONDS`` | 4 tries, 60 s then doubling |
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.config import REPO
from app.errors import ConfigError, DigestError
from app.server.mail import TLS_MODES, Relay
from app.server.openpgp import ADDRESS

PORTS = {"starttls": 587, "tls": 465, "none": 25}
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}")


@dataclass(frozen=True)
class DigestConfig:
    """Where the digest goes and how, validated."""

    relay_host: str
    port: int
    tls: str
    sender: str
    recipients_dir: Path
    data_dir: Path
    time: str = "00:15"
    user: str | None = None
    password_value: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    tries: int = 4
    retry_seconds: float = 60.0

    @property
    def domain(self) -> str:
        """The sender's domain: our EHLO name and Message-ID domain, never our host name."""
        return self.sender.rpartition("@")[2]

    def password(self) -> str | None:
        """The relay's password, read from its file if it has one."""
        if self.password_file is None:
            return self.password_value
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise DigestError(
                f"cannot read the relay's password in {self.password_file}: {exc}"
            ) from None

    def relay(self) -> Relay:
        """The relay, as :mod:`app.server.mail` connects to it."""
        password = self.password() if self.user else None
        return Relay(
            self.relay_host, self.port, self.tls, self.domain, self.user, password, self.ca_file
        )


def load_digest_config(env: Mapping[str, str]) -> DigestConfig | None:
    """The digest's settings; None if no relay is set (the digest is optional).

    :raises ConfigError: naming the first setting that is not valid.
    """
    host = env.get("TIPBOX_DIGEST_RELAY", "").strip()
    if not host:
        return None
    if not _HOST.fullmatch(host):
        raise ConfigError("TIPBOX_DIGEST_RELAY must be a host name or address")
    tls = env.get("TIPBOX_DIGEST_TLS", "").strip().lower() or "starttls"
    if tls not in TLS_MODES:
        raise ConfigError(f"TIPBOX_DIGEST_TLS must be one of {', '.join(TLS_MODES)}")
    sender = env.get("TIPBOX_DIGEST_FROM", "").strip()
    if not ADDRESS.fullmatch(sender):
        raise ConfigError("TIPBOX_DIGEST_FROM must be an email address (the digest's sender)")
    when = env.get("TIPBOX_DIGEST_TIME", "").strip() or "00:15"
    if not _TIME.fullmatch(when):
        raise ConfigError("TIPBOX_DIGEST_TIME must be HH:MM (UTC, 24-hour clock)")
    password, password_file = _password(env)
    return DigestConfig(
        relay_host=host,
        port=_number(env, "TIPBOX_DIGEST_PORT", PORTS[tls], 1, 65535),
        tls=tls,
        sender=sender,
        recipients_dir=_path(env, "TIPBOX_DIGEST_RECIPIENTS", Path("/etc/tipbox/digest-keys")),
        data_dir=_path(env, "TIPBOX_DATA_DIR", REPO / "data"),
        time=when,
        user=env.get("TIPBOX_DIGEST_USER", "").strip() or None,
        password_value=password,
        password_file=password_file,
        ca_file=_optional_path(env, "TIPBOX_DIGEST_CA_FILE"),
        tries=_number(env, "TIPBOX_DIGEST_TRIES", 4, 1, 20),
        retry_seconds=_number(env, "TIPBOX_DIGEST_RETRY_SECONDS", 60, 0, 3600),
    )


def _password(env: Mapping[str, str]) -> tuple[str | None, Path | None]:
    password = env.get("TIPBOX_DIGEST_PASSWORD", "") or None
    file = env.get("TIPBOX_DIGEST_PASSWORD_FILE", "").strip()
    if password and file:
        raise ConfigError("set TIPBOX_DIGEST_PASSWORD or TIPBOX_DIGEST_PASSWORD_FILE, not both")
    return password, Path(file) if file else None


def _number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit() and low <= int(value) <= high):
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    return _optional_path(env, name) or default


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value) if value else None


def drop_ins(config: DigestConfig, resolvers: Sequence[str]) -> tuple[str, str]:
    """The service's and the timer's drop-ins: the only addresses the digest may reach (the
    relay's now, and the ``resolvers`` if the relay is a name), and the time it runs."""
    try:
        ipaddress.ip_address(config.relay_host)
        allowed, lookups = [config.relay_host], []
    except ValueError:
        allowed, lookups = _resolve(config.relay_host, config.port), list(resolvers)
    service = "".join(f"IPAddressAllow={a}\n" for a in [*allowed, *lookups])
    return (
        "# Written by make deploy from TIPBOX_DIGEST_RELAY: the relay's addresses now, and the\n"
        "# resolvers that find them. Run make deploy again if the relay moves.\n"
        f"[Service]\n{service}",
        "# Written by make deploy from TIPBOX_DIGEST_TIME.\n"
        f"[Timer]\nOnCalendar=\nOnCalendar=*-*-* {config.time}:00 UTC\n",
    )


def _resolve(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DigestError(f"cannot resolve the relay {host}: {exc.strerror or exc}") from None
    return sorted({str(info[4][0]) for info in found})


def resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The name servers this server asks (``nameserver`` lines)."""
    try:
        lines = resolv_conf.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [f[1] for f in (line.split() for line in lines) if len(f) > 1 and f[0] == "nameserver"]
