"""Section "upload": uploads through the real app under the real Gunicorn config, page weight.

Every server is ``gunicorn -c deploy/gunicorn.conf.py`` on 127.0.0.1 (bench/live.py), with
TIPBOX_ENV=development, a throwaway newsroom key made with app.crypto, data under bench/out/,
and the codename KDF at libsodium's minimum (it is not what is measured here). Each figure
stands next to a baseline measured in the same run:

1. Throughput: a 1 GiB file (random data: a 64 MiB ``os.urandom`` block, repeated, generated
   as it is sent) is POSTed as multipart/form-data, timed from connect to the end of the
   response, to three apps under the same config: ``bench.drain:app``, a bare WSGI app that
   only drains ``wsgi.input`` (the ceiling); ``bench.drain:werkzeug_app()``, Flask reading
   ``request.files`` with Werkzeug's own parser into a discarding sink; and Tipbox's
   ``/en/submit`` with a fresh session (CSRF token first), which answers once the file is
   encrypted, padded, fsynced and committed. The three alternate; ``os.sync()`` runs before
   each upload. Afterwards the store must hold exactly one source with one file item and
   nothing else (no temporary file); it is then deleted. The ratio tipbox/ceiling is the
   figure (target >= 50%). Diagnostics: the time until the last byte was sent, the same
   upload 1 MiB smaller (one padding bucket down), the item writer alone in this process, and
   the disk alone (what Tipbox stores, written and fsynced, plainly and as Tipbox writes).
2. Memory: VmRSS of every worker (the master's children), polled from /proc every 20 ms, and
   their VmHWM, during a 2 GiB upload to a fresh Tipbox server (target < 100 MiB); the 1 GiB
   uploads of part 1 give the same for the two baselines.
3. Concurrency: 200 uploads of 5-7 MiB, each paced by its client at 1 MiB/s (raw sockets on
   one asyncio loop; a blocked client does not catch up afterwards), starting one after the
   other over 2 s, while a fresh visitor requests ``GET /`` every 100 ms (new connection each,
   from a process of its own so that the upload clients' GIL does not delay it). Sessions and
   CSRF tokens are made beforehand; ``GET /`` is first timed on the idle server (the
   baseline). Uploads still running at the deadline are cut and counted. Settings: the
   default (3 workers x 96 threads); the default with all 200 uploads starting in the same
   instant (a stress case: no crowd over Tor arrives to the millisecond); the previous
   default (2 x 64), to show why it changed; and the drain app under the default (the
   baseline). The global rate limit is raised for this part (200 generations + 200
   submissions in a minute would otherwise measure the limiter, not the server). Stored items
   must equal completed uploads.
4. Page weight of each source page: HTML plus every same-origin subresource it references
   (stylesheet, icon, images; the script only with JavaScript on), each URL fetched once;
   bytes of bodies, and with response headers; requests with JavaScript off and on.
   Targets: <= 30 KB (30,000 bytes) and <= 3 requests, JavaScript off.

``--quick``: 256 MiB and 512 MiB uploads, 60 slow uploads of 2-3 MiB, one repetition.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import multiprocessing
import os
import re
import shutil
import textwrap
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from unittest import mock
from urllib.parse import urljoin, urlsplit

from bench import live
from bench.core import GIB, KIB, MIB, Context, Section, median, say, table
from bench.live import HOST, Multipart, Server, ServerError, Visitor

RATIO_TARGET = 0.5
RSS_TARGET = 100 * MIB
P99_TARGET = 0.100
WEIGHT_TARGET = 30_000
REQUESTS_TARGET = 3
MAX_THROUGHPUT_REPS = 3
RSS_POLL = 0.02
SLOW_RATE = MIB  # bytes per second per slow upload
SLOW_PIECE = 64 * KIB
GET_INTERVAL = 0.1
GET_TIMEOUT = 10.0
IDLE_GETS = 30
SLOW_IO_TIMEOUT = 120.0
RAISED_LIMIT = "100000 per minute"
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class Sizes:
    upload: int
    rss: int
    slow_count: int
    slow_sizes: tuple[int, ...]
    window: float  # seconds the slow uploads may take before the rest are cut

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        if quick:
            return cls(256 * MIB, 512 * MIB, 60, (2 * MIB, 3 * MIB), 15.0)
        return cls(GIB, 2 * GIB, 200, (5 * MIB, 6 * MIB, 7 * MIB), 30.0)


@dataclass(frozen=True)
class Setting:
    """A Gunicorn setting for part 3."""

    label: str
    env: dict[str, str]
    args: tuple[str, ...] = ()
    workers: int = 3
    threads: int = 96
    connections: int = 96  # worker_connections
    ramp: float = 2.0  # seconds over which the uploads start (0: all in the same instant)

    @property
    def capacity(self) -> int:
        """Requests the workers run at once: each runs at most min(threads, connections)."""
        return self.workers * min(self.threads, self.connections)


SETTINGS = (
    Setting("default: 3 workers × 96 threads, uploads starting over 2 s", {}),
    Setting("default, all 200 uploads starting in the same instant", {}, ramp=0.0),
    Setting(
        "before: 2 workers × 64 threads (80 connections each)",
        {"TIPBOX_WORKERS": "2", "TIPBOX_THREADS": "64"},
        ("--worker-connections", "80"),
        workers=2,
        threads=64,
        connections=80,
    ),
)
# The same load on the ceiling app under the default: what Gunicorn and this machine do.
DRAIN_SETTING = dataclasses.replace(
    SETTINGS[0], label="baseline: `bench.drain:app`, default setting, starting over 2 s"
)


# --- the machine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuTimes:
    values: tuple[int, ...]

    @classmethod
    def now(cls) -> CpuTimes:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        return cls(tuple(int(v) for v in first[: len(STAT_FIELDS)]))

    def share(self, later: CpuTimes) -> dict[str, float]:
        deltas = [b - a for a, b in zip(self.values, later.values, strict=True)]
        total = sum(deltas) or 1
        return {name: d / total for name, d in zip(STAT_FIELDS, deltas, strict=True)}


def load() -> float:
    return os.getloadavg()[0]


# --- worker processes -------------------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of ``pids`` so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def sockets_of(pid: int) -> int:
    """Open sockets of ``pid`` but its listening one: the connections it holds."""
    count = 0
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                count += os.readlink(fd).startswith("socket:")
    return max(0, count - 1)


class RssPoller(threading.Thread):
    """Polls VmRSS of every worker of ``server``; keeps each one's peak and last VmHWM."""

    def __init__(self, server: Server, count_sockets: bool = False) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.count_sockets = count_sockets
        self.sockets: dict[int, int] = {}  # the most client connections each worker held
        self.halt = threading.Event()
        self.before = {pid: status_kib(pid, "VmRSS") for pid in server.worker_pids()}
        self.peak: dict[int, int] = dict(self.before)
        self.hwm: dict[int, int] = {}
        self.samples = 0

    def run(self) -> None:
        while not self.halt.wait(RSS_POLL):
            self.sample()

    def sample(self) -> None:
        self.samples += 1
        for pid in self.server.worker_pids():
            rss = status_kib(pid, "VmRSS")
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
            if self.count_sockets and self.samples % 10 == 1:  # every 200 ms: it costs CPU
                self.sockets[pid] = max(self.sockets.get(pid, 0), sockets_of(pid))

    def __enter__(self) -> RssPoller:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.sample()
        self.hwm = {pid: status_kib(pid, "VmHWM") for pid in self.server.worker_pids()}

    @property
    def peak_kib(self) -> int:
        return max(self.peak.values(), default=0)

    @property
    def hwm_kib(self) -> int:
        return max(self.hwm.values(), default=0)

    @property
    def before_kib(self) -> int:
        return max(self.before.values(), default=0)


# --- part 1 and 2: one big upload -------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    app: str
    size: int
    total: float  # connect to end of the response
    sent: float  # connect to the last byte sent
    cpu: float  # the workers' CPU seconds
    rss_before_kib: int
    rss_peak_kib: int
    hwm_kib: int
    ciphertext: int = 0  # stored bytes (Tipbox)


def post_file(
    server: Server, path: str, body: Multipart, cookies: dict[str, str]
) -> tuple[int, bytes, float, float]:
    """POST ``body`` with its file generated on the fly: (status, response, sent s, total s)."""
    conn = server.connection(timeout=600)
    try:
        start = time.perf_counter()
        conn.putrequest("POST", path, skip_accept_encoding=True)
        conn.putheader("Content-Type", body.content_type)
        conn.putheader("Content-Length", str(len(body)))
        for name, value in cookies.items():
            conn.putheader(name, value)
        conn.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # an early answer
            conn.send(body.head)
            for piece in live.pieces(body.file_size):
                conn.send(piece)
            conn.send(body.tail)
        sent = time.perf_counter() - start
        answer = conn.getresponse()
        data = answer.read()
        total = time.perf_counter() - start
    finally:
        conn.close()
    return answer.status, data, sent, total


def check_store(server: Server, size: int, kind: str = "file") -> int:
    """Exactly one source with one ``kind`` item, nothing else; delete it; its stored size."""
    from app.db import migrated
    from app.server.newsroom import load_recipients
    from app.server.store import Store

    store = Store(migrated(server.data_dir), load_recipients(server.keys_dir))
    sources = store.list_sources()
    items = [item for source in sources for item in store.items_of(source.id)]
    on_disk = sorted(p.name for p in store.items.iterdir())
    if len(sources) != 1 or [i.kind for i in items] != [kind] or len(on_disk) != 1:
        raise ServerError(f"store holds {len(sources)} sources, {items}, files {on_disk}")
    path = store.path_of(items[0])
    stored = path.stat().st_size
    with path.open("rb") as handle:
        magic = handle.read(22)
    if stored != items[0].size or stored < size or magic != b"age-encryption.org/v1\n":
        raise ServerError(f"stored item: {stored} bytes, header {magic!r}")
    store.delete_source(sources[0].id)
    left = list(store.items.iterdir())
    if left:
        raise ServerError(f"files left in the store after deleting the source: {left}")
    return stored


def upload_once(server: Server, app: str, size: int) -> Upload:
    """One upload of ``size`` bytes to ``app``, checked, with its workers watched."""
    visitor = Visitor(server)
    token = visitor.new_source()[1] if app == "tipbox" else "bench"
    body = live.submission(token, size)
    os.sync()  # nobody else's dirty pages are flushed by this upload's fsync
    pids = server.worker_pids()
    cpu = cpu_seconds(pids)
    with RssPoller(server) as rss:
        status, data, sent, total = post_file(server, "/en/submit", body, visitor.cookie_header())
    cpu = cpu_seconds(pids) - cpu
    text = data.decode("utf-8", "replace")
    expected = {
        "drain": f"{len(body)}\n",
        "werkzeug": f"3 fields, 1 files, {size} bytes\n",
    }.get(app)
    # Tipbox answers a stored submission with a redirect to its confirmation page.
    if status != (303 if app == "tipbox" else 200) or (expected is not None and text != expected):
        raise ServerError(f"{app} answered {status}: {text[:300]!r}")
    stored = 0
    if app == "tipbox":
        if "/en/received" not in text:
            raise ServerError(f"tipbox did not redirect to its confirmation: {text[-1500:]!r}")
        stored = check_store(server, size)
    return Upload(app, size, total, sent, cpu, rss.before_kib, rss.peak_kib, rss.hwm_kib, stored)


def log_upload(run: Upload, prefix: str = "") -> None:
    say(
        f"  {prefix}{run.app:<9} {run.size / MIB:6.0f} MiB  {run.total:6.2f} s "
        f"({run.size / 1e6 / run.total:5.0f} MB/s; last byte sent at {run.sent:.2f} s)  "
        f"worker CPU {run.cpu:5.2f} s  peak RSS {run.rss_peak_kib / KIB:.0f} MiB"
        + (f"  stored {run.ciphertext / MIB:.0f} MiB" if run.ciphertext else "")
    )


APPS = {"drain": live.DRAIN_APP, "werkzeug": live.WERKZEUG_APP, "tipbox": live.TIPBOX_APP}


@dataclass
class Throughput:
    runs: dict[str, list[Upload]]
    smaller: Upload  # tipbox, one bucket down
    writer: dict[str, float]
    pages: list[PageWeight]


def throughput(context: Context, sizes: Sizes) -> Throughput:
    reps = min(context.options.repetitions, MAX_THROUGHPUT_REPS)
    root = context.workspace.path("upload")
    runs: dict[str, list[Upload]] = {name: [] for name in APPS}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(live.running(root / name, app)) for name, app in APPS.items()
        }
        say("  page weight of the source pages")
        pages = page_weights(servers["tipbox"])
        check_store(servers["tipbox"], 0, kind="message")  # the page weight's one submission
        say(f"  {sizes.upload / MIB:.0f} MiB uploads, {reps} repetition(s), apps alternating")
        order = list(APPS)
        for rep in range(reps):
            for name in order[rep % 3 :] + order[: rep % 3]:
                run = upload_once(servers[name], name, sizes.upload)
                runs[name].append(run)
                log_upload(run, f"rep {rep + 1}/{reps} ")
        smaller = upload_once(servers["tipbox"], "tipbox", sizes.upload - MIB)
        log_upload(smaller, "one bucket down: ")
        writer = writer_alone(root / "writer", sizes.upload)
        disk = disk_pace(root / "disk", int(writer["ciphertext"]))
        writer["disk plain"], writer["disk early"] = disk["plain"], disk["early"]
        for name, server in servers.items():
            errors(server, name)
    return Throughput(runs, smaller, writer, pages)


def writer_alone(root: Path, size: int) -> dict[str, float]:
    """Tipbox's item writer alone, in this process: write ``size`` bytes in 64 KiB pieces,
    then finish (padding + fsync), with the fsync timed on its own."""
    from app.crypto import X25519Identity
    from app.db import migrated
    from app.server.store import Store

    store = Store(migrated(root), [X25519Identity.generate().recipient])
    fsynced = [0.0]
    real_fsync = os.fsync

    def timed_fsync(fd: int) -> None:
        start = time.perf_counter()
        real_fsync(fd)
        fsynced[0] += time.perf_counter() - start

    os.sync()
    writer = store.writer("file", "bench.bin", "application/octet-stream")
    try:
        start = time.perf_counter()
        for piece in live.pieces(size):
            for offset in range(0, len(piece), 64 * KIB):
                writer.write(piece[offset : offset + 64 * KIB])
        wrote = time.perf_counter()
        with mock.patch("os.fsync", timed_fsync):
            pending = writer.finish()
        done = time.perf_counter()
    finally:
        writer.abort()
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "write": wrote - start,
        "finish": done - wrote,
        "fsync": fsynced[0],
        "ciphertext": float(pending.size),
    }
    say(
        f"  item writer alone: write {size / 1e6 / result['write']:.0f} MB/s, finish "
        f"{result['finish']:.2f} s (fsync {result['fsync']:.2f} s), "
        f"{pending.size / MIB:.0f} MiB stored"
    )
    return result


DISK_ROUNDS = 3


def disk_alone(root: Path, size: int, early: bool) -> float:
    """Seconds to write ``size`` bytes (what Tipbox stores) in 256 KiB writes, then fsync, with
    no HTTP, no parsing and no encryption: plainly (as ``dd conv=fsync``), or ``early`` through
    Tipbox's own :class:`app.server.writeback.EarlyWriteback` (writeback and flushes as it goes)."""
    from app.server.writeback import EarlyWriteback

    root.mkdir(parents=True, exist_ok=True)
    block = memoryview(live.random_block())[: 256 * KIB]
    os.sync()
    try:
        with (root / "disk.bin").open("xb", buffering=0) as file:
            sink = EarlyWriteback(file) if early else file
            start = time.perf_counter()
            written = 0
            while written < size:
                written += sink.write(block[: size - written])
            if isinstance(sink, EarlyWriteback):
                sink.fsync()
            else:
                os.fsync(file.fileno())
            return time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)


def disk_pace(root: Path, size: int) -> dict[str, float]:
    """Median seconds of :func:`disk_alone`, plain and early, over alternating rounds."""
    runs: dict[str, list[float]] = {"plain": [], "early": []}
    for _ in range(DISK_ROUNDS):
        for name in runs:
            runs[name].append(disk_alone(root, size, early=name == "early"))
    result = {name: median(times) for name, times in runs.items()}
    say(
        f"  the disk alone, {size / MIB:.0f} MiB written and fsynced (median of {DISK_ROUNDS}): "
        f"plainly {result['plain']:.2f} s, as Tipbox writes {result['early']:.2f} s"
    )
    return result


def errors(server: Server, name: str) -> None:
    """Stop if a server logged an error: a figure from a failing server means nothing."""
    bad = [line for line in server.log().splitlines() if "[ERROR]" in line or "Traceback" in line]
    if bad:
        raise ServerError(f"{name} logged errors: {bad[:5]}")


def memory(context: Context, sizes: Sizes) -> Upload:
    with live.running(context.workspace.path("upload-rss"), live.TIPBOX_APP) as server:
        run = upload_once(server, "tipbox", sizes.rss)
        log_upload(run, "memory: ")
        errors(server, "tipbox")
    return run


# --- part 3: slow uploads while pages are viewed ----------------------------------------------


@dataclass
class SlowUpload:
    size: int
    cookies: dict[str, str]
    token: str
    start: float = 0.0
    sent: float = 0.0
    end: float = 0.0
    status: int = 0
    error: str = ""
    cut: bool = False
    expect: bytes = rb"<li>1 file \("  # in the answer to a successful upload

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


def request_head(port: int, body: Multipart, cookies: dict[str, str]) -> bytes:
    lines = [
        "POST /en/submit HTTP/1.1",
        f"Host: {HOST}:{port}",
        f"Content-Type: {body.content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in cookies.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def slow_upload(port: int, job: SlowUpload, delay: float) -> None:
    """After ``delay`` seconds, send one upload at SLOW_RATE; a client held up by the server
    does not catch up."""
    body = live.submission(job.token, job.size)
    await asyncio.sleep(delay)
    job.start = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request_head(port, body, job.cookies) + body.head)
        slot = time.perf_counter()
        for piece in live.pieces(job.size, SLOW_PIECE):
            delay = slot - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(piece)
            await writer.drain()  # blocks while the server does not read
            slot = max(slot + len(piece) / SLOW_RATE, time.perf_counter())
        writer.write(body.tail)
        await writer.drain()
        job.sent = time.perf_counter()
        answer = await reader.read()  # "Connection: close": the server closes after it
        status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b"0"
        job.status = int(status) if status.isdigit() else 0
        if job.status == 200 and not re.search(job.expect, answer):
            job.error = "no confirmation"
        elif job.status == 0:
            job.error = "no answer"
    except asyncio.CancelledError:
        job.cut = True
    except (OSError, EOFError) as exc:
        job.error = type(exc).__name__
    finally:
        job.end = time.perf_counter()
        if writer is not None:
            writer.close()


async def all_uploads(port: int, jobs: Sequence[SlowUpload], deadline: float, ramp: float) -> None:
    """The uploads start one after the other, evenly over ``ramp`` seconds (0: all at once);
    those still running at ``deadline`` (perf_counter) are cut."""
    tasks = [
        asyncio.create_task(slow_upload(port, job, ramp * n / len(jobs)))
        for n, job in enumerate(jobs)
    ]
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def uploads_thread(
    port: int, jobs: Sequence[SlowUpload], deadline: float, ramp: float
) -> threading.Thread:
    """The uploads run on one asyncio loop in one thread (200 threads would cost the clients
    more CPU than the server uses)."""
    thread = threading.Thread(
        target=lambda: asyncio.run(all_uploads(port, jobs, deadline, ramp)), daemon=True
    )
    thread.start()
    return thread


def get_landing(port: int) -> float:
    """Seconds for ``GET /`` on a new connection (inf: it failed or timed out)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=GET_TIMEOUT)
    try:
        conn.request("GET", "/")
        answer = conn.getresponse()
        answer.read()
        ok = answer.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        conn.close()
    return time.perf_counter() - start if ok else float("inf")


PROBE_THREADS = int(GET_TIMEOUT / GET_INTERVAL) + 20  # a probe is never queued on our side


class Prober:
    """``GET /`` every GET_INTERVAL, each on its own thread and connection, while asked."""

    def __init__(self, port: int, pool: ThreadPoolExecutor) -> None:
        self.port, self.pool = port, pool
        self.start = time.perf_counter()
        self.futures: list[Future[float]] = []

    def tick(self) -> None:
        """Send every request due by now."""
        while self.start + len(self.futures) * GET_INTERVAL <= time.perf_counter():
            self.futures.append(self.pool.submit(get_landing, self.port))

    def results(self) -> list[float]:
        return [f.result() for f in self.futures]  # each ends within GET_TIMEOUT


def idle_latencies(port: int) -> list[float]:
    """The baseline: IDLE_GETS probes on the idle server."""
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        prober = Prober(port, pool)
        while len(prober.futures) < IDLE_GETS:
            prober.tick()
            time.sleep(0.01)
        return prober.results()


def _probe_loop(port: int, stop: EventType, limit: float, out: Connection) -> None:
    """In a process of its own: ``GET /`` every GET_INTERVAL until ``stop`` (at most ``limit``
    seconds), then send the latencies back."""
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        prober = Prober(port, pool)
        out.send("ready")
        end = time.perf_counter() + limit
        while not stop.is_set() and time.perf_counter() < end:
            prober.tick()
            time.sleep(0.01)
        out.send(prober.results())


class ProbeProcess:
    """``GET /`` probes from another process than the slow uploads' clients.

    The 200 upload clients run on an asyncio loop in this process; probes on threads of this
    process would wait for its GIL whenever that loop is busy (200 connections opening at
    once), and the server would be blamed for the client's delay. Forked before any upload
    starts, when this process has no other thread.
    """

    def __init__(self, port: int, limit: float) -> None:
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._ours, theirs = context.Pipe()
        self._process = context.Process(
            target=_probe_loop, args=(port, self._stop, limit, theirs), daemon=True
        )
        self._process.start()
        if not self._ours.poll(30) or self._ours.recv() != "ready":
            self._process.kill()
            raise ServerError("the probe process did not start")

    def results(self) -> list[float]:
        """Stop probing; the latencies (each probe ends within GET_TIMEOUT)."""
        self._stop.set()
        if not self._ours.poll(GET_TIMEOUT + 30):
            self._process.kill()
            raise ServerError("the probe process did not report")
        latencies: list[float] = self._ours.recv()
        self._process.join(10)
        return latencies


def sessions(server: Server, sizes: Sizes) -> list[SlowUpload]:
    """A session and CSRF token per upload (a drain server gets placeholders)."""
    if server.app == live.DRAIN_APP:
        return [
            SlowUpload(sizes.slow_sizes[n % len(sizes.slow_sizes)], {}, "bench", expect=rb"\d\n$")
            for n in range(sizes.slow_count)
        ]

    def one(n: int) -> SlowUpload:
        visitor = Visitor(server)
        token = visitor.new_source()[1]
        return SlowUpload(
            sizes.slow_sizes[n % len(sizes.slow_sizes)], visitor.cookie_header(), token
        )

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(sizes.slow_count)))


@dataclass
class Crowd:
    setting: Setting
    idle: list[float]
    busy: list[float]
    jobs: list[SlowUpload]
    window: float
    rss_before_kib: int
    rss_peak_kib: int
    server_cpu: float  # the workers' CPU seconds during the window
    client_cpu: float  # this process's CPU seconds during the window (the clients)
    held: list[int] = field(default_factory=list)  # the most connections each worker held
    stored: int = 0
    leftovers: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def completed(self) -> list[SlowUpload]:
        return [j for j in self.jobs if j.ok]

    @property
    def failed(self) -> list[SlowUpload]:
        return [j for j in self.jobs if not j.ok and not j.cut]

    @property
    def cut(self) -> list[SlowUpload]:
        return [j for j in self.jobs if j.cut]


def crowd(
    context: Context, sizes: Sizes, setting: Setting, index: int, app: str = live.TIPBOX_APP
) -> Crowd:
    root = context.workspace.path(f"upload-crowd-{index}")
    env = {**setting.env, "TIPBOX_RATE_LIMIT_GLOBAL": RAISED_LIMIT}
    try:
        with live.running(root, app, env, setting.args) as server:
            result = crowd_on(server, sizes, setting)
            result.warnings = [
                line.split("] ", 2)[-1].rstrip(".")
                for line in server.log().splitlines()
                if "[WARNING]" in line or "[ERROR]" in line
            ]
        result.stored, result.leftovers = count_items(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def crowd_on(server: Server, sizes: Sizes, setting: Setting) -> Crowd:
    say(f"  {setting.label}: {sizes.slow_count} sessions")
    jobs = sessions(server, sizes)
    idle = idle_latencies(server.port)
    say(f"  {setting.label}: {len(jobs)} uploads at {SLOW_RATE / MIB:.0f} MiB/s each, GET / x10/s")
    pids = server.worker_pids()
    probes = ProbeProcess(server.port, sizes.window + 5)
    with RssPoller(server, count_sockets=True) as rss:
        server_cpu, client_cpu = cpu_seconds(pids), time.process_time()
        start = time.perf_counter()
        deadline = start + sizes.window
        uploads = uploads_thread(server.port, jobs, deadline, setting.ramp)
        while time.perf_counter() < deadline and not all(j.end for j in jobs):
            time.sleep(0.01)
        window = time.perf_counter() - start
        server_cpu, client_cpu = cpu_seconds(pids) - server_cpu, time.process_time() - client_cpu
        busy = probes.results()
        uploads.join(timeout=30)  # the loop cancels what runs at the deadline
        if uploads.is_alive():
            raise ServerError("the slow uploads did not stop after the deadline")
        time.sleep(1.0)  # let the server see the cut connections and abort their items
    result = Crowd(
        setting, idle, busy, jobs, window, rss.before_kib, rss.peak_kib, server_cpu, client_cpu,
        sorted(rss.sockets.values(), reverse=True),
    )  # fmt: skip
    say(
        f"  {setting.label}: {len(result.completed)} completed, {len(result.cut)} cut at "
        f"{window:.1f} s, {len(result.failed)} failed; GET / p50 {show_ms(percentile(busy, 50))}"
        f" p99 {show_ms(percentile(busy, 99))} (idle p99 {show_ms(percentile(idle, 99))}); "
        f"worker RSS {mib_of(rss.before_kib)} → {mib_of(rss.peak_kib)} MiB; CPU s: workers "
        f"{server_cpu:.1f}, clients {client_cpu:.1f}; most connections held per worker "
        f"{result.held}"
    )
    return result


def count_items(server: Server) -> tuple[int, int]:
    """Committed file items, and temporary files left behind (after the server stopped)."""
    import sqlite3

    from app.server.incoming import TEMP_PREFIX

    if server.app == live.DRAIN_APP:
        return 0, 0
    items = server.data_dir / "items"
    leftovers = sum(1 for p in items.iterdir() if p.name.startswith(TEMP_PREFIX))
    with contextlib.closing(sqlite3.connect(server.data_dir / "store.sqlite3")) as db:
        (count,) = db.execute("SELECT count(*) FROM items WHERE kind = 'file'").fetchone()
    return int(count), leftovers


# --- part 4: page weight ----------------------------------------------------------------------


class Resources(HTMLParser):
    """The subresources a page makes a browser fetch: (kind, url)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        rel = a.get("rel", "").lower().split()
        if tag == "link" and "stylesheet" in rel and a.get("href"):
            self.found.append(("stylesheet", a["href"]))
        elif tag == "link" and "icon" in rel and a.get("href"):
            self.found.append(("icon", a["href"]))
        elif tag in ("img", "input", "source") and a.get("src"):
            self.found.append(("image", a["src"]))
        elif tag == "script" and a.get("src"):
            self.found.append(("script", a["src"]))


CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)")


@dataclass(frozen=True)
class PageWeight:
    page: str
    status: int
    html: int
    html_wire: int
    parts: tuple[tuple[str, str, int, int], ...]  # kind, path, body bytes, wire bytes
    foreign: tuple[str, ...]

    def chosen(self, js: bool) -> list[tuple[str, str, int, int]]:
        return [p for p in self.parts if js or p[0] != "script"]

    def bytes(self, js: bool, wire: bool = False) -> int:
        own = self.html_wire if wire else self.html
        return own + sum(p[3] if wire else p[2] for p in self.chosen(js))

    def requests(self, js: bool) -> int:
        return 1 + len(self.chosen(js))


def weigh(visitor: Visitor, label: str, reply: live.Reply) -> PageWeight:
    """``reply``'s page and its subresources, each distinct URL fetched once."""
    parser = Resources()
    parser.feed(reply.text)
    seen: dict[str, tuple[str, str, int, int]] = {}
    foreign: list[str] = []
    queue = list(parser.found)
    while queue and len(seen) < 50:
        kind, url = queue.pop(0)
        target = urlsplit(urljoin(f"http://{HOST}:{visitor.server.port}{reply.path}", url))
        if target.hostname != HOST or target.port != visitor.server.port:
            foreign.append(url)
            continue
        path = target.path + (f"?{target.query}" if target.query else "")
        if path in seen:
            continue
        got = visitor.request("GET", path)
        if got.status != 200:
            raise ServerError(f"{label}: {path} answered {got.status}")
        seen[path] = (kind, path, len(got.body), got.wire_bytes)
        if kind == "stylesheet":
            queue += [("stylesheet-url", u) for u in CSS_URL.findall(got.text)]
    return PageWeight(
        label, reply.status, len(reply.body), reply.wire_bytes, tuple(seen.values()), tuple(foreign)
    )


def page_weights(server: Server) -> list[PageWeight]:
    pages = []
    fresh = Visitor(server)
    pages.append(weigh(fresh, "/", fresh.request("GET", "/")))
    pages.append(weigh(fresh, "/es/", fresh.request("GET", "/es/")))
    source = Visitor(server)
    generated = source.request("GET", "/en/generate")
    pages.append(weigh(source, "/en/generate", generated))
    codename = live._CODENAME.search(generated.text)
    if generated.status != 200 or codename is None:
        raise ServerError(f"/en/generate answered {generated.status}")
    form = source.request("GET", "/en/submit")
    pages.append(weigh(source, "/en/submit", form))
    token = live._TOKEN.search(form.text)
    if token is None:
        raise ServerError("/en/submit has no CSRF token")
    sent = source.post_form(
        "/en/submit",
        {"csrf_token": token.group(1), "message": "A short tip for the newsroom.", "website": ""},
    )
    if sent.status != 303:
        raise ServerError(f"the submission answered {sent.status}")
    pages.append(weigh(source, "/en/received", source.follow(sent)))
    back = Visitor(server)
    login = back.request("GET", "/en/login")
    pages.append(weigh(back, "/en/login", login))
    token = live._TOKEN.search(login.text)
    if token is None:
        raise ServerError("/en/login has no CSRF token")
    fields = {"csrf_token": token.group(1), "codename": " ".join(codename.group(1).split())}
    signed_in = back.post_form("/en/login", fields)
    if signed_in.status != 303:
        raise ServerError(f"the login answered {signed_in.status}")
    pages.append(weigh(back, "/en/lookup (signed in)", back.request("GET", "/en/lookup")))
    missing = fresh.request("GET", "/en/no-such-page")
    if missing.status != 404:
        raise ServerError(f"a missing page answered {missing.status}")
    pages.append(weigh(fresh, "error page (404)", missing))
    for page in pages:
        say(
            f"    {page.page:<32} {page.bytes(False):6,} B in {page.requests(False)} requests "
            f"(JavaScript on: {page.bytes(True):,} B in {page.requests(True)})"
        )
    return pages


# --- statistics and tables --------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; failures are inf and sort last."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def show_ms(value: float) -> str:
    if value != value:  # nan
        return "n/a"
    if value == float("inf"):
        return f"> {GET_TIMEOUT:.0f} s (failed)"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.0f} s"


def mbps(size: int, seconds: float) -> float:
    return size / 1e6 / seconds


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def mib_of(kib: int) -> str:
    return f"{kib / KIB:.1f}"


def throughput_table(result: Throughput) -> tuple[str, float]:
    runs = result.runs
    ceiling = median([r.total for r in runs["drain"]])
    labels = {
        "drain": "`bench.drain:app`: drain `wsgi.input` (ceiling)",
        "werkzeug": "`bench.drain:werkzeug_app()`: Werkzeug's parser → discard",
        "tipbox": "Tipbox `/en/submit` → encrypted, padded, fsynced, committed",
    }
    rows = []
    for name, label in labels.items():
        times = [r.total for r in runs[name]]
        size = runs[name][0].size
        rows.append([
            label, f"{median(times):.2f}", f"{min(times):.2f}", f"{max(times):.2f}",
            f"{mbps(size, median(times)):.0f}", f"{ceiling / median(times):.0%}",
            f"{median([r.cpu for r in runs[name]]):.2f}",
        ])  # fmt: skip
    sent = [r.sent for r in runs["tipbox"]]
    size = runs["tipbox"][0].size
    rows.append([
        "… Tipbox, until its last byte was sent (before padding, fsync, commit)",
        f"{median(sent):.2f}", f"{min(sent):.2f}", f"{max(sent):.2f}",
        f"{mbps(size, median(sent)):.0f}", f"{ceiling / median(sent):.0%}", "",
    ])  # fmt: skip
    small = result.smaller
    rows.append([
        f"… Tipbox, 1 MiB smaller ({small.size / MIB:.0f} MiB: stored in "
        f"{small.ciphertext / MIB:.0f} MiB, not {runs['tipbox'][0].ciphertext / MIB:.0f}), once",
        f"{small.total:.2f}", "", "", f"{mbps(small.size, small.total):.0f}",
        f"{mbps(small.size, small.total) / mbps(size, ceiling):.0%}", f"{small.cpu:.2f}",
    ])  # fmt: skip
    stored = result.writer["ciphertext"]
    for key, how in [("disk plain", "plainly"), ("disk early", "as Tipbox writes (app/files.py)")]:
        disk = result.writer[key]
        rows.append([
            f"the disk alone: {stored / MIB:.0f} MiB (what Tipbox stores) written {how} and "
            f"fsynced, no HTTP, median of {DISK_ROUNDS}", f"{disk:.2f}", "", "", "",
            f"{ceiling / disk:.0%}", "",
        ])  # fmt: skip
    headers = [
        f"{size / MIB:.0f} MiB upload, same Gunicorn config", "median s", "min s", "max s",
        "MB/s (median)", "of ceiling", "worker CPU s (median)",
    ]  # fmt: skip
    ratio = ceiling / median([r.total for r in runs["tipbox"]])
    return table(headers, rows, "lrrrrrr"), ratio


def paired_ratio(runs: dict[str, list[Upload]]) -> float:
    """Median over repetitions of drain time / Tipbox time (robust to drifting load)."""
    pairs = zip(runs["drain"], runs["tipbox"], strict=True)
    return median([d.total / t.total for d, t in pairs])


def memory_table(result: Throughput, big: Upload) -> str:
    rows = []
    for name in ("drain", "werkzeug", "tipbox"):
        last = result.runs[name]
        rows.append([
            f"{name}, {last[0].size / MIB:.0f} MiB (part 1, max of runs)",
            mib_of(max(r.rss_before_kib for r in last)), mib_of(max(r.rss_peak_kib for r in last)),
            mib_of(max(r.hwm_kib for r in last)), "n/a (baseline)" if name != "tipbox" else
            verdict(max(r.rss_peak_kib for r in last) * KIB < RSS_TARGET),
        ])  # fmt: skip
    rows.append([
        f"**tipbox, {big.size / MIB:.0f} MiB** (fresh server; {big.total:.1f} s, "
        f"{mbps(big.size, big.total):.0f} MB/s, stored {big.ciphertext / MIB:.0f} MiB)",
        mib_of(big.rss_before_kib), mib_of(big.rss_peak_kib), mib_of(big.hwm_kib),
        verdict(max(big.rss_peak_kib, big.hwm_kib) * KIB < RSS_TARGET),
    ])  # fmt: skip
    headers = [
        "upload (the largest worker)", "VmRSS before MiB", "peak VmRSS MiB (polled)",
        "VmHWM after MiB", f"< {RSS_TARGET // MIB} MiB",
    ]  # fmt: skip
    return table(headers, rows, "lrrrl")


def crowd_table(crowds: list[Crowd]) -> str:
    rows = []
    for c in crowds:
        durations = [j.end - j.start for j in c.completed]
        ideal = median([j.size / SLOW_RATE for j in c.jobs])
        rows.append([
            c.setting.label, str(c.setting.capacity),
            f"{len(c.completed)} / {len(c.failed)} / {len(c.cut)}",
            f"{median(durations):.1f} / {max(durations):.1f}" if durations else "n/a",
            f"{ideal:.0f}", f"{c.window:.1f}",
            f"{show_ms(percentile(c.idle, 50))} / {show_ms(percentile(c.idle, 99))}",
            f"{len(c.busy)}", show_ms(percentile(c.busy, 50)), show_ms(percentile(c.busy, 95)),
            show_ms(percentile(c.busy, 99)), str(sum(v == float("inf") for v in c.busy)),
            f"{mib_of(c.rss_before_kib)} → {mib_of(c.rss_peak_kib)}",
            " / ".join(str(n) for n in c.held) or "n/a",
            f"{c.server_cpu:.1f} / {c.client_cpu:.1f}",
            *(
                ["n/a", "n/a", "n/a (baseline)"]
                if c.setting == DRAIN_SETTING
                else [f"{c.stored}", f"{c.leftovers}", verdict(percentile(c.busy, 99) < P99_TARGET)]
            ),
        ])  # fmt: skip
    headers = [
        "setting", "requests run at once", "uploads completed / failed / cut",
        "upload s median / max", "ideal s", "window s", "idle GET / p50 / p99",
        "GETs under load", "p50", "p95", "p99", "GETs failed", "worker RSS MiB idle → peak",
        "most connections per worker",
        "CPU s workers / clients", "items stored", "temp files left",
        f"p99 < {P99_TARGET * 1000:.0f} ms",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrrrrrrrrrrrrrl")


def weight_table(pages: list[PageWeight]) -> str:
    rows = []
    for p in pages:
        parts = ", ".join(f"{Path(path).name} {size:,}" for kind, path, size, _ in p.chosen(True))
        ok = p.bytes(False, wire=True) <= WEIGHT_TARGET and p.requests(False) <= REQUESTS_TARGET
        rows.append([
            p.page, str(p.status), f"{p.html:,}", parts or "none",
            f"{p.bytes(False):,}", f"{p.bytes(False, wire=True):,}", str(p.requests(False)),
            f"{p.bytes(True):,}", str(p.requests(True)), verdict(ok and not p.foreign),
        ])  # fmt: skip
    headers = [
        "page", "status", "HTML B", "same-origin subresources (B)", "JS off: bytes",
        "JS off: bytes with headers", "JS off: requests", "JS on: bytes", "JS on: requests",
        f"≤ {WEIGHT_TARGET // 1000} KB and ≤ {REQUESTS_TARGET} requests",
    ]  # fmt: skip
    return table(headers, rows, "lrrlrrrrrl")


# --- the section ------------------------------------------------------------------------------


def run(context: Context) -> str:
    quick = "--quick" in context.options.flags
    sizes = Sizes.pick(quick)
    load_start, cpu_start, start = load(), CpuTimes.now(), time.monotonic()
    live.random_block()
    say(f"  load average {load_start:.2f} at the start ({os.cpu_count()} CPUs)")
    result = throughput(context, sizes)
    load_mid = load()
    big = memory(context, sizes)
    crowds = [crowd(context, sizes, s, n) for n, s in enumerate(SETTINGS)]
    crowds.append(crowd(context, sizes, DRAIN_SETTING, len(SETTINGS), app=live.DRAIN_APP))
    load_end, share = load(), cpu_start.share(CpuTimes.now())
    took = time.monotonic() - start
    return render(sizes, result, big, crowds, (load_start, load_mid, load_end), share, took, quick)


def spread(runs: Sequence[Upload]) -> float:
    times = [r.total for r in runs]
    return (max(times) - min(times)) / median(times)


def noise(loads: tuple[float, float, float], share: dict[str, float], result: Throughput) -> str:
    cpus = os.cpu_count() or 1
    busy = 1 - share["idle"] - share["iowait"]
    spreads = {name: spread(runs) for name, runs in result.runs.items()}
    worst = max(spreads.values())
    word = "quiet" if worst < 0.1 else "somewhat noisy" if worst < 0.3 else "noisy"
    return (
        f"Machine load (shared, {cpus} CPUs): load average {loads[0]:.2f} at the start, "
        f"{loads[1]:.2f} after part 1 and {loads[2]:.2f} at the end (the end includes this "
        f"benchmark's own load). Over the section the CPUs were {busy:.0%} busy and "
        f"{share['iowait']:.0%} waiting for the disk; the hypervisor stole {share['steal']:.1%}. "
        f"Repeated runs spread (max − min) / median = {spreads['drain']:.0%} for the ceiling, "
        f"{spreads['werkzeug']:.0%} for Werkzeug and {spreads['tipbox']:.0%} for Tipbox: {word}."
    )


def para(*sentences: str) -> str:
    return textwrap.fill(" ".join(sentences), width=100, break_on_hyphens=False)


def render(
    sizes: Sizes,
    result: Throughput,
    big: Upload,
    crowds: list[Crowd],
    loads: tuple[float, float, float],
    share: dict[str, float],
    took: float,
    quick: bool,
) -> str:
    speed, ratio = throughput_table(result)
    writer = result.writer
    warnings = sorted({w for c in crowds for w in c.warnings})
    reps = len(result.runs["tipbox"])
    page_ok = all(
        p.bytes(False, wire=True) <= WEIGHT_TARGET and p.requests(False) <= REQUESTS_TARGET
        for p in result.pages
    )
    held = [
        c
        for c in crowds
        if c.setting in SETTINGS and percentile(c.busy, 99) < P99_TARGET and not c.failed
    ]
    peak = max(big.rss_peak_kib, big.hwm_kib)
    verdicts = [
        f"Throughput: Tipbox {ratio:.0%} of the ceiling (medians; per-repetition pairs "
        f"{paired_ratio(result.runs):.0%}), target ≥ {RATIO_TARGET:.0%}: "
        f"{verdict(ratio >= RATIO_TARGET)}.",
        f"Memory: peak worker RSS {mib_of(peak)} MiB during a {big.size / MIB:.0f} MiB upload, "
        f"target < {RSS_TARGET // MIB} MiB: {verdict(peak * KIB < RSS_TARGET)}.",
        f"Slow uploads: `GET /` p99 < {P99_TARGET * 1000:.0f} ms with every upload served, "
        f"met by: {', '.join(c.setting.label for c in held) or '**none**'}.",
        f"Page weight ≤ {WEIGHT_TARGET // 1000} KB (with headers) and ≤ {REQUESTS_TARGET} "
        f"requests with JavaScript off, every page: {verdict(page_ok)}.",
    ]
    crowd_title = (
        f"{sizes.slow_count} slow uploads ({', '.join(f'{s // MIB}' for s in sizes.slow_sizes)} "
        f"MiB at {SLOW_RATE // MIB} MiB/s each) while `GET /` is requested every "
        f"{GET_INTERVAL * 1000:.0f} ms"
    )
    intro = para(
        "Uploads through the real app under the real Gunicorn config (deploy/gunicorn.conf.py),",
        "against baselines under the same config, and the weight of the source pages; method in",
        "`bench/upload.py`" + (" (`--quick`: smaller sizes)." if quick else "."),
        f"Section time {took:.0f} s.",
        noise(loads, share, result),
    )
    speed_notes = para(
        f"Repetitions are capped at {MAX_THROUGHPUT_REPS} to keep the section near 3 minutes.",
        f"Time from connect to the end of the response, for a {sizes.upload / MIB:.0f} MiB file",
        "in a multipart body; MB/s are 10^6 bytes of file per second, of the median. Tipbox",
        "answers once the item is sealed: padded to its size bucket (app/padding.py)",
        f"({result.runs['tipbox'][0].ciphertext / MIB:.0f} MiB stored for",
        f"{sizes.upload / MIB:.0f} MiB, the padding encrypted and written like the data),",
        "fsynced and committed. Its item writer alone, in this process (no HTTP, no parsing),",
        f"writes {sizes.upload / MIB:.0f} MiB at {mbps(sizes.upload, writer['write']):.0f} MB/s",
        f"and then finishes in {writer['finish']:.2f} s, of which {writer['fsync']:.2f} s is the",
        "final fsync (app/files.py flushes in the background as the item grows). The client runs",
        "on the same CPUs as the server; the ceiling writes nothing to disk. The last two rows",
        "are the disk's own pace for the stored bytes, with nothing else running: written plainly",
        "and fsynced once at the end, then written as Tipbox writes, flushing as it goes. The",
        "second is as fast as Tipbox can answer on this disk while keeping the padding and the",
        "fsync.",
    )
    memory_notes = para(
        "VmRSS of each worker polled every 20 ms during the upload, and VmHWM read after it;",
        "the largest worker is shown. The baselines are the part 1 uploads to the other apps.",
    )
    crowd_notes = para(
        "“Requests run at once” is workers × min(threads, worker_connections): a gthread worker",
        "accepts at most worker_connections connections and runs each on one of its threads; the",
        "others wait in the listen backlog (128) or in the thread pool's queue. The uploads start",
        "one after the other over the setting's ramp (0 s: all at once). “Most connections per",
        "worker” is sampled",
        "every 200 ms from /proc/PID/fd. Uploads still running",
        f"{sizes.window:.0f} s after the start are cut (not counted as failed). A failed GET",
        f"timed out ({GET_TIMEOUT:.0f} s) or got an error; it counts in the percentiles as slower",
        "than any success. CPU seconds are over the window, out of",
        f"{os.cpu_count()} × window available; the upload clients (one asyncio thread, this",
        "process) and the GET prober (a process of its own) run on the same CPUs. The last row is",
        "the baseline:",
        "the same load and setting on the drain app (its `GET /` is a trivial answer). The global",
        "rate limit is raised for this part; everything else is the deploy config. Items stored",
        "are checked against completed uploads, and no temporary file may be left.",
        f"Gunicorn warnings: {'; '.join(warnings) or 'none'}.",
    )
    weight_notes = para(
        "Subresources are what the HTML references (stylesheet, icon, images, script; CSS",
        "`url()`s too), same origin only, each URL counted once: the icon and the header logo",
        "are one URL. With JavaScript off the script is not fetched.",
    )
    return f"""{intro}

{chr(10).join(f"- {v}" for v in verdicts)}

### 1. Upload throughput ({reps} repetition(s), apps alternating)

{speed}

{speed_notes}

### 2. Peak worker memory

{memory_table(result, big)}

{memory_notes}

### 3. {crowd_title}

{crowd_table(crowds)}

{crowd_notes}

### 4. Page weight

{weight_table(result.pages)}

{weight_notes}"""


SECTION = Section("upload", "upload throughput, worker memory, slow uploads, page weight", run)
