"""Section "journalist": the sources list at 10,000 sources and a login (``tipbox open``, once
part 3 here, has its own section: bench/opening.py).

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
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pyotp

from bench.core import MIB, Context, Section, Workspace, median, ratio, say, table
from bench.procs import CommandError

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


def run(context: Context) -> str:
    if not AGE.exists():
        raise CommandError(f"the age tool is needed as the baseline and is not at {AGE}")
    keys, _ = newsroom(context.workspace)
    listing = list_timings(context, keys)
    login = login_timings(context)
    list_headers = [
        f"{SOURCES:,} sources, 50 a page", "query median ms", "query max ms", "request median ms",
        "request max ms", "request / query", f"max < {TARGET_MS:.0f} ms",
    ]  # fmt: skip
    return f"""The journalist app: the sources list and a login; method in `bench/journalist.py`.

### Sources list ({SOURCES:,} sources, server time per page, in process)

{table(list_headers, listing, "lrrrrrl")}

"query" is `Inbox.page` alone (one SQLite query for the page, one for the count; for unread, one
scan for the unread set, then the page's rows); "request" is `GET /?page=N` through the Flask
test client, logged in (session lookup, query, template).

### Login (default Argon2id cost)

{table(["", "median ms", "min ms", "× Argon2id verify"], login, "lrrr")}"""


SECTION = Section("journalist", "sources list, login", run)
