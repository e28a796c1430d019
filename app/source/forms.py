"""The source's forms, read from the request's fields.

Files are not a form field: they stream into the store as they arrive (see :mod:`app.source.upload`)
and the view collects them with ``request.pending_items()``. The CSRF token is checked by
Flask-WTF's ``CSRFProtect`` before any view runs; templates render it as the first field, so
the streaming parser has checked it before it writes a single byte of a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_MESSAGE_CHARS = 100_000
# Far longer than any codename; only keeps an absurd input from reaching the KDF whole.
MAX_CODENAME_CHARS = 1_000
HONEYPOT = "website"


@dataclass(frozen=True)
class SubmitForm:
    """A message, and the ``website`` honeypot that people never see and bots fill in."""

    message: str
    honeypot: str

    @classmethod
    def read(cls, fields: Mapping[str, str]) -> SubmitForm:
        """The form as sent; browser line endings (CRLF) become LF, so length is fair."""
        message = fields.get("message", "").replace("\r\n", "\n")
        return cls(message, fields.get(HONEYPOT, ""))

    @property
    def is_bot(self) -> bool:
        """Whether the honeypot was filled in."""
        return bool(self.honeypot.strip())

    @property
    def has_message(self) -> bool:
        """Whether there is a message worth storing (not only blank space)."""
        return bool(self.message.strip())

    @property
    def too_long(self) -> bool:
        """Whether the message is over :data:`MAX_MESSAGE_CHARS` characters."""
        return len(self.message) > MAX_MESSAGE_CHARS


@dataclass(frozen=True)
class LoginForm:
    """A returning source's codename, cut to a bounded length."""

    codename: str

    @classmethod
    def read(cls, fields: Mapping[str, str]) -> LoginForm:
        """The form as sent."""
        return cls(fields.get("codename", "")[:MAX_CODENAME_CHARS])
