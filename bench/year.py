"""Section "year": what a newsroom's second year adds (issue 15): retention, settings, digest.

Method (each figure next to the baseline it is compared with, measured in the same run):

1. Retention: a store of 10,000 sources (rows written with one SQL transaction, as bench/
   journalist.py does; a message and a reply each, with a 1 KiB random file per item standing
   for its ciphertext: retention unlinks files, it never reads them), of which 0 %, 10 % or 50 %
   were last active before the retention period. One ``retention.run`` on the set day
   (``today`` is a parameter: no clock, no sleep) is timed for each share; the baseline is the
   run with nothing to delete (it still selects and checkpoints). Also the database and its
   ``-wal`` before and after (``secure_delete`` overwrites, the checkpoint truncates the log).
2. Settings per request: ``GET /en/`` and ``GET /en/submit`` (signed in) of the source app in
   process (Flask test client, cheap key derivation), alternating between an app whose admin
   saved settings (name, landing text in en and es, a minimum length) and one where nothing was
   ever saved, ``200 × repetitions`` requests each; the saved app also with its settings read
   replaced by the one before (``settings.load``, the database opened for every page) and by a
   constant (no read); and ``settings.load`` alone, to show its share of a request.
3. Digest: ``send_digest`` for 1 and for 5 recipients (real gpg keys from ``--quick-gen-key``
   in a throwaway home, a real aiosmtpd server on 127.0.0.1), against one bare
   ``gpg --encrypt`` of the same 1 KiB body to one recipient in a kept home; and the byte sizes
   of a day's digest with and without submissions, which must be equal.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.core import KIB, Context, Section, median, ratio, say, table
from bench.journalist import ms, timed
from bench.procs import CommandError

SOURCES = 10_000
SHARES = (0.0, 0.1, 0.5)  # the first is the baseline: nothing to delete
DAYS = 30
TODAY = date(2026, 12, 3)
ITEM_BYTES = KIB
GPG = "/usr/bin/gpg"
GPG_TIMEOUT = 60
NOW = datetime(2026, 12, 3, 0, 15, tzinfo=UTC)
RECIPIENTS = (1, 5)
NEVER, SAVED, OPENED, CONSTANT = "never saved", "saved", "saved, opened", "saved, constant"


# --- 1. retention ---------------------------------------------------------------------------


def fill_store(root: Path, share: float) -> Any:
    """A store of :data:`SOURCES` sources, ``share`` of them expired on :data:`TODAY`."""
    from app.crypto import X25519Identity
    from app.db import migrated
    from app.server.store import Store

    database = migrated(root)
    store = Store(database, [X25519Identity.generate().recipient])
    reply_key = str(X25519Identity.generate().recipient)
    old = (TODAY - timedelta(days=DAYS + 10)).isoformat()
    sources, items = [], []
    for n in range(SOURCES):
        sid, day = secrets.token_hex(32), old if n < SOURCES * share else TODAY.isoformat()
        sources.append((sid, f"source {n}", reply_key, day, day))
        for seq, kind in enumerate(("message", "reply"), start=1):
            items.append((secrets.token_hex(16), sid, seq, kind, day, ITEM_BYTES, "[]"))
    with contextlib.closing(sqlite3.connect(store.db_path)) as db, db:
        db.executemany("INSERT INTO sources VALUES (?, ?, ?, ?, ?)", sources)
        db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, 0)", items)
    for item in items:
        (store.items / item[0]).write_bytes(os.urandom(ITEM_BYTES))
    with database.connect() as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the store as a quiet day leaves it
    return store


def disk(db_path: Path) -> tuple[int, int]:
    """The bytes of the database file and of its write-ahead log."""
    wal = db_path.with_name(db_path.name + "-wal")
    return db_path.stat().st_size, wal.stat().st_size if wal.exists() else 0


@dataclass
class Purge:
    """One share's runs: seconds, sources deleted, bytes before and after."""

    seconds: list[float] = field(default_factory=list)
    one_transaction: list[float] = field(default_factory=list)  # the same rows, SQL alone
    deleted: int = 0
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)


def delete_in_one_transaction(db_path: Path, copy: Path) -> float:
    """Seconds to delete the same expired sources' rows from a copy of the database with one
    transaction (``secure_delete`` on, cascades, checkpoint): the SQL work alone, for scale."""
    from app.db import Database
    from app.server import retention

    copy.mkdir()
    shutil.copyfile(db_path, copy / db_path.name)
    with Database(copy / db_path.name).connect() as db:
        start = time.perf_counter()
        ids = retention.expired(db, DAYS, TODAY)
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM sources WHERE id = ?", [(i,) for i in ids])
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        took = time.perf_counter() - start
    shutil.rmtree(copy)
    return took


def retention_timings(context: Context) -> dict[float, Purge]:
    from app.server import retention

    runs = {share: Purge() for share in SHARES}
    for rep in range(context.options.repetitions):
        for share in SHARES if rep % 2 == 0 else SHARES[::-1]:
            root = context.workspace.path(f"retention-{share}")
            store = fill_store(root, share)
            purge = runs[share]
            purge.before = disk(store.db_path)
            purge.one_transaction.append(delete_in_one_transaction(store.db_path, root / "copy"))
            start = time.perf_counter()
            result = retention.run(store, DAYS, TODAY)
            purge.seconds.append(time.perf_counter() - start)
            purge.after, purge.deleted = disk(store.db_path), result.sources
            left = sum(1 for _ in store.items.iterdir())
            if result.sources != round(SOURCES * share) or left != 2 * (SOURCES - result.sources):
                raise CommandError(f"retention deleted {result} at share {share}")
            say(f"  {share:4.0%} expired: {result.sources:,} deleted in {purge.seconds[-1]:.2f} s")
            shutil.rmtree(root)
    return runs


def retention_table(runs: dict[float, Purge]) -> str:
    base = median(runs[SHARES[0]].seconds)
    rows = []
    for share, purge in runs.items():
        run = median(purge.seconds)
        per = ms((run - base) / purge.deleted) if purge.deleted else "–"
        sql = median(purge.one_transaction)
        rows.append([
            f"{share:.0%} ({purge.deleted:,} sources)", f"{run:.3f}", ratio(run / base), per,
            f"{sql:.3f}", ratio(run / sql) if purge.deleted else "–",
            f"{purge.before[0] / KIB:,.0f} + {purge.before[1] / KIB:,.0f}",
            f"{purge.after[0] / KIB:,.0f} + {purge.after[1] / KIB:,.0f}",
        ])  # fmt: skip
    headers = [
        f"expired of {SOURCES:,}", "run s (median)", "× nothing to delete",
        "ms per deleted source (above baseline)", "same rows, one transaction s",
        "run / one transaction", "KiB before (db + wal)", "KiB after (db + wal)",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrrrr")


# --- 2. settings per request ----------------------------------------------------------------


def source_app(context: Context, name: str, saved: bool) -> Any:
    """A source app over a fresh data folder, with the admin's settings saved or never."""
    from app.config import Config
    from app.crypto import KdfCost, X25519Identity
    from app.server import settings
    from app.source import create_app
    from app.source.state import get_state

    root = context.workspace.path(name)
    keys = root / "keys"
    keys.mkdir(parents=True)
    (keys / "newsroom.pub").write_text(f"{X25519Identity.generate().recipient}\n")
    data = root / "data"
    config = Config(
        data_dir=data, keys_dir=keys, secrets_dir=data / "secrets", development=True,
        kdf_cost=KdfCost(opslimit=1, memlimit=8 * 1024 * 1024),
        rate_limit_session="100000 per minute", rate_limit_global="100000 per minute",
    )  # fmt: skip
    app = create_app(config)
    if saved:
        with app.app_context():
            database = get_state().store.database
        landing = {"en": "Send us documents. " * 20, "es": "Envíenos documentos. " * 20}
        settings.save(database, settings.Settings("Daily Bugle", landing, True, True, 20))
    return app


@contextlib.contextmanager
def read_replaced(variant: str, constant: Any) -> Iterator[None]:
    """While it lasts, the source app's settings read (``settings.Reader.get``) is the
    variant's: the real one (kept connection), the one before it (``settings.load``: the
    database opened for every page), or ``constant`` (no read at all). The bench's, never the
    app's, change."""
    from app.server import settings

    replacement: Any = {
        OPENED: lambda reader: settings.load(reader._database),
        CONSTANT: lambda reader: constant,
    }.get(variant)
    if replacement is None:
        yield
        return
    real = settings.Reader.get
    settings.Reader.get = replacement  # type: ignore[method-assign]
    try:
        yield
    finally:
        settings.Reader.get = real  # type: ignore[method-assign]


def settings_timings(context: Context) -> tuple[list[list[str]], float, float]:
    from app.server import settings
    from app.source.state import get_state

    apps = {saved: source_app(context, f"settings-{saved}", saved) for saved in (False, True)}
    with apps[True].app_context():
        database = get_state().store.database
    constant = settings.load(database)
    clients = {
        variant: apps[variant != NEVER].test_client()
        for variant in (NEVER, SAVED, OPENED, CONSTANT)
    }
    for variant, client in clients.items():
        assert client.get("/en/generate").status_code == 200  # signed in: the form is served
        with read_replaced(variant, constant):
            named = "Daily Bugle" in client.get("/es/").text
        if named != (variant != NEVER):
            raise CommandError(f"the {variant} app does not show the settings it should")
    count, rows, landing, loads = 200 * context.options.repetitions, [], 0.0, []
    for page in ("/en/", "/en/submit"):
        times: dict[str, list[float]] = {variant: [] for variant in clients}
        for _ in range(count):  # alternating, so the load of the machine hits all alike
            for variant, client in clients.items():
                with read_replaced(variant, constant):
                    start = time.perf_counter()
                    response = client.get(page)
                    times[variant].append(time.perf_counter() - start)
                assert response.status_code == 200, response.status_code
            loads.extend(timed(lambda: settings.load(database), 1))  # in step with the pages
        never, chosen, opened, fixed = (median(times[v]) for v in (NEVER, SAVED, OPENED, CONSTANT))
        landing = landing or opened
        say(
            f"  {page:<11} never saved {ms(never)}, saved {ms(chosen)}, "
            f"opened per page {ms(opened)}, no read {ms(fixed)} ms"
        )
        rows.append([
            f"`GET {page}`", ms(never), ms(chosen), ratio(chosen / never), ms(opened),
            ratio(opened / chosen), ms(fixed), ratio(chosen / fixed),
        ])  # fmt: skip
    load = median(loads)
    say(f"  settings.load alone {load * 1000:.3f} ms")
    return rows, load, landing


# --- 3. the daily digest --------------------------------------------------------------------


@dataclass
class Inbox:
    """An SMTP server's DATA handler that keeps every message."""

    received: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.received.append(envelope)
        return "250 OK"


@contextlib.contextmanager
def smtp_server(inbox: Inbox) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1; yields its port, stops it after."""
    from aiosmtpd.controller import Controller

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def gpg(home: Path, *args: str, data: bytes = b"") -> bytes:
    command = [GPG, "--homedir", str(home), "--batch", "--no-tty", "--quiet", *args]
    run = subprocess.run(command, input=data, capture_output=True, timeout=GPG_TIMEOUT, check=True)  # noqa: S603
    return run.stdout


@contextlib.contextmanager
def gpg_home() -> Iterator[Path]:
    """A throwaway gpg home (short path: the agent's socket lives in it), agent stopped after."""
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)  # noqa: S603, S607
        shutil.rmtree(home, ignore_errors=True)


def digest_env(root: Path, home: Path, port: int, count: int, news: bool) -> dict[str, str]:
    """The digest's settings over a data folder of ``count`` recipients, news that day or not."""
    from app.db import migrated

    data, keys = root / f"data-{news}", root / f"keys-{count}"
    if not data.exists():
        with contextlib.closing(sqlite3.connect(migrated(data).path)) as db, db:
            if news:
                sid, day = secrets.token_hex(32), NOW.date().isoformat()
                db.execute("INSERT INTO sources VALUES (?, 'a b', 'age1x', ?, ?)", (sid, day, day))
                db.execute(
                    "INSERT INTO items VALUES (?, ?, 1, 'message', ?, 1024, '[]', 0)",
                    (secrets.token_hex(16), sid, day),
                )
    keys.mkdir(exist_ok=True)
    for n in range(count):
        address = f"journalist{n}@example.org"
        (keys / f"{address}.asc").write_bytes(gpg(home, "--armor", "--export", address))
    return {
        "TIPBOX_DATA_DIR": str(data), "TIPBOX_DIGEST_RELAY": "127.0.0.1",
        "TIPBOX_DIGEST_PORT": str(port), "TIPBOX_DIGEST_TLS": "none",
        "TIPBOX_DIGEST_RECIPIENTS": str(keys), "TIPBOX_DIGEST_FROM": "tipbox@example.org",
        "TIPBOX_DIGEST_RETRY_SECONDS": "0",
    }  # fmt: skip


def send(config: Any) -> None:
    """Today's digest, the way the daily job sends it (no retry is ever needed on loopback)."""
    from app.server import digest

    digest.send_digest(config, now=NOW, sleep=lambda _: None)


def digest_timings(context: Context) -> tuple[list[list[str]], list[list[str]]]:
    from app.server import digest, mail, openpgp
    from app.server.digest_config import load_digest_config

    count, inbox = max(5, 5 * context.options.repetitions), Inbox()
    root = context.workspace.path("digest")
    with gpg_home() as home, smtp_server(inbox) as port:
        for n in range(max(RECIPIENTS)):
            gpg(home, "--passphrase", "", "--quick-gen-key", f"journalist{n}@example.org",
                "future-default")  # fmt: skip
        configs = {}
        for recipients in RECIPIENTS:
            for news in (False, True):
                env = digest_env(root, home, port, recipients, news)
                configs[recipients, news] = load_digest_config(env)
        plain = digest.body(NOW.date(), True)
        bare = timed(lambda: gpg(home, "--trust-model", "always", "--compress-algo", "none",
                                 "--armor", "-r", "journalist0@example.org", "--encrypt",
                                 data=plain), count)  # fmt: skip
        key = configs[1, True].recipients_dir / "journalist0@example.org.asc"
        fresh = median(timed(lambda: openpgp.encrypt(plain, key), count))
        relay = configs[1, True].relay()
        tls = median(timed(lambda: mail.tls_context(relay), count))
        base = median(bare)
        rows = [
            ["bare `gpg --encrypt`, 1 KiB, 1 recipient (baseline)", ms(base), "–", ratio(1.0)],
            ["`openpgp.encrypt` alone (a fresh gpg home per call)", ms(fresh), ms(fresh),
             ratio(fresh / base)],
            ["`mail.tls_context` alone (once per connection, also with TLS `none`)",
             ms(tls), "–", ratio(tls / base)],
        ]  # fmt: skip
        for recipients in RECIPIENTS:
            config = configs[recipients, True]
            sent = timed(lambda c=config: send(c), count)
            whole = median(sent)
            say(f"  digest to {recipients}: {ms(whole)} ms (bare gpg {ms(base)} ms)")
            rows.append([f"`send_digest`, {recipients} recipient(s): encrypt, compose, SMTP",
                         ms(whole), ms(whole / recipients), ratio(whole / base)])  # fmt: skip
        inbox.received.clear()
        for news in (False, True, False, True):
            send(configs[1, news])
    sizes = [len(e.content) for e in inbox.received]
    same = "yes" if len(set(sizes)) == 1 else "**no**"
    shapes = [["nothing new", f"{sizes[0]:,}, {sizes[2]:,}", same],
              ["something new", f"{sizes[1]:,}, {sizes[3]:,}", same]]  # fmt: skip
    return rows, shapes


def run(context: Context) -> str:
    if not Path(GPG).exists():
        raise CommandError(f"gpg is needed for the digest and is not at {GPG}")
    say(f"  retention over {SOURCES:,} sources")
    purges = retention_timings(context)
    pages, load, landing = settings_timings(context)
    digests, shapes = digest_timings(context)
    return f"""A newsroom's second year: retention, admin settings, daily digest; method in
`bench/year.py`.

### Retention run ({SOURCES:,} sources, a message and a reply each, {DAYS}-day period)

{retention_table(purges)}

The baseline is the run on the same-size store with nothing to delete (select, checkpoint).
Deleting is `Store.delete_source` per source (its own connections and commit, `secure_delete`),
then one `wal_checkpoint(TRUNCATE)`; the database file keeps its size (freed pages are zeroed and
reused, not returned: no `VACUUM`). "run / one transaction" compares the run with deleting the
same rows from a copy of the database in one transaction: what is left after the SQL itself is
the price of a connection and a commit per source (and of unlinking its two files).

### Admin settings on every source page (in process, median ms)

{
        table(
            [
                "",
                "never saved",
                "saved",
                "saved / never saved",
                "opened per page",
                "opened / saved",
                "no read",
                "saved / no read",
            ],
            pages,
            "lrrrrrrr",
        )
    }

"saved" is the app as it is: the settings through one kept connection per process
(`settings.Reader`), read again only after another connection commits. "saved / never saved" is
what saved settings cost over defaults. "opened per page" is the read before it (`settings.load`
for every page: open the database, two queries, close; the first run of this section
found it a third of the landing page), and "no read" the same app with the read replaced by a
constant; both replacements are the bench's, in this process only. `settings.load` alone:
{load * 1000:.3f} ms, {load / landing:.0%} of the landing page that opened the database.

### Daily digest (real gpg, aiosmtpd on 127.0.0.1)

{table(["", "median ms", "ms per recipient", "× bare gpg"], digests, "lrrr")}

"× bare gpg": the whole daily send against one bare encryption of the same 1 KiB body; the rest
is a gpg home per recipient, the check of the store, the TLS context, the SMTP session.
The same digest, to the same recipient, on a day with and one without submissions:

{table(["a day with", "message bytes (two days)", "all equal"], shapes, "lrl")}"""


SECTION = Section("year", "retention, settings per request, daily digest", run)
