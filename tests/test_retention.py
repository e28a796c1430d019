"""Retention (app/server/retention.py, ``tipbox retention run``, the journalist list): sources
with no submission for ``TIPBOX_RETENTION_DAYS`` go, with their items, replies and reply keys;
starred ones stay. The clock is set: submissions are stored on a chosen day (the store's
``today``), and each run is given its day."""

from __future__ import annotations

import os
import subprocess
from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Config
from app.crypto import X25519Identity
from app.errors import ConfigError
from app.journalist import create_app
from app.journalist.config import JournalistConfig, load, retention_days
from app.server import retention, store
from app.server.store import Store
from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_app import find, one
from tests.fixtures_journalist import CHEAP, add_source, logged_in, state_of
from tests.helpers import TIPBOX, assert_cli_error

config, translations_dir = fx.config, fx.translations_dir
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock
DAYS = 30


class Day:
    """The day the store writes on submissions; settable."""

    def __init__(self) -> None:
        self.value = "2026-01-01"

    def __call__(self) -> str:
        return self.value


@pytest.fixture
def day(monkeypatch: pytest.MonkeyPatch) -> Day:
    clock = Day()
    monkeypatch.setattr(store, "today", clock)
    return clock


def _source_on(app: Flask, day: Day, when: str, reply: str | None = None) -> str:
    day.value = when
    source_id, _ = add_source(app, ["hello"], [("a.pdf", b"%PDF-1.7")])
    if reply:
        state_of(app).store.add_reply_text(source_id, reply)
    return source_id


def _ids(db_store: Store) -> set[str]:
    return {s.id for s in db_store.list_sources()}


def test_deletion_day() -> None:
    assert retention.deletion_day("2026-01-01", 30) == "2026-01-31"
    assert retention.deletion_day("2024-02-28", 2) == "2024-03-01"  # a leap year


@pytest.mark.parametrize(
    ("raw", "days"), [("", None), ("0", None), (" 30 ", 30), ("3650", 3650), ("1", 1)]
)
def test_retention_setting(raw: str, days: int | None) -> None:
    assert retention_days({"TIPBOX_RETENTION_DAYS": raw}) == days


@pytest.mark.parametrize("raw", ["-1", "3651", "thirty", "30d", "３０"])
def test_retention_setting_refuses(raw: str) -> None:
    with pytest.raises(ConfigError, match="TIPBOX_RETENTION_DAYS"):
        load({"TIPBOX_RETENTION_DAYS": raw})


def test_inactive_sources_go_with_everything_starred_ones_stay(japp: Flask, day: Day) -> None:
    state = state_of(japp)
    old = _source_on(japp, day, "2026-01-01", reply="we got it")
    kept = _source_on(japp, day, "2026-01-01")
    recent = _source_on(japp, day, "2026-01-20")
    state.inbox.star(kept, True)
    old_files = [state.store.path_of(i) for i in state.store.items_of(old)]
    assert len(old_files) == 3  # message, file, reply
    assert all(p.exists() for p in old_files)

    assert retention.run(state.store, DAYS, date(2026, 1, 30)) == retention.Result(0, 0)
    assert retention.run(state.store, DAYS, date(2026, 1, 31)) == retention.Result(1, 3)
    assert _ids(state.store) == {kept, recent}
    assert not any(p.exists() for p in old_files)
    with state.store.database.connect() as db:
        assert (
            db.execute("SELECT COUNT(*) FROM items WHERE source_id = ?", (old,)).fetchone()[0] == 0
        )

    assert retention.run(state.store, DAYS, date(2026, 2, 19)).sources == 1  # recent's turn
    assert _ids(state.store) == {kept}
    day.value = "2026-03-01"
    assert retention.run(state.store, DAYS, date(2027, 1, 1)).sources == 0  # starred: kept
    state.inbox.star(kept, False)
    assert retention.run(state.store, DAYS, date(2027, 1, 1)).sources == 1
    assert _ids(state.store) == set()


def test_a_new_submission_moves_the_day(japp: Flask, day: Day) -> None:
    state = state_of(japp)
    source_id = _source_on(japp, day, "2026-01-01")
    day.value = "2026-01-25"
    state.store.commit(source_id, "", [state.store.add_message("more")])
    assert retention.run(state.store, DAYS, date(2026, 2, 1)).sources == 0
    assert retention.run(state.store, DAYS, date(2026, 2, 24)).sources == 1


def test_deleted_rows_leave_no_trace_in_the_database_files(japp: Flask, day: Day) -> None:
    """secure_delete overwrites the freed rows, and the write-ahead log is truncated."""
    state = state_of(japp)
    recipient = str(X25519Identity.generate().recipient)
    day.value = "2026-01-01"
    source_id = os.urandom(32).hex()
    state.store.commit(source_id, recipient, [state.store.add_message("hello")])
    designation = state.store.source(source_id).designation  # type: ignore[union-attr]
    _source_on(japp, day, "2026-01-02")  # a neighbour on the same pages
    database = state.store.db_path
    wal = database.with_name(database.name + "-wal")
    before = database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert recipient.encode() in before  # the check can fail
    assert retention.run(state.store, DAYS, date(2026, 1, 31)).sources == 1
    after = database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    for trace in (recipient, source_id, designation):
        assert trace.encode() not in after, trace
    assert not wal.exists() or wal.stat().st_size == 0


# --- the journalist list -------------------------------------------------------------------


@pytest.fixture
def kept_app(config: Config, clock: lj.Clock) -> Flask:
    """The journalist app with ``TIPBOX_RETENTION_DAYS=30``."""
    app = create_app(JournalistConfig(base=config, password_cost=CHEAP, retention_days=DAYS))
    state_of(app).accounts.clock = clock
    state_of(app).sessions.clock = clock
    return app


def test_the_list_shows_the_deletion_day_and_the_star_that_keeps(kept_app: Flask, day: Day) -> None:
    plain = _source_on(kept_app, day, "2026-01-05")
    starred = _source_on(kept_app, day, "2026-01-06")
    state_of(kept_app).inbox.star(starred, True)
    client = kept_app.test_client()
    logged_in(client, kept_app)
    page = client.get("/")
    note = one(page.data, "p", id="retention").text
    assert "no new submission for 30 days are deleted" in note
    assert "A starred source is kept" in note
    # newest first: the starred source (2026-01-06), then the other (2026-01-05)
    rows = [r.attrs["id"] for r in find(page.data, "tr", cls="source")]
    assert rows == [f"source-{starred}", f"source-{plain}"]
    cells = [c.text for c in find(page.data, "td", cls="deletion")]
    assert cells == ["kept (starred)", "2026-02-04"]


def test_the_source_page_says_when_it_is_deleted_or_that_the_star_keeps_it(
    kept_app: Flask, day: Day
) -> None:
    source_id = _source_on(kept_app, day, "2026-01-05")
    client = kept_app.test_client()
    logged_in(client, kept_app)
    note = one(client.get(f"/sources/{source_id}").data, "p", id="deletion").text
    assert "deleted on 2026-02-04" in note
    assert "Star it to keep it" in note
    state_of(kept_app).inbox.star(source_id, True)
    note = one(client.get(f"/sources/{source_id}").data, "p", id="deletion").text
    assert "Starred: kept" in note
    assert "2026-02-04" not in note


def test_without_retention_the_source_page_says_nothing_of_deletion(
    japp: Flask, jclient: FlaskClient
) -> None:
    source_id, _ = add_source(japp)
    logged_in(jclient, japp)
    page = jclient.get(f"/sources/{source_id}")
    assert page.status_code == 200
    assert b'id="deletion"' not in page.data


def test_without_retention_the_list_has_no_deletion_column(
    japp: Flask, jclient: FlaskClient
) -> None:
    add_source(japp)
    logged_in(jclient, japp)
    page = jclient.get("/")
    assert b"Deleted on" not in page.data
    assert b'id="retention"' not in page.data


# --- tipbox retention run -------------------------------------------------------------------


def _tipbox(config: Config, days: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*TIPBOX, "retention", "run"],
        cwd=cwd,
        env=_env(config, days),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _env(config: Config, days: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env |= {"TIPBOX_DATA_DIR": str(config.data_dir), "TIPBOX_KEYS_DIR": str(config.keys_dir)}
    env["TIPBOX_RETENTION_DAYS"] = days
    return env


def test_the_daily_command(japp: Flask, day: Day, config: Config, tmp_path: Path) -> None:
    old = _source_on(japp, day, "2001-01-01")
    today = date.today().isoformat()
    fresh = _source_on(japp, day, today)
    off = _tipbox(config, "", tmp_path)
    assert off.returncode == 0, off.stderr
    assert off.stdout.decode().startswith(
        "retention is off (TIPBOX_RETENTION_DAYS is not set): no source deleted; "
    )
    on = _tipbox(config, "30", tmp_path)
    assert on.returncode == 0, on.stderr
    assert "retention 30 days: 1 source(s) deleted with 2 item(s)" in on.stdout.decode()
    assert _ids(state_of(japp).store) == {fresh}
    assert old not in {s.id for s in state_of(japp).store.list_sources()}
    bad = _tipbox(config, "forever", tmp_path)
    assert_cli_error(bad, "TIPBOX_RETENTION_DAYS must be a whole number")
