"""Source sessions: encrypted, authenticated cookies that end on their own.

A session holds what was derived from a codename (the source id and the reply identity's
secret), the CSRF token, flashed messages and the summary of the last submission; and a newly
generated codename, only until its first submission or logout, so that its page shows the same
words on every reload (the server never writes it anywhere). Flask's default cookie is signed
but readable, so this interface seals the payload instead::

    cookie  = base64url(nonce || ChaCha20-Poly1305(key, nonce, payload, aad=SESSION_AAD_V1))
    payload = compact tagged JSON {"i": issue time (unix seconds), "n": session id, "d": data}
    key     = HKDF-SHA-256(instance secret, salt "", info SESSION_KEY_LABEL_V1)

The nonce is 12 random bytes per cookie; the session id is 16 random bytes per session (a new
one at every sign-in or logout). The instance secret is 32 random bytes in a 0600 file in the
secrets folder, created on first start; losing it only logs every source out. The lifetime is
absolute and enforced here from the sealed issue time, not from cookie expiry: an older session
opens as a new empty one marked ``expired``, and its cookie is deleted.

A cookie is the whole session, so deleting it in the browser does not end it: a copy taken
before logout would still open. So a session that is cleared (logout, or a sign-in that replaces
it) is recorded as ended (:class:`EndedSessions`), and a cookie of an ended session opens as an
expired one, in every worker and after a restart. Cookies without a session id (made before
ids existed) open as no session at all.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from flask import Flask, Request, Response
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSession, SessionInterface

from app.config import Config
from app.crypto.header import hkdf
from app.db import Database
from app.errors import ConfigError
from app.files import atomic_write
from app.server.startup import reason

SESSION_KEY_LABEL_V1 = b"TIPBOX_SESSION_KEY_V1"
CSRF_KEY_LABEL_V1 = b"TIPBOX_CSRF_KEY_V1"
SESSION_AAD_V1 = b"TIPBOX_SESSION_V1"
ENDED_KEY_LABEL_V1 = b"TIPBOX_ENDED_SESSION_KEY_V1"
SESSION_ID_SIZE = 16
ENDED_DIGEST_SIZE = 16
# Ended sessions are kept until their natural expiry rounded up to this, so the table tells
# nothing finer about when a session began or ended.
ENDED_ROUNDING = 3600
SECRET_SIZE = 32
NONCE_SIZE = 12
MAX_COOKIE_CHARS = 4000
# A cookie from the future (clock change) is accepted only within this skew.
CLOCK_SKEW_SECONDS = 300
INSTANCE_KEY_FILE = "instance.key"
COOKIE_NAME = "tipbox"


class SourceSession(SecureCookieSession):
    """A session with its issue time, and whether the cookie it replaces had expired."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        issued: int,
        expired: bool = False,
        session_id: bytes | None = None,
    ):
        super().__init__(data)
        self.issued = issued
        self.expired = expired
        # Only a session that came in a cookie has an id someone else may hold a copy of.
        self.from_cookie = session_id is not None
        self.session_id = session_id or os.urandom(SESSION_ID_SIZE)
        self.ending: list[tuple[bytes, int]] = []
        if expired:
            # Saving an empty modified session deletes the stale cookie.
            self.modified = True

    def clear(self) -> None:
        """Forget everything; a session that came in a cookie ends for good (on the server)."""
        if self.from_cookie:
            self.ending.append((self.session_id, self.issued))
        self.from_cookie = False
        self.session_id = os.urandom(SESSION_ID_SIZE)
        super().clear()

    def restart(self, now: int, keep: Iterable[str] = ()) -> None:
        """Forget everything but ``keep`` and start a new lifetime (on sign-in: no fixation)."""
        kept = {name: self[name] for name in keep if name in self}
        self.clear()
        self.update(kept)
        self.issued = now
        self.expired = False


class EndedSessions:
    """The sessions that ended before their time, until they would have expired anyway.

    Kept in a table of the store's SQLite file rather than in the workers' shared memory
    (app.server.counters): the record must outlive a restart (the instance secret does, so a copied
    cookie would open again), be seen by every worker, and never be pushed out (a flood of new
    sessions must not bring an ended one back). It cannot be linked to a source: a row is an
    HMAC of the random session id (never derived from a codename) under a key from the
    instance secret, and the session's expiry rounded up to the hour, not when it ended. The
    table is :mod:`app.db`'s; it is only reached once the app has migrated the database.
    """

    def __init__(self, database: Database, secret: bytes) -> None:
        self.database = database
        self._key = hkdf(secret, b"", ENDED_KEY_LABEL_V1)

    def _digest(self, session_id: bytes) -> bytes:
        return hmac.new(self._key, session_id, hashlib.sha256).digest()[:ENDED_DIGEST_SIZE]

    def add(self, session_id: bytes, until: int, now: int) -> None:
        """Record a session as ended until ``until`` (rounded up); forget what has expired."""
        until = -(-until // ENDED_ROUNDING) * ENDED_ROUNDING
        with self.database.connect() as db:
            db.execute("DELETE FROM ended_sessions WHERE until <= ?", (now,))
            db.execute(
                "INSERT OR IGNORE INTO ended_sessions VALUES (?, ?)",
                (self._digest(session_id), until),
            )

    def __contains__(self, session_id: bytes) -> bool:
        with self.database.connect() as db:
            row = db.execute(
                "SELECT 1 FROM ended_sessions WHERE digest = ?", (self._digest(session_id),)
            ).fetchone()
        return row is not None


class EncryptedSessionInterface(SessionInterface):
    """Seals the whole session into the cookie with ChaCha20-Poly1305."""

    serializer = TaggedJSONSerializer()

    def __init__(
        self,
        secret: bytes,
        lifetime: int,
        clock: Callable[[], float] = time.time,
        ended: EndedSessions | None = None,
    ) -> None:
        self._aead = ChaCha20Poly1305(hkdf(secret, b"", SESSION_KEY_LABEL_V1))
        self.lifetime = lifetime
        self.clock = clock
        self.ended = ended

    def now(self) -> int:
        """The current time in whole seconds, from the injectable clock."""
        return int(self.clock())

    def seal(self, issued: int, data: dict[str, Any], session_id: bytes | None = None) -> str:
        """The cookie value for ``data`` issued at ``issued`` (a new session id if none)."""
        session_id = session_id or os.urandom(SESSION_ID_SIZE)
        payload = self.serializer.dumps({"i": issued, "n": session_id, "d": data}).encode()
        nonce = os.urandom(NONCE_SIZE)
        sealed = nonce + self._aead.encrypt(nonce, payload, SESSION_AAD_V1)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def unseal(self, token: str) -> tuple[int, dict[str, Any]] | None:
        """The issue time and data in a cookie value, or ``None`` if it is not authentic."""
        opened = self.open_token(token)
        return None if opened is None else (opened[0], opened[2])

    def open_token(self, token: str) -> tuple[int, bytes, dict[str, Any]] | None:
        """The issue time, session id and data in a cookie value, if it is authentic."""
        if len(token) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload = self._aead.decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], SESSION_AAD_V1)
            value = self.serializer.loads(payload.decode("utf-8"))
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            return None
        if not isinstance(value, dict):
            return None
        issued, session_id, data = value.get("i"), value.get("n"), value.get("d")
        if type(issued) is not int or not isinstance(data, dict):
            return None
        if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_SIZE:
            return None
        return issued, session_id, data

    def open_session(self, app: Flask, request: Request) -> SourceSession:
        """The session in the request's cookie, or a new one if absent, forged or expired."""
        now = self.now()
        token = request.cookies.get(self.get_cookie_name(app))
        opened = self.open_token(token) if token else None
        if opened is None:
            return SourceSession(issued=now)
        issued, session_id, data = opened
        if not issued - CLOCK_SKEW_SECONDS <= now < issued + self.lifetime:
            return SourceSession(issued=now, expired=True)
        if self.ended is not None and session_id in self.ended:
            return SourceSession(issued=now, expired=True)
        return SourceSession(data, issued=issued, session_id=session_id)

    def _end(self, session: SourceSession) -> None:
        """Record the sessions that ``session`` cleared as ended."""
        if self.ended is not None:
            for session_id, issued in session.ending:
                self.ended.add(session_id, issued + self.lifetime, self.now())
        session.ending.clear()

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        """Write the sealed cookie when the session changed, or delete it once empty."""
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        if session.accessed:
            response.vary.add("Cookie")
        self._end(session)
        if not session.modified:
            return
        if not session:
            response.delete_cookie(
                name,
                domain=domain,
                path=path,
                secure=self.get_cookie_secure(app),
                httponly=self.get_cookie_httponly(app),
                samesite=self.get_cookie_samesite(app),
            )
            return
        # No Expires: the cookie dies with the browser; the lifetime is enforced server-side.
        response.set_cookie(
            name,
            self.seal(session.issued, dict(session), session.session_id),
            domain=domain,
            path=path,
            secure=self.get_cookie_secure(app),
            httponly=self.get_cookie_httponly(app),
            samesite=self.get_cookie_samesite(app),
        )


def load_secret(path: Path) -> bytes:
    """The 32-byte secret in ``path``, created 0600 (in a 0700 folder) if it does not exist.

    :raises ConfigError: if the file is not exactly 32 bytes, others can read it, or it (or its
        folder) cannot be read or made.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the secrets folder {path.parent}: {reason(exc)}"
        ) from None
    try:
        if not path.exists():
            # atomic_write links the finished file into place and refuses to replace one: when
            # several workers start at once, exactly one secret wins and the others read it.
            with (
                contextlib.suppress(FileExistsError),
                atomic_write(path, 0o600) as handle,
            ):
                handle.write(secrets.token_bytes(SECRET_SIZE))
        mode, secret = path.stat().st_mode, path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read or create {path}: {reason(exc)}") from None
    if mode & 0o077:
        raise ConfigError(f"{path} can be read by other users", hint=f"run 'chmod 600 {path}'")
    if len(secret) != SECRET_SIZE:
        raise ConfigError(f"{path} is not a {SECRET_SIZE}-byte secret")
    return secret


def install(
    app: Flask, secret: bytes, lifetime: int, cookie: str, secure: bool, database: Database
) -> None:
    """The encrypted session and the CSRF signing key, both from ``secret``, on ``app``; ended
    sessions are recorded in ``database``.

    Shared by the source and journalist apps, which differ only in secret, lifetime and cookie.
    """
    app.secret_key = hkdf(secret, b"", CSRF_KEY_LABEL_V1)
    ended = EndedSessions(database, secret)
    app.session_interface = EncryptedSessionInterface(secret, lifetime, ended=ended)
    app.config.update(
        SESSION_COOKIE_NAME=cookie,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
    )


def init_app(app: Flask, config: Config, database: Database) -> None:
    """Install the source app's encrypted session from the instance secret."""
    secret = load_secret(config.secrets_dir / INSTANCE_KEY_FILE)
    install(app, secret, config.session_seconds, COOKIE_NAME, config.cookie_secure, database)
