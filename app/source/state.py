"""What the source app holds while it runs: config, store, pepper, the key's fingerprint.

Built once by :func:`init_app` and kept on the app (no module-level singleton). It fails closed:
no valid newsroom recipient in the keys folder, an unreadable secret, a logo that is not a PNG
file, a data folder or database that cannot be written or a database newer than the code
(:mod:`app.server.startup`), and the app refuses to start with :class:`ConfigError`. The database
is migrated here (:mod:`app.db`), before the store is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app

from app.config import Config
from app.db import Database
from app.errors import ConfigError
from app.server import settings, startup
from app.server.newsroom import load_recipients
from app.server.session import load_secret
from app.server.store import Store
from app.source import upload
from app.words import fingerprint

PEPPER_FILE = "pepper.key"
DEFAULT_LOGO = Path(__file__).resolve().parent.parent / "static" / "logo.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXTENSION = "tipbox.source"


@dataclass(frozen=True)
class State:
    """The source app's runtime state."""

    config: Config
    store: Store
    pepper: bytes
    fingerprint: tuple[str, ...]
    logo: Path
    settings: settings.Reader  # the admin's settings, read for every page


def _check_logo(path: Path) -> Path:
    try:
        with path.open("rb") as handle:
            signature = handle.read(len(PNG_SIGNATURE))
    except OSError as exc:
        raise ConfigError(f"TIPBOX_LOGO: cannot read {path}: {exc.strerror}") from None
    if signature != PNG_SIGNATURE:
        raise ConfigError(f"TIPBOX_LOGO: {path} is not a PNG image")
    return path.resolve()


def init_app(app: Flask, config: Config, database: Database) -> State:
    """Load keys, secrets and the store (migrating its ``database``), and keep them on ``app``.

    :raises ConfigError: if anything the app needs is missing or unsafe.
    """
    recipients = load_recipients(config.keys_dir)
    logo = _check_logo(config.logo or DEFAULT_LOGO)
    pepper = load_secret(config.secrets_dir / PEPPER_FILE)
    startup.open_database(database)
    with startup.opening(config.data_dir):
        store = Store(database, recipients, config.bucket_min, config.bucket_steps)
    upload.init_app(app, store, config.max_submission_bytes, config.reserve_bytes)
    key_words = fingerprint(str(recipients[0]).encode())
    state = State(config, store, pepper, key_words, logo, settings.Reader(database))
    app.extensions[_EXTENSION] = state
    return state


def get_state() -> State:
    """The current app's state."""
    state: State = current_app.extensions[_EXTENSION]
    return state
