"""Rate limits for the costly requests, per browser session and for the whole instance.

Behind Tor every source arrives from the same local address, so a per-address limit means
nothing and is never used (the app never reads a client address). Two limits apply instead:
one keyed by a random value kept in the (encrypted) session, which is not the source id so the
limiter's memory never links to a source, and one global. Only costly requests count: every
POST (uploads, logins, deletions) and the GETs that run the codename derivation. A breach is a
429, rendered as the generic error page. The counters are in memory, shared by all of a
server's workers (:mod:`app.counters`), so a limit means what it says whatever the number of
workers.
"""

from __future__ import annotations

import secrets

from flask import Flask, request, session
from flask_limiter import ApplicationLimit, Limiter

from app import counters
from app.config import Config

SESSION_KEY = "r"
GLOBAL_KEY = "tipbox"
# GETs that derive keys from a codename (Argon2id): as costly as a POST.
KDF_ENDPOINTS = frozenset({"source.generate"})


def session_key() -> str:
    """A random value per browser session (created on first use)."""
    value = session.get(SESSION_KEY)
    if not isinstance(value, str):
        value = secrets.token_urlsafe(12)
        session[SESSION_KEY] = value
    return value


def global_key() -> str:
    """The same key for every request."""
    return GLOBAL_KEY


def is_cheap() -> bool:
    """Whether the current request is exempt from the limits."""
    return request.method != "POST" and request.endpoint not in KDF_ENDPOINTS


def init_app(app: Flask, config: Config) -> Limiter:
    """Attach a limiter with shared in-memory counters and the two limits from ``config``."""
    limiter = Limiter(
        key_func=session_key,
        application_limits=[
            ApplicationLimit(
                config.rate_limit_session,
                key_function=session_key,
                scope="session",
                exempt_when=is_cheap,
            ),
            ApplicationLimit(
                config.rate_limit_global,
                key_function=global_key,
                scope="global",
                exempt_when=is_cheap,
            ),
        ],
        storage_uri=f"{counters.SCHEME}://",
        headers_enabled=False,
    )
    limiter.init_app(app)
    return limiter
