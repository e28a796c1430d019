"""What the journalist app holds while it runs: config, store, accounts, sessions, tokens, inbox.

Built once by :func:`init_app` and kept on the app; it fails closed like the source app (no
valid newsroom recipient, an unsafe secret, a data folder or database that cannot be written,
a database newer than the code: no service, see :mod:`app.server.startup`). Every part is given
the one :class:`~app.db.Database`, migrated here first. The cookie is the source app's encrypted
session (:class:`~.session.EncryptedSessionInterface`) under its own name and with
its own instance secret; it carries the CSRF token, flashed messages and the random session
token whose hash :class:`~app.journalist.credentials.Sessions` keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any, cast

from flask import Flask, Request, current_app, g

from app.db import DATABASE, Database
from app.journalist.accounts import Accounts
from app.journalist.config import JournalistConfig
from app.journalist.credentials import ApiTokens, Sessions
from app.journalist.inbox import Inbox
from app.journalist.replies import ReplySink
from app.server import session, startup
from app.server.newsroom import load_recipients
from app.server.session import load_secret
from app.server.store import Store

SECRET_FILE = "journalist.key"  # noqa: S105 - a file name
COOKIE_NAME = "tipbox_journalist"
_EXTENSION = "tipbox.journalist"
_SINKS = "tipbox_reply_sinks"


@dataclass(frozen=True)
class State:
    """The journalist app's runtime state."""

    config: JournalistConfig
    store: Store
    accounts: Accounts
    sessions: Sessions
    tokens: ApiTokens
    inbox: Inbox


class ReplyRequest(Request):
    """Uploaded files stream into a :class:`ReplySink` in the store, never a temp file."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return cast(IO[bytes], new_sink().file)


def reply_sink(stream: Any) -> ReplySink | None:
    """The sink behind an uploaded file's stream."""
    return next((s for s in g.get(_SINKS, []) if s.file is stream), None)


def new_sink() -> ReplySink:
    """A sink for a reply sent as a raw body (API), cleaned up with the request."""
    sink = ReplySink(get_state().store)
    g.setdefault(_SINKS, []).append(sink)
    return sink


def _abort_sinks(_exc: BaseException | None) -> None:
    for sink in g.pop(_SINKS, []):
        sink.abort()


def init_app(app: Flask, config: JournalistConfig) -> State:
    """Load keys, secrets, the store and the accounts, and keep them on ``app``."""
    base = config.base
    recipients = load_recipients(base.keys_dir)
    secret = load_secret(base.secrets_dir / SECRET_FILE)
    database = Database(base.data_dir / DATABASE)
    startup.open_database(database)
    with startup.opening(base.data_dir):
        store = Store(database, recipients, base.bucket_min, base.bucket_steps)
        accounts = Accounts(database, config.password_cost, config.login_tries, secret=secret)
    sessions = Sessions(database, accounts, config.idle_seconds, config.session_seconds)
    tokens = ApiTokens(database, accounts)
    state = State(config, store, accounts, sessions, tokens, Inbox(database))
    app.extensions[_EXTENSION] = state
    session.install(app, secret, config.session_seconds, COOKIE_NAME, base.cookie_secure, database)
    app.request_class = ReplyRequest
    app.teardown_request(_abort_sinks)
    return state


def get_state() -> State:
    """The current app's state."""
    state: State = current_app.extensions[_EXTENSION]
    return state
