"""Section "attack": half-sent requests and a flood of cheap requests, on real Gunicorn servers.

Method (every figure next to its baseline, measured in the same run; three workers of 96 threads,
the deploy config, on loopback):

1. Half-sent requests. :data:`HALF_OPEN` connections each send the start of a request head
   (``GET / HTTP/1.1``, a Host line, half a header) and nothing more; a keeper thread reopens
   any the server closes, so the attack is sustained. Meanwhile a fresh visitor loads ``GET /``
   every 100 ms (new connection each, :data:`PROBES` times, timeout :data:`GET_TIMEOUT` s), and
   a new source gets a codename and uploads :data:`UPLOAD` bytes, which must be stored (within
   :data:`UPLOAD_TIMEOUT` s). The baseline is the same server with no attack. Run twice: on
   Gunicorn's plain ``gthread`` worker (``-k gthread``: before) and on Tipbox's (app.server.worker,
   ``TIPBOX_HEAD_SECONDS`` 10: after). Also counted: of the first :data:`HALF_OPEN`
   connections, how many the server has closed after :data:`HELD_FOR` s.
2. Cheap requests. First, how many ``POST /en/login`` with no cookie and no token (a 400 each)
   the server answers per second, from :data:`FLOOD_THREADS` threads. Then a flood of such
   posts at :data:`FLOOD_RATE` a minute for :data:`FLOOD_SECONDS` s, at the default limits
   (300 units of work a minute for the instance), while a new source asks for a codename and
   submits a message, :data:`FLOOD_SECONDS` / 3 s into the flood.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.core import MIB, Context, Section, say, table
from bench.live import TIPBOX_APP, Server, ServerError, Visitor, running, submission
from bench.upload import get_landing, percentile, post_file

HALF_OPEN = 1000
PROBES = 100
GET_INTERVAL = 0.1
GET_TIMEOUT = 5.0
HELD_FOR = 15.0
UPLOAD = 8 * MIB
UPLOAD_TIMEOUT = 60.0
CONNECT_TIMEOUT = 2.0
HALF_HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: "
FLOOD_THREADS = 8
FLOOD_RATE = 10_000  # a minute
FLOOD_SECONDS = 15.0
CHEAP_POST = b"POST /en/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
SERVER_ENV = {"TIPBOX_WORKERS": "3", "TIPBOX_THREADS": "96"}
WORKERS = {"gthread (before)": ("-k", "gthread"), "Tipbox's worker (after)": ()}


def raise_open_files(needed: int) -> None:
    """Room for ``needed`` sockets here, and in the servers, which inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ServerError(f"the open-files limit is {hard}: {needed} are needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def half_open(server: Server) -> socket.socket | None:
    """A connection that sent part of a head, or None if the server did not take it in time."""
    try:
        sock = socket.create_connection((server.host, server.port), timeout=CONNECT_TIMEOUT)
    except OSError:
        return None
    try:
        sock.sendall(HALF_HEAD)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@dataclass
class Attack:
    """Keeps :data:`HALF_OPEN` half-sent requests open, reopening those the server closes."""

    server: Server
    first: list[socket.socket] = field(default_factory=list)
    live: list[socket.socket] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def open_all(self, count: int) -> list[socket.socket]:
        with ThreadPoolExecutor(64) as pool:
            return [s for s in pool.map(lambda _: half_open(self.server), range(count)) if s]

    def keep(self) -> None:
        while not self.stop.wait(0.5):
            gone = [s for s in self.live if closed_by_server(s)]
            for sock in gone:
                self.live.remove(sock)
                if sock not in self.first:
                    sock.close()
            self.live += self.open_all(HALF_OPEN - len(self.live))

    @contextlib.contextmanager
    def running(self) -> Iterator[Attack]:
        self.first = self.open_all(HALF_OPEN)
        self.live = list(self.first)
        keeper = threading.Thread(target=self.keep, daemon=True)
        keeper.start()
        try:
            yield self
        finally:
            self.stop.set()
            keeper.join(timeout=60)
            for sock in {*self.first, *self.live}:
                sock.close()


def probe(server: Server) -> list[float]:
    """:data:`PROBES` page loads, one every :data:`GET_INTERVAL` s (each on its own thread)."""
    with ThreadPoolExecutor(int(GET_TIMEOUT / GET_INTERVAL) + 10) as pool:
        futures = []
        for _ in range(PROBES):
            futures.append(pool.submit(get_landing, server.port))
            time.sleep(GET_INTERVAL)
        return [f.result() for f in futures]


def upload(server: Server) -> str:
    """A new source's codename and upload: 'stored', or what went wrong (given up after
    :data:`UPLOAD_TIMEOUT` s)."""
    result: list[str] = []

    def attempt() -> None:
        try:
            visitor = Visitor(server)
            token = visitor.new_source()[1]
            body = submission(token, UPLOAD)
            status, _, _, took = post_file(server, "/en/submit", body, visitor.cookie_header())
        except (OSError, http.client.HTTPException, ServerError) as exc:
            result.append(f"failed ({type(exc).__name__})")
            return
        result.append(f"stored ({took:.1f} s)" if status == 200 else f"answered {status}")

    worker = threading.Thread(target=attempt, daemon=True)  # ends when the server stops
    worker.start()
    worker.join(UPLOAD_TIMEOUT)
    return result[0] if result else f"**not stored within {UPLOAD_TIMEOUT:.0f} s**"


def show(value: float) -> str:
    return f"> {GET_TIMEOUT:.0f} s (failed)" if value == float("inf") else f"{value * 1000:.0f} ms"


def half_open_rows(context: Context) -> list[list[str]]:
    rows = []
    for label, args in WORKERS.items():
        root = context.workspace.fresh(f"attack-{len(rows)}")
        with running(root, TIPBOX_APP, SERVER_ENV, args) as server:
            quiet = probe(server)
            with Attack(server).running() as attack:
                say(f"  {label}: {len(attack.first)} half-sent requests open")
                started = time.monotonic()
                loaded = probe(server)
                stored = upload(server)
                time.sleep(max(0.0, HELD_FOR - (time.monotonic() - started)))
                closed = sum(closed_by_server(s) for s in attack.first)
            failed = sum(v == float("inf") for v in loaded)
        row = [
            label,
            f"{show(percentile(quiet, 50))} / {show(percentile(quiet, 99))}",
            f"{show(percentile(loaded, 50))} / {show(percentile(loaded, 99))}",
            f"{failed} of {PROBES}",
            stored,
            f"{closed} of {len(attack.first)}",
        ]
        say("  " + " | ".join(row))
        rows.append(row)
    return rows


def cheap_post(server: Server) -> int:
    """One ``POST /en/login`` with no cookie and no token; its status (0: no answer)."""
    try:
        with socket.create_connection((server.host, server.port), timeout=GET_TIMEOUT) as sock:
            sock.sendall(CHEAP_POST)
            answer = sock.recv(64)
    except OSError:
        return 0
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def flood(server: Server, seconds: float, rate: float | None) -> list[int]:
    """Cheap posts from :data:`FLOOD_THREADS` threads for ``seconds`` (at most ``rate``/s)."""
    end, statuses, lock = time.monotonic() + seconds, [], threading.Lock()
    gap = FLOOD_THREADS / rate if rate else 0.0

    def sender() -> None:
        next_at = time.monotonic()
        while (now := time.monotonic()) < end:
            if gap and now < next_at:
                time.sleep(next_at - now)
            next_at += gap
            status = cheap_post(server)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=sender) for _ in range(FLOOD_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def new_source_under_flood(server: Server) -> tuple[list[int], str, str]:
    """The flood's statuses, and a new source's codename and submission under it."""
    result: dict[str, str] = {}

    def source() -> None:
        time.sleep(FLOOD_SECONDS / 3)
        visitor = Visitor(server)
        generated = visitor.get("/en/generate")
        result["generate"] = str(generated.status)
        if generated.status != 200:
            return
        token = visitor.csrf_token("/en/submit")
        reply = visitor.post_form(
            "/en/submit", {"csrf_token": token, "message": "a tip", "website": ""}
        )
        result["submit"] = str(reply.status)

    helper = threading.Thread(target=source)
    helper.start()
    statuses = flood(server, FLOOD_SECONDS, FLOOD_RATE / 60)
    helper.join()
    return statuses, result.get("generate", "-"), result.get("submit", "not tried")


def flood_rows(context: Context) -> list[list[str]]:
    with running(context.workspace.fresh("attack-flood"), TIPBOX_APP, SERVER_ENV) as server:
        fast = flood(server, 5.0, None)
        rate = sum(s == 400 for s in fast) / 5.0
        say(f"  cheap posts: {rate:.0f}/s answered 400 ({len(fast)} sent)")
    with running(context.workspace.fresh("attack-flood2"), TIPBOX_APP, SERVER_ENV) as server:
        statuses, generated, submitted = new_source_under_flood(server)
    per_minute = len(statuses) / FLOOD_SECONDS * 60
    say(f"  flood {per_minute:.0f}/min: codename {generated}, submission {submitted}")
    return [[f"{rate:.0f}/s", f"{per_minute:,.0f}/min", generated, submitted]]


METHOD = "\n".join(
    [
        "Three workers of 96 threads, the deploy config, on loopback.",
        "",
        f"1. Half-sent requests: {HALF_OPEN:,} connections each send the start of a request head "
        "and nothing more; any the server closes is reopened, so the attack lasts. Meanwhile "
        f"`GET /` on a new connection every {GET_INTERVAL * 1000:.0f} ms ({PROBES} times, "
        f"{GET_TIMEOUT:.0f} s timeout), and a new source gets a codename and uploads "
        f"{UPLOAD // MIB} MiB, which must be stored within {UPLOAD_TIMEOUT:.0f} s. Baseline: the "
        "same server, no attack. Before: Gunicorn's plain worker (`-k gthread`); after: "
        "Tipbox's (`app/server/worker.py`, heads due within 10 s).",
        f"2. Cheap requests: `POST /en/login` with no cookie and no token (each a 400) from "
        f"{FLOOD_THREADS} threads, as fast as they are answered for 5 s; then at most "
        f"{FLOOD_RATE:,} a minute for {FLOOD_SECONDS:.0f} s, at the default limits, while a new "
        f"source asks for a codename and submits a message {FLOOD_SECONDS / 3:.0f} s into the "
        "flood.",
    ]
)


def summary(half: Sequence[Sequence[str]], cheap: Sequence[Sequence[str]]) -> str:
    first = table(
        [
            "worker",
            "GET / p50 / p99, no attack",
            f"GET / p50 / p99, {HALF_OPEN:,} half-sent",
            "GET / failed",
            f"{UPLOAD // MIB} MiB upload",
            f"first {HALF_OPEN:,} closed after {HELD_FOR:.0f} s",
        ],
        half,
    )
    second = table(
        [
            "cheap 400 posts answered",
            "flood while a new source arrives",
            "its codename",
            "its submission",
        ],
        cheap,
        "rrll",
    )
    return f"{METHOD}\n\n**Half-sent requests**\n\n{first}\n\n**Cheap requests**\n\n{second}"


def run(context: Context) -> str:
    raise_open_files(2 * HALF_OPEN + 1024)
    return summary(half_open_rows(context), flood_rows(context))


SECTION = Section("attack", "half-sent requests and floods of cheap requests", run)
