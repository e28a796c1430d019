"""The web app's settings: one frozen :class:`Config`, read from the environment by
:func:`load_config`.

``load_config`` is pure: it only parses and validates strings (no file is read or created), so
tests build a ``Config`` directly or from a small dict. Everything that touches the disk (keys,
secrets, the logo) is checked when the app starts, and fails closed with :class:`ConfigError`.

| variable | default |
|---|---|
| ``TIPBOX_DATA_DIR`` | ``<repo>/data`` |
| ``TIPBOX_KEYS_DIR`` | ``<repo>/keys`` |
| ``TIPBOX_SECRETS_DIR`` | ``<data>/secrets`` |
| ``TIPBOX_ENV`` | ``production`` (or ``development``: allows 127.0.0.1 and localhost) |
| ``TIPBOX_NEWSROOM_NAME`` | ``Tipbox`` |
| ``TIPBOX_LOGO`` | the packaged logo (a path to a PNG file) |
| ``TIPBOX_MAX_SUBMISSION_BYTES`` | 2 GiB |
| ``TIPBOX_FREE_SPACE_RESERVE`` | largest submission + 64 MiB (less free: submissions get a 503) |
| ``TIPBOX_SESSION_MINUTES`` | 120 (absolute: a session never lasts longer) |
| ``TIPBOX_KDF_OPSLIMIT``, ``TIPBOX_KDF_MEMLIMIT`` | 3, 64 MiB (Argon2id per codename) |
| ``TIPBOX_BUCKET_MIN`` | 1024 (smallest padding bucket of stored ciphertext) |
| ``TIPBOX_BUCKET_STEPS`` | 4 (padding buckets per power of two: 1, 2, 4, …, 32; see app.padding) |
| ``TIPBOX_COOKIE_SECURE`` | off (onion services are plain http) |
| ``TIPBOX_RATE_LIMIT_SESSION`` | ``20 per minute;200 per hour`` (units of work, per session) |
| ``TIPBOX_RATE_LIMIT_GLOBAL`` | ``300 per minute`` (units of work, whole instance) |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import limits
from nacl import pwhash

from app import padding
from app.crypto import KdfCost
from app.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
GIB = 1024**3
MIB = 1024**2
ENVIRONMENTS = ("production", "development")
# Room the database needs on top of a submission: its write-ahead log and index (-wal, -shm) and
# the journalist app's tables grow by a few pages per commit; 64 MiB is ample and small next to
# the default 2 GiB submission.
DATABASE_ROOM = 64 * MIB
# Per browser session (behind Tor an address means nothing) and for the whole instance; only
# work done counts: a codename derivation, a file written, a submission stored (app.source.limits).
DEFAULT_RATE_LIMIT_SESSION = "20 per minute;200 per hour"
DEFAULT_RATE_LIMIT_GLOBAL = "300 per minute"
MAX_SESSION_MINUTES = 24 * 60
MAX_NAME_LENGTH = 100
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Config:
    """Everything the source app needs to know, validated."""

    data_dir: Path = REPO / "data"
    keys_dir: Path = REPO / "keys"
    secrets_dir: Path = REPO / "data" / "secrets"
    development: bool = False
    newsroom_name: str = "Tipbox"
    logo: Path | None = None
    max_submission_bytes: int = 2 * GIB
    free_space_reserve: int | None = None  # None: max_submission_bytes + DATABASE_ROOM
    session_minutes: int = 120
    kdf_cost: KdfCost = field(default_factory=KdfCost)
    bucket_min: int = 1024
    bucket_steps: int = 4
    cookie_secure: bool = False
    rate_limit_session: str = DEFAULT_RATE_LIMIT_SESSION
    rate_limit_global: str = DEFAULT_RATE_LIMIT_GLOBAL
    # Not read from the environment: tests point it at freshly compiled catalogues.
    translations_dir: Path = TRANSLATIONS

    @property
    def reserve_bytes(self) -> int:
        """Free space under which new submissions are refused: a near-full disk can kill a
        worker at SQLite's COMMIT (SIGBUS in its ``-shm`` mapping), so it must never be reached."""
        if self.free_space_reserve is not None:
            return self.free_space_reserve
        return self.max_submission_bytes + DATABASE_ROOM

    @property
    def session_seconds(self) -> int:
        """The absolute session lifetime in seconds."""
        return self.session_minutes * 60


def load_config(env: Mapping[str, str]) -> Config:
    """Build a :class:`Config` from ``TIPBOX_*`` variables; unknown variables are ignored.

    :raises ConfigError: naming the first variable that is not valid.
    """
    data_dir = _path(env, "TIPBOX_DATA_DIR", REPO / "data")
    environment = env.get("TIPBOX_ENV", "production").strip().lower() or "production"
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"TIPBOX_ENV must be one of {', '.join(ENVIRONMENTS)}")
    logo = env.get("TIPBOX_LOGO", "").strip()
    return Config(
        data_dir=data_dir,
        keys_dir=_path(env, "TIPBOX_KEYS_DIR", REPO / "keys"),
        secrets_dir=_path(env, "TIPBOX_SECRETS_DIR", data_dir / "secrets"),
        development=environment == "development",
        newsroom_name=_name(env.get("TIPBOX_NEWSROOM_NAME", "Tipbox")),
        logo=Path(logo) if logo else None,
        max_submission_bytes=_int(env, "TIPBOX_MAX_SUBMISSION_BYTES", 2 * GIB, 1, 2**50),
        free_space_reserve=_optional_int(env, "TIPBOX_FREE_SPACE_RESERVE", 0, 2**60),
        session_minutes=_int(env, "TIPBOX_SESSION_MINUTES", 120, 1, MAX_SESSION_MINUTES),
        kdf_cost=KdfCost(
            opslimit=_int(env, "TIPBOX_KDF_OPSLIMIT", 3, pwhash.argon2id.OPSLIMIT_MIN, 2**32 - 1),
            memlimit=_int(
                env, "TIPBOX_KDF_MEMLIMIT", 64 * MIB, pwhash.argon2id.MEMLIMIT_MIN, 2**42
            ),
        ),
        bucket_min=_int(env, "TIPBOX_BUCKET_MIN", 1024, 1, 2**30),
        bucket_steps=_steps(env),
        cookie_secure=_bool(env, "TIPBOX_COOKIE_SECURE"),
        rate_limit_session=_limit(env, "TIPBOX_RATE_LIMIT_SESSION", DEFAULT_RATE_LIMIT_SESSION),
        rate_limit_global=_limit(env, "TIPBOX_RATE_LIMIT_GLOBAL", DEFAULT_RATE_LIMIT_GLOBAL),
    )


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    value = env.get(name, "").strip()
    if not value:
        return default
    if "\x00" in value:
        raise ConfigError(f"{name} is not a valid path")
    return Path(value).expanduser()


def _name(value: str) -> str:
    name = " ".join(value.split())
    if not name or len(name) > MAX_NAME_LENGTH or _CONTROL.search(name):
        raise ConfigError(
            f"TIPBOX_NEWSROOM_NAME must be 1 to {MAX_NAME_LENGTH} printable characters"
        )
    return name


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = env.get(name, "").strip().replace("_", "")
    if not value:
        return default
    if not value.isascii() or not value.isdigit():
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def _optional_int(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    if not env.get(name, "").strip():
        return None
    return _int(env, name, low, low, high)


def _steps(env: Mapping[str, str]) -> int:
    steps = _int(env, "TIPBOX_BUCKET_STEPS", 4, 1, max(padding.STEPS))
    if steps not in padding.STEPS:
        choices = ", ".join(map(str, padding.STEPS))
        raise ConfigError(f"TIPBOX_BUCKET_STEPS must be one of {choices}, got {steps}")
    return steps


def _bool(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _limit(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        limits.parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name} is not a rate limit such as '20 per minute;200 per hour'"
        ) from None
    return value
