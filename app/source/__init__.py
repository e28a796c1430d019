"""The source app: the portal a source reaches over Tor, one blueprint (``views.bp``, with the
routes of ``views`` and ``replies``).

``create_app()`` builds it (gunicorn runs ``app.source:create_app()`` with
``deploy/gunicorn.conf.py``); it refuses to start, raising :class:`app.errors.ConfigError`, when
anything it needs is missing or unsafe. Flask is imported inside :func:`create_app` only, as in
:mod:`app.journalist`: ``import app.source`` stays light, so the room's plain modules (the
multipart parser, the limits) load without the web stack.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.config import Config

# Room for the message field and the multipart framing on top of the files' own limit.
FORM_ALLOWANCE = 2 * 1024 * 1024
# All text fields of a request together (app/source/upload.py): the message, 100,000 characters
# of UTF-8, takes at most 400,000 bytes; the token and the honeypot a few more.
FORM_MEMORY = 1024 * 1024
STATIC_MAX_AGE = 24 * 3600


def create_app(config: Config | None = None) -> Flask:
    """The source portal, configured from ``config`` or else from the environment."""
    from flask import Flask
    from flask_wtf.csrf import CSRFProtect
    from werkzeug.exceptions import HTTPException

    from app.config import load_config
    from app.db import DATABASE, Database
    from app.server import headers, session
    from app.source import language, limits, state, views
    from app.source import replies as replies  # its routes join views.bp
    from app.source.error_page import error_page

    config = load_config(os.environ) if config is None else config
    # Named after the package: its templates/, static/ and translations/ live in app/.
    app = Flask("app")
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_submission_bytes + FORM_ALLOWANCE,
        MAX_FORM_MEMORY_SIZE=FORM_MEMORY,
        SEND_FILE_MAX_AGE_DEFAULT=STATIC_MAX_AGE,
        # A slow upload over Tor may take as long as the whole session.
        WTF_CSRF_TIME_LIMIT=config.session_seconds,
        # Referrer-Policy: no-referrer means no Referer to check, even over https.
        WTF_CSRF_SSL_STRICT=False,
    )
    app.url_map.redirect_defaults = False  # serve /en/ as it is, do not redirect it to /
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    # Order matters: the host guard runs first, then the expired-session check, then CSRF
    # (which reads, and so streams, the body). The rate limits count work, not requests: the
    # views and the upload parser charge them just before a derivation or a write (limits).
    database = Database(config.data_dir / DATABASE)  # opened (and migrated) by state.init_app
    headers.init_app(app, config)
    session.init_app(app, config, database)
    language.init_app(app, config.translations_dir)
    state.init_app(app, config, database)  # fails closed
    app.register_blueprint(views.bp)
    limits.init_app(app, config)
    CSRFProtect(app)
    app.register_error_handler(HTTPException, error_page)
    return app
