"""Source sessions: encrypted, authenticated cookies that end on their own.

A session holds what was derived from a codename (the source id and the reply identity's
secret), the CSRF token, flashed messages and the summary of the last submission; and a newly
generated codename, only until its first submission or logout, so that its page shows the same
words on every reload (the server never writes it anywhere). Flask's default cookie is signed
but readable, so this interface seals the payload instead::

    cookie  = base64url(nonce || ChaCha20-Poly1305(key, nonce, payload, aad=SESSION_AAD_V1))
    payload = compact tagged JSON {"i": issue time (unix seconds), "d": session data}
    key     = HKDF-SHA-256(instance secret, salt "", info SESSION_KEY_LABEL_V1)

The nonce is 12 random bytes per cookie. The instance secret is 32 random bytes in a 0600 file
in the secrets folder, created on first start; losing it only logs every source out. The
lifetime is absolute and enforced here from the sealed issue time, not from cookie expiry: an
older session opens as a new empty one marked ``expired``, and its cookie is deleted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
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
from app.errors import ConfigError
from app.files import atomic_write

SESSION_KEY_LABEL_V1 = b"TIPBOX_SESSION_KEY_V1"
CSRF_KEY_LABEL_V1 = b"TIPBOX_CSRF_KEY_V1"
SESSION_AAD_V1 = b"TIPBOX_SESSION_V1"
SECRET_SIZE = 32
NONCE_SIZE = 12
MAX_COOKIE_CHARS = 4000
# A cookie from the future (clock change) is accepted only within this skew.
CLOCK_SKEW_SECONDS = 300
INSTANCE_KEY_FILE = "instance.key"
COOKIE_NAME = "tipbox"


class SourceSession(SecureCookieSession):
    """A session with its issue time, and whether the cookie it replaces had expired."""

    def __init__(self, data: dict[str, Any] | None = None, *, issued: int, expired: bool = False):
        super().__init__(data)
        self.issued = issued
        self.expired = expired
        if expired:
            # Saving an empty modified session deletes the stale cookie.
            self.modified = True

    def restart(self, now: int, keep: Iterable[str] = ()) -> None:
        """Forget everything but ``keep`` and start a new lifetime (on sign-in: no fixation)."""
        kept = {name: self[name] for name in keep if name in self}
        self.clear()
        self.update(kept)
        self.issued = now
        self.expired = False


class EncryptedSessionInterface(SessionInterface):
    """Seals the whole session into the cookie with ChaCha20-Poly1305."""

    serializer = TaggedJSONSerializer()

    def __init__(
        self, secret: bytes, lifetime: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._aead = ChaCha20Poly1305(hkdf(secret, b"", SESSION_KEY_LABEL_V1))
        self.lifetime = lifetime
        self.clock = clock

    def now(self) -> int:
        """The current time in whole seconds, from the injectable clock."""
        return int(self.clock())

    def seal(self, issued: int, data: dict[str, Any]) -> str:
        """The cookie value for ``data`` issued at ``issued``."""
        payload = self.serializer.dumps({"i": issued, "d": data}).encode("utf-8")
        nonce = os.urandom(NONCE_SIZE)
        sealed = nonce + self._aead.encrypt(nonce, payload, SESSION_AAD_V1)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def unseal(self, token: str) -> tuple[int, dict[str, Any]] | None:
        """The issue time and data in a cookie value, or ``None`` if it is not authentic."""
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
        issued, data = value.get("i"), value.get("d")
        if type(issued) is not int or not isinstance(data, dict):
            return None
        return issued, data

    def open_session(self, app: Flask, request: Request) -> SourceSession:
        """The session in the request's cookie, or a new one if absent, forged or expired."""
        now = self.now()
        token = request.cookies.get(self.get_cookie_name(app))
        opened = self.unseal(token) if token else None
        if opened is None:
            return SourceSession(issued=now)
        issued, data = opened
        if not issued - CLOCK_SKEW_SECONDS <= now < issued + self.lifetime:
            return SourceSession(issued=now, expired=True)
        return SourceSession(data, issued=issued)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        """Write the sealed cookie when the session changed, or delete it once empty."""
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        if session.accessed:
            response.vary.add("Cookie")
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
            self.seal(session.issued, dict(session)),
            domain=domain,
            path=path,
            secure=self.get_cookie_secure(app),
            httponly=self.get_cookie_httponly(app),
            samesite=self.get_cookie_samesite(app),
        )


def load_secret(path: Path) -> bytes:
    """The 32-byte secret in ``path``, created 0600 (in a 0700 folder) if it does not exist.

    :raises ConfigError: if the file is not exactly 32 bytes or others can read it.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        # atomic_write links the finished file into place and refuses to replace one: when
        # several workers start at once, exactly one secret wins and the others read it.
        with (
            contextlib.suppress(FileExistsError),
            atomic_write(path, 0o600) as handle,
        ):
            handle.write(secrets.token_bytes(SECRET_SIZE))
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} can be read by other users", hint=f"run 'chmod 600 {path}'")
    secret = path.read_bytes()
    if len(secret) != SECRET_SIZE:
        raise ConfigError(f"{path} is not a {SECRET_SIZE}-byte secret")
    return secret


def install(app: Flask, secret: bytes, lifetime: int, cookie: str, secure: bool) -> None:
    """The encrypted session and the CSRF signing key, both from ``secret``, on ``app``.

    Shared by the source and journalist apps, which differ only in secret, lifetime and cookie.
    """
    app.secret_key = hkdf(secret, b"", CSRF_KEY_LABEL_V1)
    app.session_interface = EncryptedSessionInterface(secret, lifetime)
    app.config.update(
        SESSION_COOKIE_NAME=cookie,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
    )


def init_app(app: Flask, config: Config) -> None:
    """Install the source app's encrypted session from the instance secret."""
    secret = load_secret(config.secrets_dir / INSTANCE_KEY_FILE)
    install(app, secret, config.session_seconds, COOKIE_NAME, config.cookie_secure)
