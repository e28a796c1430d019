"""The journalist app's settings: the source portal's :class:`app.config.Config` (folders, keys,
development mode, newsroom name) plus its own, read from the environment by :func:`load`.

| variable | default |
|---|---|
| ``TIPBOX_JOURNALIST_IDLE_MINUTES`` | 30 (a session ends after this long without a request) |
| ``TIPBOX_JOURNALIST_SESSION_MINUTES`` | 480 (absolute: a session never lasts longer) |
| ``TIPBOX_JOURNALIST_LOGIN_TRIES`` | 5 (login attempts per account per minute) |
| ``TIPBOX_PASSWORD_TIME_COST``, ``…_MEMORY_KIB``, ``…_PARALLELISM`` | 3, 65536, 4 (Argon2id) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.config import Config, load_config
from app.errors import ConfigError
from app.journalist.accounts import DEFAULT_TRIES, AccountError, PasswordCost, cost_from_env

MAX_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class JournalistConfig:
    """Everything the journalist app needs, validated."""

    base: Config = field(default_factory=Config)
    idle_minutes: int = 30
    session_minutes: int = 480
    login_tries: int = DEFAULT_TRIES
    password_cost: PasswordCost = field(default_factory=PasswordCost)

    @property
    def idle_seconds(self) -> int:
        """Idle timeout in seconds."""
        return self.idle_minutes * 60

    @property
    def session_seconds(self) -> int:
        """Absolute session lifetime in seconds."""
        return self.session_minutes * 60


def _minutes(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_MINUTES:
        raise ConfigError(f"{name} must be a whole number from 1 to {MAX_MINUTES}")
    return int(raw)


def load(env: Mapping[str, str]) -> JournalistConfig:
    """Build a :class:`JournalistConfig` from ``TIPBOX_*`` variables.

    :raises ConfigError: naming the first variable that is not valid.
    """
    try:
        cost = cost_from_env(env)
    except AccountError as exc:
        raise ConfigError(exc.message) from None
    return JournalistConfig(
        base=load_config(env),
        idle_minutes=_minutes(env, "TIPBOX_JOURNALIST_IDLE_MINUTES", 30),
        session_minutes=_minutes(env, "TIPBOX_JOURNALIST_SESSION_MINUTES", 480),
        login_tries=_minutes(env, "TIPBOX_JOURNALIST_LOGIN_TRIES", DEFAULT_TRIES),
        password_cost=cost,
    )
