"""The journalist app: a separate Flask app on its own onion service (with client authorization).

``create_app()`` builds it (gunicorn runs ``app.journalist:create_app()`` with
``deploy/gunicorn-journalist.conf.py``); it is never mounted inside the source portal. It shares
the portal's header table and host guard, its config and its store, and refuses to start, like
the portal, when anything it needs is missing or unsafe. Flask is imported inside
:func:`create_app` only: ``import app.journalist`` stays light for the command line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.config import Config
    from app.journalist.config import JournalistConfig

# Replies are at most 2 MiB (app.reply.MAX_FILE_BYTES); room for the multipart framing.
MAX_BODY = 4 * 1024 * 1024
FORM_MEMORY = 1024 * 1024
STATIC_MAX_AGE = 24 * 3600


def create_app(config: JournalistConfig | Config | None = None) -> Flask:
    """The journalist app, from ``config`` (a plain :class:`Config` gets default journalist
    settings) or else from the environment."""
    from flask import Flask
    from flask_wtf.csrf import CSRFProtect

    from app import sizes
    from app.config import Config
    from app.journalist import api, auth, pages, sources, state, users
    from app.journalist.config import JournalistConfig, load
    from app.server import headers

    if config is None:
        config = load(os.environ)
    elif isinstance(config, Config):
        config = JournalistConfig(base=config)
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY,
        MAX_FORM_MEMORY_SIZE=FORM_MEMORY,
        SEND_FILE_MAX_AGE_DEFAULT=STATIC_MAX_AGE,
        WTF_CSRF_TIME_LIMIT=config.session_seconds,
        WTF_CSRF_SSL_STRICT=False,  # Referrer-Policy: no-referrer leaves no Referer to check
    )
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    app.jinja_env.filters["size"] = sizes.plain  # the source app's unit system
    # Order matters: host guard, then who is asking (before anything reads the body), then CSRF.
    headers.init_app(app, config.base)
    state.init_app(app, config)
    pages.init_app(app)
    app.before_request(auth.authenticate)
    for blueprint in (auth.bp, sources.bp, users.bp, api.bp):
        app.register_blueprint(blueprint)
    CSRFProtect(app).exempt(api.bp)
    return app
