"""Section "journalist": the sources list at 10,000 sources, a login, and ``tipbox open``.

Method (each figure next to the baseline it is compared with, measured in the same run):

1. Sources list: a store with 10,000 sources (random designations and ids; 1 to 5 items each,
   rows only: the list never reads an item's file), written with one SQL transaction. A page
   (50 sources, with counts and the unread flag of the journalist asking) is timed two ways: the
   store query alone (``Inbox.page``) and the whole request in process (Flask test client,
   logged in: session lookup, query, template), for the first, a middle and the last page and
   the unread and starred filters. Median over ``20 × repetitions`` requests each; the target is
   under 100 ms of server time per page.
2. Login: ``Accounts.login`` (throttle bookkeeping, one Argon2id verification at the default
   cost, TOTP check and the step claim) against argon2-cffi's bare ``PasswordHasher.verify``
   with the same parameters, and the TOTP check alone.
3. ``tipbox open`` of a bundle of 1,000 items, 500 messages of 1 KiB and 500 files of 1 MiB,
   against decrypting the same items with the ``age`` tool in a shell loop
   (``age -d -i id item | tar -x``, one folder per item), from the items the bundle holds
   (extracted first with ``tar -xf``, untimed). Both are checked to restore the same files.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pyotp

from bench.core import MIB, Context, Section, Workspace, median, mib, ratio, say, seconds, table
from bench.procs import CommandError, Measurement, run_checked, run_measured

SOURCES = 10_000
ITEMS = 1_000
FILE_SIZE = MIB
MESSAGE_SIZE = 1024
TARGET_MS = 100.0
AGE = Path(shutil.which("age") or "/usr/bin/age")
PASSWORD = "bench password, long enough"  # noqa: S105 - a throwaway account


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def timed(run: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


# --- preparation ------------------------------------------------------------------------------


def newsroom(workspace: Workspace) -> tuple[Path, Path]:
    """A keys folder with a newsroom recipient, and its identity file."""
    from app.crypto import X25519Identity

    identity = X25519Identity.generate()
    keys = workspace.path("keys")
    keys.mkdir(exist_ok=True)
    (keys / "newsroom.pub").write_text(f"{identity.recipient}\n")
    path = workspace.path("identity.txt")
    path.write_text(f"{identity}\n")
    path.chmod(0o600)
    return keys, path


def fill_sources(store_db: Path, count: int) -> None:
    """``count`` sources with 1 to 5 item rows each, in one transaction."""
    import sqlite3

    from app import words

    names = words.wordlist("en")
    sources, items = [], []
    for n in range(count):
        sid, day = secrets.token_hex(32), f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}"
        sources.append((sid, f"{names[n % 7776]} {names[(n // 7776) + 17]}", "age1x", day, day))
        for seq in range(1, 2 + n % 5):
            kind = ("message", "file", "reply")[seq % 3]
            items.append((secrets.token_hex(16), sid, seq, kind, day, 4096, "[]"))
    with sqlite3.connect(store_db) as db:
        db.executemany("INSERT INTO sources VALUES (?, ?, ?, ?, ?)", sources)
        db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, 0)", items)


# --- 1. the sources list ------------------------------------------------------------------------


def list_timings(context: Context, keys: Path) -> list[list[str]]:
    from app.config import Config
    from app.journalist import create_app
    from app.journalist.config import JournalistConfig
    from app.journalist.state import get_state

    data = context.workspace.path("list-data")
    base = Config(data_dir=data, keys_dir=keys, secrets_dir=data / "secrets", development=True)
    app = create_app(JournalistConfig(base=base))
    with app.app_context():
        state = get_state()
    say(f"  filling {SOURCES:,} sources")
    fill_sources(state.store.db_path, SOURCES)
    journalist, secret = state.accounts.add("bench", PASSWORD)
    client = app.test_client()
    page = client.get("/login").text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    fields = {"csrf_token": token, "username": "bench", "password": PASSWORD}
    client.post("/login", data={**fields, "code": pyotp.TOTP(secret).now()})
    state.inbox.star(state.store.list_sources()[0].id, True)
    count, rows = 20 * context.options.repetitions, []
    last = -(-SOURCES // 50)
    for label, number, show in [
        ("page 1", 1, "all"),
        (f"page {last // 2}", last // 2, "all"),
        (f"page {last} (last)", last, "all"),
        ("unread, page 1", 1, "unread"),
        ("starred", 1, "starred"),
    ]:
        query = timed(lambda n=number, s=show: state.inbox.page(journalist.id, n, s), count)
        url = f"/?page={number}&show={show}"
        assert client.get(url).status_code == 200
        http = timed(lambda u=url: client.get(u), count)
        say(f"  {label:<18} query {ms(median(query))} ms, whole request {ms(median(http))} ms")
        ok = "yes" if max(http) * 1000 < TARGET_MS else "**no**"
        rows.append([
            label, ms(median(query)), ms(max(query)), ms(median(http)), ms(max(http)),
            ratio(median(http) / median(query)), ok,
        ])  # fmt: skip
    return rows


# --- 2. login ---------------------------------------------------------------------------------


def login_timings(context: Context) -> list[list[str]]:
    from app.db import migrated
    from app.journalist.accounts import Accounts, PasswordCost, matching_step

    cost = PasswordCost()
    accounts = Accounts(migrated(context.workspace.path("login")), cost)
    _, secret = accounts.add("bench", PASSWORD)
    digest = cost.hasher().hash(PASSWORD)
    count = max(5, 5 * context.options.repetitions)
    step = [time.time()]

    def login() -> None:
        step[0] += 30  # a fresh TOTP step each time (a code is good once)
        accounts.clock = lambda: step[0]
        if accounts.login("bench", PASSWORD, pyotp.TOTP(secret).at(step[0])) is None:
            raise CommandError("the benchmark login failed")

    verify = timed(lambda: cost.hasher().verify(digest, PASSWORD), count)
    totp = timed(lambda: matching_step(secret, pyotp.TOTP(secret).now(), time.time()), count)
    whole = timed(login, count)
    say(f"  Argon2id verify {ms(median(verify))} ms, login {ms(median(whole))} ms")
    base = median(verify)
    label = f"t={cost.time_cost}, {cost.memory_kib // 1024} MiB, {cost.parallelism} lanes"
    return [
        [f"argon2-cffi `verify` ({label}, baseline)", ms(base), ms(min(verify)), ratio(1.0)],
        ["TOTP check (±1 step)", ms(median(totp)), ms(min(totp)), ratio(median(totp) / base)],
        [
            "`Accounts.login` (whole)",
            ms(median(whole)),
            ms(min(whole)),
            ratio(median(whole) / base),
        ],
    ]


# --- 3. tipbox open against age ------------------------------------------------------------------


def make_bundle(workspace: Workspace, keys: Path) -> Path:
    from app.bundle import write_bundle
    from app.db import migrated
    from app.journalist.inbox import Inbox
    from app.server.newsroom import load_recipients
    from app.server.store import Store

    store = Store(migrated(workspace.path("open-data")), load_recipients(keys))
    say(f"  encrypting {ITEMS} items (half 1 KiB messages, half 1 MiB files)")
    for n in range(ITEMS // 10):
        pending = [store.add_message("m" * MESSAGE_SIZE) for _ in range(5)]
        for k in range(5):
            writer = store.writer("file", f"file-{n}-{k}.bin", "application/octet-stream")
            writer.write(os.urandom(FILE_SIZE))
            pending.append(writer.finish())
        store.commit(secrets.token_hex(32), str(store.recipients[0]), pending)
    entries, _ = Inbox(store.database).bundle_sources([s.id for s in store.list_sources()])
    path = workspace.path("bundle.tar")
    with path.open("wb") as out:
        write_bundle(
            out,
            entries,
            lambda i: (store.items / i.id).open("rb"),
            recipients=[str(store.recipients[0])],
        )
    shutil.rmtree(store.root)
    return path


AGE_LOOP = (
    'n=0; for f in items/*.age; do n=$((n+1)); mkdir -p "out/$n"; '
    'age -d -i "$1" "$f" | tar -x -C "out/$n"; done'
)


Runs = dict[str, list[Measurement]]
TIPBOX_MAT2 = "`tipbox open BUNDLE` (mat2 checks each file)"
TIPBOX_PLAIN = "`tipbox open BUNDLE` (mat2 not on PATH: decryption only)"
AGE_RUN = "`age -d` into `tar -x`, item by item (baseline)"


def open_timings(context: Context, keys: Path, identity: Path) -> tuple[Runs, int]:
    import sys

    workspace = context.workspace
    bundle = make_bundle(workspace, keys)
    items_dir = workspace.path("age-run")
    items_dir.mkdir()
    run_checked(["tar", "-xf", bundle, "-C", items_dir])
    out = workspace.path("opened")
    tipbox = [sys.executable, "-m", "app.cli", "open", bundle, "-i", identity, "--out", out]
    commands = {
        TIPBOX_PLAIN: ["/usr/bin/env", "PATH=/nonexistent", *tipbox],
        AGE_RUN: ["bash", "-c", f'cd "{items_dir}" && {AGE_LOOP}', "bash", identity],
    }
    if shutil.which("mat2"):
        commands[TIPBOX_MAT2] = tipbox
    runs: Runs = {name: [] for name in commands}
    for rep in range(context.options.repetitions):
        for name, argv in commands.items():
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(items_dir / "out", ignore_errors=True)
            os.sync()
            runs[name].append(run_measured(argv))
            say(f"  rep {rep + 1}: {name} {runs[name][-1].wall:.2f} s")
            written = [f for d in (out, items_dir / "out") for f in d.rglob("*") if f.is_file()]
            if len(written) != ITEMS + (name != AGE_RUN):  # tipbox also keeps manifest.json
                raise CommandError(f"{name} wrote {len(written)} files, not {ITEMS}")
    return runs, bundle.stat().st_size


def open_table(runs: Runs) -> str:
    rows = []
    base = median([r.wall for r in runs[AGE_RUN]])
    for name, done in runs.items():
        peak = max(r.max_rss_kib or 0 for r in done) or None
        wall = median([r.wall for r in done])
        rows.append([
            name, seconds(wall), seconds(median([r.user for r in done])),
            seconds(median([r.system for r in done])), mib(peak), ratio(base / wall),
        ])  # fmt: skip
    headers = [
        "1,000 items (500 × 1 KiB, 500 × 1 MiB)", "wall s", "user s", "sys s", "peak RSS MiB",
        "age loop / this (wall)",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrr")


def run(context: Context) -> str:
    if not AGE.exists():
        raise CommandError(f"the age tool is needed as the baseline and is not at {AGE}")
    keys, identity = newsroom(context.workspace)
    listing = list_timings(context, keys)
    login = login_timings(context)
    runs, size = open_timings(context, keys, identity)
    list_headers = [
        f"{SOURCES:,} sources, 50 a page", "query median ms", "query max ms", "request median ms",
        "request max ms", "request / query", f"max < {TARGET_MS:.0f} ms",
    ]  # fmt: skip
    return f"""The journalist app: the sources list, a login, and opening a bundle on the air-gapped
machine; method in `bench/journalist.py`.

### Sources list ({SOURCES:,} sources, server time per page, in process)

{table(list_headers, listing, "lrrrrrl")}

"query" is `Inbox.page` alone (one SQLite query for the page, one for the count; for unread, one
scan for the unread set, then the page's rows); "request" is `GET /?page=N` through the Flask
test client, logged in (session lookup, query, template).

### Login (default Argon2id cost)

{table(["", "median ms", "min ms", "× Argon2id verify"], login, "lrrr")}

### `tipbox open` against `age` (bundle of {size / MIB:.0f} MiB)

{open_table(runs)}

`tipbox open` checks the whole bundle, writes every file atomically after its whole item
(padding included: a 1 MiB file is stored in a 2 MiB bucket) has authenticated, and, when mat2
is installed, asks `mat2 --show` about every file (a process per file): the row without mat2
is the decryption alone. The age loop trusts tar and writes as it decrypts."""


SECTION = Section("journalist", "sources list, login, tipbox open", run)
