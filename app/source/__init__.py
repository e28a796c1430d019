"""The source app: the pages and forms a source sees (one blueprint, ``views.bp``, with the
routes of ``views`` and ``replies``)."""

from __future__ import annotations

from flask import Flask

from app.config import Config
from app.source import language, state, views
from app.source import replies as replies  # its routes join views.bp on import


def init_app(app: Flask, config: Config) -> None:
    """Languages, runtime state (fails closed) and the source blueprint."""
    language.init_app(app, config.translations_dir)
    state.init_app(app, config)
    app.register_blueprint(views.bp)
