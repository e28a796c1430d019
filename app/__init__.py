"""Tipbox: an anonymous tip-submission portal for newsrooms.

Three programs live in three rooms over one shared core:

- :mod:`app.source`: the source portal (gunicorn runs ``app.source:create_app()``);
- :mod:`app.journalist`: the journalist app (``app.journalist:create_app()``);
- :mod:`app.cli`: the ``tipbox`` command, one module per command family.

The shared core is what the air-gapped machine may load: :mod:`app.crypto` (the age format),
:mod:`app.words`, and this package's own modules other than :mod:`app.db`. They import the
standard library and ``cryptography`` only: no Flask, no SQLite, no stem. Everything that runs only
on the server and is shared by both apps (the store, sessions, headers, the gunicorn worker,
start-up checks) lives in :mod:`app.server`; the database is :mod:`app.db`; tor is
:mod:`app.onion`. This package imports nothing, so ``import app`` loads no web stack.
"""
