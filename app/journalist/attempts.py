"""Journalists' login attempts, for throttling: keyed hashes of typed usernames, one minute.

Whatever is typed as a username at a failed login may be a typo of a real name, a password typed
in the wrong field, or a stranger's guess: none of it is kept. A row of ``login_attempts`` is
the HMAC-SHA-256 (first 16 bytes) of the normalised typed name under a key derived from the
journalist app's secret with :data:`LOGIN_ATTEMPT_LABEL_V1` (so every worker and restart finds
the same rows, and the database alone cannot be used to test names), and the attempt's time.
Rows older than the throttling window go at each attempt and, since the next attempt may not
come for weeks, on a timer that runs while any row is left. A release before keyed hashes kept
the typed names themselves: the database's first migration deletes them (:mod:`app.db`). No
Flask here.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from app.crypto.header import hkdf

THROTTLE_SECONDS = 60
LOGIN_ATTEMPT_LABEL_V1 = b"TIPBOX_LOGIN_ATTEMPT_KEY_V1"
DIGEST_SIZE = 16

Connect = Callable[[], AbstractContextManager[sqlite3.Connection]]


class LoginAttempts:
    """The ``login_attempts`` table, reached through ``connect``, on ``clock``."""

    def __init__(
        self,
        connect: Connect,
        clock: Callable[[], float],
        secret: bytes | None,
        purge_delay: float = THROTTLE_SECONDS + 1,
    ) -> None:
        self._connect, self._clock, self.purge_delay = connect, clock, purge_delay
        # Without the app's secret (``tipbox user``, which never logs in) any key will do.
        self._key = hkdf(secret or os.urandom(32), b"", LOGIN_ATTEMPT_LABEL_V1)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def digest(self, name: str) -> bytes:
        """What is kept of a typed (normalised) username."""
        return hmac.new(self._key, name.encode(), hashlib.sha256).digest()[:DIGEST_SIZE]

    def record(self, db: sqlite3.Connection, typed: bytes, now: float) -> int:
        """Record an attempt in ``db``'s transaction; how many came before it this minute."""
        db.execute("DELETE FROM login_attempts WHERE at <= ?", (now - THROTTLE_SECONDS,))
        (tries,) = db.execute(
            "SELECT COUNT(*) FROM login_attempts WHERE username = ?", (typed,)
        ).fetchone()
        db.execute("INSERT INTO login_attempts VALUES (?, ?)", (typed, now))
        return int(tries)

    def purge(self) -> int:
        """Forget attempts older than the throttling window; how many are left."""
        with self._connect() as db:
            cutoff = self._clock() - THROTTLE_SECONDS
            db.execute("DELETE FROM login_attempts WHERE at <= ?", (cutoff,))
            (left,) = db.execute("SELECT COUNT(*) FROM login_attempts").fetchone()
        return int(left)

    def schedule_purge(self) -> None:
        """Purge in ``purge_delay`` seconds, unless that is already planned."""
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self.purge_delay, self._purge_on_timer)
            self._timer.daemon = True
            self._timer.start()

    def stop(self) -> None:
        """Cancel a planned purge (the rows wait for the next attempt): an app that is done
        leaves no timer thread, which a test's process could otherwise fork mid-query."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _purge_on_timer(self) -> None:
        with self._lock:
            self._timer = None
        left = 0
        # The database gone (a test's folder) or broken: the next attempt tries again.
        with contextlib.suppress(sqlite3.Error, OSError):
            left = self.purge()
        if left:
            self.schedule_purge()
