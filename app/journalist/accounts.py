"""Journalist accounts: usernames, Argon2id passwords, TOTP, and login throttling.

Accounts live in the store's SQLite file (:mod:`app.db` owns its tables), in tables of their
own, reached without the store so that the ``tipbox user`` command works without the web app or
the newsroom keys. What they keep is what security needs and nothing about sources:

- ``journalists``: username, Argon2id hash (argon2-cffi, PHC string), TOTP secret, the last
  TOTP time step used (a code is never accepted twice), admin flag, the day the account was made;
- ``login_attempts``: a keyed hash of the username typed at each login attempt and its time,
  kept one minute (throttling; see :mod:`app.journalist.attempts`);
- ``sessions`` and ``api_tokens`` (see :mod:`app.journalist.credentials`): SHA-256 of random
  tokens, never the tokens.

:meth:`Accounts.login` answers the same ``None`` for an unknown user, a wrong password, a wrong
or reused code and a locked account, after the same work (one Argon2id verification), so a
response tells nothing about which it was. The cost of that verification is the stored hash's,
not the setting's (a hash is brought up to the setting only at its owner's next login), so an
unknown username is verified against the hash of an existing account, picked by the keyed hash
of the typed name: it costs what some real account costs, the same one each time, under any
setting. No Flask here.
"""

from __future__ import annotations

import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app import words
from app.days import today
from app.db import Database
from app.errors import TipboxError
from app.journalist.attempts import THROTTLE_SECONDS, LoginAttempts

MIN_PASSWORD = 14
MAX_PASSWORD = 1024  # longer inputs are refused before they reach Argon2id
PASSPHRASE_WORDS = 7
TOTP_DIGITS = 6
TOTP_STEP = 30
TOTP_WINDOW = 1  # steps accepted either side of now
DEFAULT_TRIES = 5
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")


class AccountError(TipboxError):
    """the account could not be changed"""


@dataclass(frozen=True)
class PasswordCost:
    """Argon2id parameters for journalists' passwords (argon2-cffi's defaults, RFC 9106)."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    def hasher(self) -> PasswordHasher:
        """An argon2-cffi hasher with these parameters (Argon2id)."""
        return PasswordHasher(self.time_cost, self.memory_kib, self.parallelism)


def cost_from_env(env: Mapping[str, str]) -> PasswordCost:
    """``TIPBOX_PASSWORD_TIME_COST``, ``…_MEMORY_KIB``, ``…_PARALLELISM`` (defaults otherwise)."""
    default = PasswordCost()
    values = []
    for name, low in (("TIME_COST", 1), ("MEMORY_KIB", 8), ("PARALLELISM", 1)):
        key = f"TIPBOX_PASSWORD_{name}"
        raw = env.get(key, "").strip()
        if raw and (not raw.isdigit() or int(raw) < low):
            raise AccountError(f"{key} must be a whole number of at least {low}")
        values.append(int(raw) if raw else getattr(default, name.lower()))
    time_cost, memory, lanes = values
    if memory < 8 * lanes:
        raise AccountError("TIPBOX_PASSWORD_MEMORY_KIB must be at least 8 per lane")
    return PasswordCost(time_cost, memory, lanes)


@dataclass(frozen=True)
class Journalist:
    """A journalist's account, as the apps see it (no secrets)."""

    id: int
    username: str
    is_admin: bool
    created_day: str


def suggest_passphrase() -> str:
    """A fresh diceware passphrase (seven words, about 90 bits)."""
    return words.generate_codename("en", PASSPHRASE_WORDS)


def normalise_username(name: str) -> str:
    """Usernames are compared in lower case, without surrounding blanks."""
    return name.strip().lower()[:64]


def check_username(name: str) -> str:
    """The normalised username, if it is 1 to 32 of ``a-z 0-9 . _ -`` (starting alphanumeric)."""
    name = normalise_username(name)
    if not _USERNAME.fullmatch(name):
        raise AccountError(
            "a username is 1 to 32 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    """The password, if it is long enough (and not absurdly long)."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must have at most {MAX_PASSWORD} characters")
    return password


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The TOTP time step within ±1 of ``now`` whose code is ``code``, if any."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
    current = int(now // TOTP_STEP)
    found = None
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the enrolment QR code."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).provisioning_uri(
        name=username, issuer_name=issuer
    )


class Accounts:
    """The journalists' accounts, in the tables ``journalists`` and ``login_attempts`` of
    ``database`` (the store's, :mod:`app.db`).

    ``secret`` keys the hashes of typed usernames (the journalist app passes its own, so every
    worker and restart agrees); without one (``tipbox user``, which never logs in) a random key
    is used.
    """

    def __init__(
        self,
        database: Database,
        cost: PasswordCost | None = None,
        tries_per_minute: int = DEFAULT_TRIES,
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
        purge_delay: float = THROTTLE_SECONDS + 1,
    ) -> None:
        self.database, self.clock, self.tries = database, clock, tries_per_minute
        self.hasher = (cost or PasswordCost()).hasher()
        # Unknown usernames are checked against this, so they cost what a real account costs.
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        self.attempts = LoginAttempts(database.connect, lambda: self.clock(), secret, purge_delay)

    def _one(self, where: str, args: tuple[object, ...]) -> Journalist | None:
        sql = f"SELECT id, username, is_admin, created_day FROM journalists WHERE {where}"  # noqa: S608 - fixed text
        with self.database.connect() as db:
            row = db.execute(sql, args).fetchone()
        return Journalist(row[0], row[1], bool(row[2]), row[3]) if row else None

    def get(self, journalist_id: int) -> Journalist | None:
        """The account with this id."""
        return self._one("id = ?", (journalist_id,))

    def find(self, username: str) -> Journalist | None:
        """The account with this username."""
        return self._one("username = ?", (normalise_username(username),))

    def all(self) -> list[Journalist]:
        """Every account, by username."""
        with self.database.connect() as db:
            rows = db.execute(
                "SELECT id, username, is_admin, created_day FROM journalists ORDER BY username"
            ).fetchall()
        return [Journalist(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def _existing(self, username: str) -> Journalist:
        found = self.find(username)
        if found is None:
            raise AccountError(f"no journalist is called {normalise_username(username)!r}")
        return found

    def add(self, username: str, password: str, admin: bool = False) -> tuple[Journalist, str]:
        """Create an account; return it and its new TOTP secret (shown once, for enrolment)."""
        name, secret = check_username(username), pyotp.random_base32()
        digest = self.hasher.hash(check_password(password))
        try:
            with self.database.connect() as db:
                db.execute(
                    "INSERT INTO journalists (username, password_hash, totp_secret, is_admin, "
                    "created_day) VALUES (?, ?, ?, ?, ?)",
                    (name, digest, secret, int(admin), today()),
                )
        except sqlite3.IntegrityError:
            raise AccountError(f"a journalist called {name!r} already exists") from None
        return self._existing(name), secret

    def remove(self, username: str) -> Journalist:
        """Delete an account with its sessions and API tokens."""
        found = self._existing(username)
        with self.database.connect() as db:
            db.execute("DELETE FROM journalists WHERE id = ?", (found.id,))
        return found

    @staticmethod
    def _end_credentials(db: sqlite3.Connection, journalist_id: int) -> None:
        """A reset means the old credentials may be known to someone else: every session and
        API token made with them ends too (a token would otherwise outlive the reset)."""
        db.execute("DELETE FROM sessions WHERE journalist_id = ?", (journalist_id,))
        db.execute("DELETE FROM api_tokens WHERE journalist_id = ?", (journalist_id,))

    def set_password(self, username: str, password: str) -> Journalist:
        """Replace a password; every session and API token of the account ends."""
        found = self._existing(username)
        digest = self.hasher.hash(check_password(password))
        with self.database.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE journalists SET password_hash = ? WHERE id = ?", (digest, found.id))
            self._end_credentials(db, found.id)
            db.execute("COMMIT")
        return found

    def reset_totp(self, username: str) -> tuple[Journalist, str]:
        """A new TOTP secret (returned, for enrolment); every session and API token ends."""
        found, secret = self._existing(username), pyotp.random_base32()
        with self.database.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE journalists SET totp_secret = ?, totp_step = 0 WHERE id = ?",
                (secret, found.id),
            )
            self._end_credentials(db, found.id)
            db.execute("COMMIT")
        return found, secret

    def verify_password(self, journalist_id: int, password: str) -> bool:
        """Whether ``password`` is this account's (for changing it)."""
        with self.database.connect() as db:
            row = db.execute(
                "SELECT password_hash FROM journalists WHERE id = ?", (journalist_id,)
            ).fetchone()
        return self._verify(row[0] if row else None, password)

    def _verify(self, digest: str | None, password: str) -> bool:
        candidate = password[:MAX_PASSWORD]
        try:
            return self.hasher.verify(digest or self._dummy, candidate) and digest is not None
        except (VerificationError, InvalidHashError):
            return False

    def _attempt(self, name: str, now: float) -> tuple[int, tuple[int, str, str, int] | None, str]:
        """Record an attempt; return how many came before it this minute, the account, and the
        hash to verify against if there is no such account (see the module docstring)."""
        typed = self.attempts.digest(name)
        with self.database.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            tries = self.attempts.record(db, typed, now)
            row = db.execute(
                "SELECT id, password_hash, totp_secret, totp_step FROM journalists "
                "WHERE username = ?",
                (name,),
            ).fetchone()
            hashes = db.execute("SELECT password_hash FROM journalists ORDER BY id").fetchall()
            db.execute("COMMIT")
        self.attempts.schedule_purge()
        pick = int.from_bytes(typed[:8], "big") % len(hashes) if hashes else 0
        return tries, row, hashes[pick][0] if hashes else self._dummy

    def purge_attempts(self) -> int:
        """Forget login attempts older than the throttling window; how many are left."""
        return self.attempts.purge()

    def login(self, username: str, password: str, code: str) -> Journalist | None:
        """The account if all three are right and the account is not throttled, else ``None``."""
        name, now = normalise_username(username), self.clock()
        tries, row, stand_in = self._attempt(name, now)
        password_ok = self._verify(row[1] if row else stand_in, password)
        if row is None or not password_ok or tries >= self.tries:
            return None
        step = matching_step(row[2], code, now)
        if step is None:
            return None
        with self.database.connect() as db:  # claim the step: a code is good once, even in a race
            claimed = db.execute(
                "UPDATE journalists SET totp_step = ? WHERE id = ? AND totp_step < ?",
                (step, row[0], step),
            ).rowcount
        if claimed != 1:
            return None
        self._rehash(row[0], row[1], password)
        return self.get(row[0])

    def _rehash(self, journalist_id: int, digest: str, password: str) -> None:
        """Bring a hash up to the configured cost after a successful login."""
        if self.hasher.check_needs_rehash(digest):
            with self.database.connect() as db:
                db.execute(
                    "UPDATE journalists SET password_hash = ? WHERE id = ?",
                    (self.hasher.hash(password), journalist_id),
                )
