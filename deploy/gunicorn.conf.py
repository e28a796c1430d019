"""Gunicorn settings for the Tipbox source portal: the one file used by deployment, `make run`
and the tests (``gunicorn -c deploy/gunicorn.conf.py``).

Privacy first: Gunicorn must never learn or write down who a source is. So: no access log, an
error log that carries no request details (no client address, no URI, no exception text), no
trust in any proxy header, no control socket. Checked against Gunicorn 27.0 (settings reference:
``gunicorn --help`` and gunicorn/config.py).

Environment:
    TIPBOX_BIND     where to listen; default ``unix:/run/tipbox/source.sock`` (deployment: the
                    onion service forwards to it). ``make run`` and the tests use 127.0.0.1:PORT.
    TIPBOX_WORKERS  worker processes (default 3), TIPBOX_THREADS threads per worker (default 96).
    TIPBOX_HEAD_SECONDS  how long a request's head (request line and headers) may take to
                    arrive, in seconds (default 10; app/server/worker.py).

Every module-level name without a leading underscore that matches a Gunicorn setting is read
as that setting, so helpers here start with ``_``.

Things Gunicorn does on its own, checked:
- It sends ``Server: gunicorn`` with no version (the version only appears in
  the WSGI environ's SERVER_SOFTWARE, which the app never echoes). A WSGI app cannot remove
  that header, only add a second one, so we leave the bare product name.
- It never writes request bodies to temporary files: bodies are read from the socket into
  small in-memory buffers as the app asks for them (``tmp_upload_dir`` is a dead setting). What
  the app (Werkzeug's form parser) does with them is the app's business: see app/source/upload.py.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import traceback
from typing import Any

from gunicorn import glogging
from gunicorn.http import unreader as _unreader

# --- Where to listen ------------------------------------------------------------------------

# Deployment: a unix socket that only the tipbox user and the tor group can open (see umask),
# so no TCP port exists at all. Local development: `make run` sets 127.0.0.1:PORT.
bind = [os.environ.get("TIPBOX_BIND") or "unix:/run/tipbox/source.sock"]
# Socket file mode 0770 (owner and group). Gunicorn uses the umask for nothing else but its
# worker heartbeat file.
umask = 0o007
backlog = 128

wsgi_app = "app.source:create_app()"
# Every worker imports the app itself: no SQLite handle, key material or random state is
# created before the fork and shared between processes. A worker that cannot load the app
# (bad keys/, bad configuration) makes the whole server stop with the error.
preload_app = False


# --- Workers ----------------------------------------------------------------------------------


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}")
    return value


# gthread, not sync: a sync worker handles one request at a time and is killed when that
# request takes longer than `timeout`, so a 200 MiB upload over Tor at 50 KiB/s (an hour or
# more) would die halfway. A gthread worker's main loop keeps its heartbeat going whatever its
# threads do, so `timeout` below never cuts a slow upload.
# It is extended (app.server.worker): request heads are read in the worker's poller with a deadline
# (TIPBOX_HEAD_SECONDS, default 10), so half-sent requests cannot hold its threads, and
# Gunicorn's own error answers carry the security headers. `-k gthread` is the plain worker.
worker_class = "app.server.worker.HeadDeadlineWorker"
# Sized for a 2-core server, by bench/upload.py (part 3: 200 uploads at 1 MiB/s each while a
# fresh visitor loads the landing page every 100 ms):
# - A slow upload over Tor holds a thread for its whole duration, so the threads of all workers
#   must outnumber the uploads in flight, or page views queue behind them: with 2 x 64 threads,
#   GET / took 1.7 s at the median under 200 uploads.
# - Python runs one thread at a time per process (the GIL), and a page view waits for it after
#   every socket operation, behind the upload threads of its worker. Three processes of 96
#   threads share that wait out: GET / p99 was 34 ms under 200 uploads, against 633 ms with
#   2 x 128 threads. Three processes on two cores is no waste: most of the time is waiting on
#   Tor, and the OS runs whichever process has work.
# - Memory stays bounded: Gunicorn's reads and malloc's arenas are capped below, and the codename
#   KDF runs at most two at a time per worker (app/source/views.py), so peak KDF memory is
#   3 x 2 x TIPBOX_KDF_MEMLIMIT (384 MiB at the default).
# Note for the app: anything kept in process memory (rate-limit counters, caches) is per
# worker, not per server.
workers = _positive_int("TIPBOX_WORKERS", 3)
threads = _positive_int("TIPBOX_THREADS", 96)
# Connections a worker holds at once, kept-alive ones included; the rest wait in the listen
# backlog until some worker has room. No more than its threads: a worker that accepted more
# would queue requests on its own while another worker has idle threads (seen with 4 x 64: one
# worker held 80 connections for 64 threads and GET / waited 3.8 s there).
# The price is keep-alive: Gunicorn keeps a connection open only while its worker has room for
# it beyond its threads, so with none it closes every connection after the response, and over
# Tor a page's next request pays for a new stream. With 16 connections more than threads
# keep-alive works, but the kernel hands new connections to the workers unevenly (one took 110
# of 200 uploads for its 96 threads), and GET / p99 rose to 3.1 s under 200 slow uploads. A
# worker that stops accepting while its threads are busy would give both; Gunicorn's gthread
# worker has no such setting (README, known limitations).
worker_connections = threads
max_requests = 0  # never recycle a worker in the middle of someone's upload

# glibc gives each thread that allocates its own malloc arena, up to 8 per core, and memory freed
# in one arena is not reused by another: with 200 slow uploads a worker grew to 490 MiB, and to
# 200 MiB with two arenas (bench/upload.py, part 3), for the same CPU time. The limit is set
# here, in the master before it forks the workers (MALLOC_ARENA_MAX in the environment does the
# same, but only if every way of starting Gunicorn sets it).
_M_ARENA_MAX = -8  # from glibc's malloc.h


def _limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at ``count``; False where there is no glibc (musl, macOS)."""
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, count))  # this process's libc
    except (OSError, AttributeError):
        return False


_MALLOC_ARENAS_LIMITED = _limit_malloc_arenas(2)

# Gunicorn 27 reads a request body with recv() calls of up to 1 MiB whatever the app asks for
# (SocketUnreader.max_body_chunk), and each such call first allocates its whole buffer: 128
# threads blocked on slow Tor uploads then hold 128 MiB, and the heap fragments. With 256 KiB
# a worker serving ~110 slow uploads peaked at 320 MiB instead of 694 MiB (bench/upload.py, part
# 3), for less CPU; a single fast upload still gets large reads. (The attribute is checked, so
# a Gunicorn without it keeps its own behaviour.)
_RECV_LIMIT = 256 * 1024
if hasattr(_unreader.SocketUnreader, "max_body_chunk"):
    _unreader.SocketUnreader.max_body_chunk = _RECV_LIMIT


def on_starting(server: Any) -> None:
    """In the master, before the first fork: the memory the workers share their rate-limit
    counters in (app.server.counters), named to them in the environment they inherit. Without it
    each worker would count alone, and every limit would be multiplied by ``workers``."""
    from app.server import counters, startup  # (on sys.path by now: chdir)

    # A broken data, keys or secrets folder, or a database newer than the code: one sentence and
    # exit 1, not a traceback per worker. Building the app also migrates the database (app/db.py),
    # so it is done here once, before any fork; each worker's own build then finds it done.
    startup.refuse_to_start_on_error(server.app.wsgi)
    warning = startup.key_warning(os.environ)
    if warning:  # the journal says it at every start, until the newsroom rotates its keys
        server.log.warning("tipbox: warning: %s", warning)
    os.environ[counters.ENV] = str(counters.create())


# --- Timeouts ---------------------------------------------------------------------------------

# Heartbeat: a worker whose main loop is silent this long is stuck and gets restarted. With
# gthread this does not depend on how long requests take (see above).
timeout = 60
# On stop or reload, requests in flight (slow uploads) get this long to finish. Set the service
# manager's stop timeout higher (systemd: TimeoutStopSec=90).
graceful_timeout = 60
# No keep-alive: a worker accepts no more connections than it has threads (above), so
# Gunicorn would close every connection after its response anyway; 0 says so (and spares the
# startup warning about it).
keepalive = 0
# Within a request, each read from (or send to) the client may wait at most this long; a Tor
# upload that stalls longer than this is given up and its thread freed. See pre_request.
_IDLE_SECONDS = 300.0


def post_worker_init(worker: Any) -> None:
    """An upload still in flight when the grace period ends dies with its worker (the master
    sends SIGKILL): a second before, the worker deletes its temporary files, so that a stop
    never leaves one behind (app.server.incoming.abandon_after). The signal handlers are registered
    again, wrapped: Gunicorn registered its own before this hook runs."""
    from app.server.incoming import abandon_after

    grace = float(worker.cfg.graceful_timeout)
    delay = max(grace - 1.0, grace / 2)

    def wrap(handler: Any) -> Any:
        def handle(sig: int, frame: Any) -> None:
            abandon_after(delay)
            handler(sig, frame)

        return handle

    signal.signal(signal.SIGTERM, wrap(worker.handle_exit))
    for sig in (signal.SIGINT, signal.SIGQUIT):  # a quick stop also waits for the grace period
        signal.signal(sig, wrap(worker.handle_quit))


def pre_request(worker: Any, req: Any) -> None:
    """Per-request socket timeout; replaces Gunicorn's default hook, which logs the URI."""
    sock = getattr(getattr(req, "unreader", None), "sock", None)
    if sock is not None and hasattr(sock, "settimeout"):
        sock.settimeout(_IDLE_SECONDS)


# --- Request limits ---------------------------------------------------------------------------

# Our URLs are short (/es/submit): no query string carries data. Bodies are limited by the app
# (TIPBOX_MAX_SUBMISSION_BYTES), not here: Gunicorn has no body limit.
limit_request_line = 2048
limit_request_fields = 50
limit_request_field_size = 8190  # room for the session cookie

# Plain HTTP/1.1 only (the onion service speaks it), no h2c upgrade, no PROXY protocol.
http_protocols = "h1"
http2_cleartext = "off"
proxy_protocol = "off"

# --- Never trust proxy headers ----------------------------------------------------------------

# Nothing in front of us may tell us a client's address or scheme: there is no proxy, and we
# never want client addresses. Note that Gunicorn always trusts unix-socket peers for these
# headers whatever `forwarded_allow_ips` says, so the two header lists must be empty too.
forwarded_allow_ips = ""
forwarder_headers = ""
secure_scheme_headers: dict[str, str] = {}
proxy_allow_ips = ""

# --- No control socket ------------------------------------------------------------------------

# Gunicorn >= 25.1 opens a control socket (for `gunicornc`) under $XDG_RUNTIME_DIR or
# ~/.gunicorn by default; --no-control-socket is this setting.
control_socket_disable = True

# --- Logging ----------------------------------------------------------------------------------

accesslog = None
disable_redirect_access_to_syslog = True
errorlog = "-"  # stderr: the service manager's journal, or the terminal under `make run`
loglevel = "info"
capture_output = False
syslog = False
statsd_host = None

# Gunicorn 27's log messages that carry request details (client address, method, URI, parser
# error text, exception messages), by the start of their template, and what we say instead.
_REQUEST_MESSAGES = {
    "Invalid request from ip=": "Invalid request",
    "Error handling request": "Error handling request",
    "Socket error processing request": "Socket error processing request",
    "Error processing SSL request": "Error processing SSL request",
    "Ignored premature client disconnection": "Ignored premature client disconnection",
    "Closing connection": "Closing connection",
    "Exception in post_request hook": "Exception in post_request hook",
    "HTTP/2": "HTTP/2 connection event",
    "Error handling HTTP/2": "Error handling HTTP/2 request",
    "WSGI app sent body bytes": "WSGI app sent body bytes on a no-body response",
    # Flask's own, for an exception in a view: its logger writes here (app/server/worker.py).
    "Exception on ": "Exception in the app",
}


class _RequestRedactor(logging.Filter):
    """Rewrite log records about a request so they carry no detail of that request.

    The text becomes the bare kind of event; an exception keeps its type and the code
    locations of its traceback (useful to a developer) but loses its message, which may quote
    the request (a header, a file name, an address).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        kinds = [kind for prefix, kind in _REQUEST_MESSAGES.items() if text.startswith(prefix)]
        if not kinds:
            return True
        summary = f"{kinds[0]} (request details withheld)"
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, tb = record.exc_info
            frames = "".join(traceback.format_list(traceback.extract_tb(tb)))
            summary += f": {kind.__name__}\n{frames.rstrip()}"
        record.msg, record.args = summary, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


class PrivateLogger(glogging.Logger):
    """Gunicorn's logger without an access log and without request details in the error log.

    No timestamps either: the journal adds its own, and a copied log should not time events
    more precisely than needed.
    """

    error_fmt = r"[%(process)d] [%(levelname)s] %(message)s"

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            if not any(isinstance(f, _RequestRedactor) for f in handler.filters):
                handler.addFilter(_RequestRedactor())

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Never log a request."""


logger_class = PrivateLogger

# The worker heartbeat file (unlinked at once, touched every second) goes to RAM if we can.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
