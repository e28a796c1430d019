"""Gunicorn settings for the Tipbox journalist app: the source portal's (deploy/gunicorn.conf.py),
with the journalist app and its own socket.

Every setting and the private logger come from the shared file, so the two apps can never drift
apart on logging, timeouts or proxy headers. Only these differ:

    wsgi_app   ``app.journalist:create_app()``
    bind       TIPBOX_JOURNALIST_BIND, default ``unix:/run/tipbox/journalist.sock``
               (tor's journalist onion service forwards to it; under systemd the socket
               unit hands it over and ``bind`` is not used)
    workers    TIPBOX_JOURNALIST_WORKERS, default 1; threads TIPBOX_JOURNALIST_THREADS,
               default 16 (and as many connections)
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

_SHARED = runpy.run_path(str(Path(__file__).with_name("gunicorn.conf.py")))
globals().update({k: v for k, v in _SHARED.items() if not k.startswith("__")})

bind = [os.environ.get("TIPBOX_JOURNALIST_BIND") or "unix:/run/tipbox/journalist.sock"]
wsgi_app = "app.journalist:create_app()"
# A newsroom has a handful of journalists, not hundreds of sources on slow connections: one
# process is enough (and keeps sign-in rate limits in one place).
_positive_int = _SHARED["_positive_int"]
workers = _positive_int("TIPBOX_JOURNALIST_WORKERS", 1)
threads = _positive_int("TIPBOX_JOURNALIST_THREADS", 16)
worker_connections = threads
