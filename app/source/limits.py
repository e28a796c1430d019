"""Rate limits on the work a request makes the server do, per browser session and for the whole
instance.

Behind Tor every source arrives from the same local address, so a per-address limit means
nothing and is never used (the app never reads a client address). Two limits apply instead:
one keyed by a random value kept in the (encrypted) session, which is not the source id so the
limiter's memory never links to a source, and one global.

Only work actually done is counted, at the moment it is about to be done: a codename derivation
(Argon2id), the first file of an upload written to disk, a submission stored. The view (or the
upload parser) calls :func:`spend` just before; a request is charged once however many of those
it does. Counting requests instead (every POST, as before) let anyone lock every source out:
300 POSTs with no cookie and no token, refused with 400 at once, used up the instance's minute.
Now such a request never reaches :func:`spend` (CSRF is checked first), so it costs nothing
shared, and neither does a refusal: a 429 counts in no window (:meth:`Counters.take`).

A breach is a 429, rendered as the generic error page. The counters are in memory, shared by
all of a server's workers (:mod:`app.server.counters`), so a limit means what it says whatever the
number of workers.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import limits as parsing
from flask import Flask, abort, current_app, g, session

from app.config import Config
from app.server.counters import ENV, Counters

SESSION_KEY = "r"
EXTENSION = "tipbox.limits"
_CHARGED = "tipbox_charged"


@dataclass(frozen=True)
class Window:
    """One limit: so many units per so many seconds."""

    amount: int
    seconds: int


@dataclass(frozen=True)
class RateLimits:
    """The session's windows and the instance's, over one set of shared counters."""

    counters: Counters
    per_session: tuple[Window, ...]
    per_instance: tuple[Window, ...]

    def take(self, session_value: str) -> bool:
        """Count one unit for ``session_value`` and the instance, unless a window is full."""
        windows = [
            (f"session/{session_value}/{w.amount}/{w.seconds}", w.seconds, w.amount)
            for w in self.per_session
        ] + [(f"global/{w.amount}/{w.seconds}", w.seconds, w.amount) for w in self.per_instance]
        return self.counters.take(windows)


def session_key() -> str:
    """A random value per browser session (created on first use)."""
    value = session.get(SESSION_KEY)
    if not isinstance(value, str):
        value = secrets.token_urlsafe(12)
        session[SESSION_KEY] = value
    return value


def spend() -> None:
    """Charge this request one unit of work (once per request), or refuse it with a 429.

    An app without :func:`init_app` (a bare app around :mod:`app.source.upload`) has no limits."""
    rate_limits: RateLimits | None = current_app.extensions.get(EXTENSION)
    if rate_limits is None or g.get(_CHARGED):
        return
    if not rate_limits.take(session_key()):
        abort(429)
    g.setdefault(_CHARGED, True)


def _windows(text: str) -> tuple[Window, ...]:
    return tuple(Window(item.amount, item.get_expiry()) for item in parsing.parse_many(text))


def init_app(app: Flask, config: Config) -> RateLimits:
    """Attach the limits of ``config``, counted in the server's shared memory file (named in
    ``TIPBOX_LIMITS_FD`` by the Gunicorn master) or, without one, in counters of this app's."""
    raw = os.environ.get(ENV, "").strip()
    rate_limits = RateLimits(
        Counters(int(raw) if raw else None),
        _windows(config.rate_limit_session),
        _windows(config.rate_limit_global),
    )
    app.extensions[EXTENSION] = rate_limits
    return rate_limits
