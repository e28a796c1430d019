"""The source app: the pages and forms a source sees (one blueprint, ``views.bp``)."""

from __future__ import annotations

from flask import Flask

from app.config import Config
from app.source import language, state, views


def init_app(app: Flask, config: Config) -> None:
    """Languages, runtime state (fails closed) and the source blueprint."""
    language.init_app(app, config.translations_dir)
    state.init_app(app, config)
    app.register_blueprint(views.bp)
