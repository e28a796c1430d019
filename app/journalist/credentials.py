"""Server-side sessions and API tokens: random tokens handed out once, only their hashes kept.

A session token (32 random bytes) lives in the journalist's encrypted session cookie; the
``sessions`` table keeps its SHA-256, the account, and when it was made and last used. It ends
after ``idle`` seconds without a request or ``lifetime`` seconds in all, whichever comes first,
and at logout, password or TOTP reset, or account removal. API tokens (``tbx_…``) are made by a
journalist in the web app, shown once, and work until revoked. Both are 256-bit random values,
so a plain SHA-256 is enough to store them: there is nothing to brute-force. Both tables are in
the database (:mod:`app.db`) each class is given; ``accounts`` turns an id into a journalist. No
Flask here.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.days import today
from app.db import Database
from app.journalist.accounts import Accounts, Journalist

TOKEN_PREFIX = "tbx_"  # noqa: S105 - not a secret
MAX_TOKEN_NAME = 60
MAX_TOKENS = 20  # per journalist
TOUCH_SECONDS = 30  # a session's last use is recorded to this precision (idle timeout)


def digest(token: str) -> bytes:
    """What is stored for a token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class Sessions:
    """Journalists' web sessions, expiring after ``idle`` and ``lifetime`` seconds."""

    def __init__(
        self,
        database: Database,
        accounts: Accounts,
        idle: int,
        lifetime: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database, self.accounts = database, accounts
        self.idle, self.lifetime, self.clock = idle, lifetime, clock

    def start(self, journalist: Journalist) -> str:
        """A new session for ``journalist``; the token goes into the cookie, never the table."""
        token, now = secrets.token_urlsafe(32), self.clock()
        with self.database.connect() as db:
            db.execute(
                "DELETE FROM sessions WHERE seen <= ? OR created <= ?",
                (now - self.idle, now - self.lifetime),
            )
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?)", (digest(token), journalist.id, now, now)
            )
        return token

    def resume(self, token: str) -> Journalist | None:
        """The journalist of a live session (and the session is touched), or ``None``."""
        now, key = self.clock(), digest(token)
        with self.database.connect() as db:
            row = db.execute(
                "SELECT journalist_id, created, seen FROM sessions WHERE token_hash = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            if now - row[2] >= self.idle or now - row[1] >= self.lifetime or now < row[1] - 300:
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (key,))
                return None
            if now - row[2] >= TOUCH_SECONDS:  # a write per page view would cost an fsync each
                db.execute("UPDATE sessions SET seen = ? WHERE token_hash = ?", (now, key))
        return self.accounts.get(row[0])

    def end(self, token: str) -> None:
        """Forget a session (logout)."""
        with self.database.connect() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (digest(token),))


@dataclass(frozen=True)
class ApiToken:
    """A token's public description (the token itself is shown once, at creation)."""

    id: int
    name: str
    created_day: str


class ApiTokens:
    """Journalists' API tokens, stored hashed, revocable."""

    def __init__(self, database: Database, accounts: Accounts) -> None:
        self.database, self.accounts = database, accounts

    def create(self, journalist: Journalist, name: str) -> str:
        """A new token for ``journalist`` called ``name``; returned once, stored hashed."""
        label = " ".join(name.split())[:MAX_TOKEN_NAME] or "token"
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.database.connect() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM api_tokens WHERE journalist_id = ?", (journalist.id,)
            ).fetchone()
            if count >= MAX_TOKENS:
                raise ValueError(f"at most {MAX_TOKENS} tokens per journalist")
            db.execute(
                "INSERT INTO api_tokens (journalist_id, name, token_hash, created_day) "
                "VALUES (?, ?, ?, ?)",
                (journalist.id, label, digest(token), today()),
            )
        return token

    def of(self, journalist: Journalist) -> list[ApiToken]:
        """A journalist's tokens, oldest first."""
        with self.database.connect() as db:
            rows = db.execute(
                "SELECT id, name, created_day FROM api_tokens WHERE journalist_id = ? ORDER BY id",
                (journalist.id,),
            ).fetchall()
        return [ApiToken(*row) for row in rows]

    def revoke(self, journalist: Journalist, token_id: int) -> bool:
        """Delete one of the journalist's tokens; whether it existed."""
        with self.database.connect() as db:
            return (
                db.execute(
                    "DELETE FROM api_tokens WHERE id = ? AND journalist_id = ?",
                    (token_id, journalist.id),
                ).rowcount
                == 1
            )

    def resolve(self, token: str) -> Journalist | None:
        """The journalist a presented token belongs to, if it is valid."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self.database.connect() as db:
            row = db.execute(
                "SELECT journalist_id FROM api_tokens WHERE token_hash = ?", (digest(token),)
            ).fetchone()
        return self.accounts.get(row[0]) if row else None
