"""The audit log (app/journalist/audit.py): downloads and deletions counted per journalist,
source and day, whether through the pages or the API; shown to admins only; purged with
retention."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.db import migrated
from app.journalist import audit
from app.journalist.audit import Entry
from tests import fixtures_app as fx
from tests import fixtures_journalist as lj
from tests.fixtures_app import find
from tests.fixtures_journalist import add_source, csrf, logged_in, state_of

config, translations_dir = fx.config, fx.translations_dir
jconfig, japp, jclient, clock = lj.jconfig, lj.japp, lj.jclient, lj.clock


def _designation(app: Flask, source_id: str) -> str:
    found = state_of(app).store.source(source_id)
    assert found is not None
    return found.designation


def test_counts_add_up_per_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = migrated(tmp_path)
    monkeypatch.setattr(audit, "today", lambda: "2026-01-01")
    audit.record(database, "alice", "downloaded items", "quiet otter")
    audit.record(database, "alice", "downloaded items", "quiet otter", 3)
    audit.record(database, "alice", "deleted items", "quiet otter", 0)  # nothing: no row
    monkeypatch.setattr(audit, "today", lambda: "2026-01-05")
    audit.record(database, "bob", "deleted the source", "quiet otter")
    assert audit.entries(database) == [
        Entry("2026-01-05", "bob", "deleted the source", "quiet otter", 1),
        Entry("2026-01-01", "alice", "downloaded items", "quiet otter", 4),
    ]
    assert audit.purge(database, 30, date(2026, 2, 3)) == 1  # 2026-01-05 + 30 is still kept
    assert [e.journalist for e in audit.entries(database)] == ["bob"]
    assert audit.purge(database, None, date(2026, 4, 5)) == 1  # retention off: 90 days


def test_what_journalists_do_is_logged_and_shown_to_admins(
    japp: Flask, jclient: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "today", lambda: "2026-02-01")
    kept, items = add_source(japp, ["one", "two"])
    gone, _ = add_source(japp)
    kept_name, gone_name = _designation(japp, kept), _designation(japp, gone)
    logged_in(jclient, japp, "carol")
    download = jclient.get(f"/sources/{kept}/items/{items[0].id}")
    download.close()
    token = csrf(jclient, "/")
    data = {"csrf_token": token, "item": [items[1].id], "confirm": "yes"}
    assert jclient.post(f"/sources/{kept}/items/delete", data=data).status_code == 303
    data = {"csrf_token": token, "confirm": "yes"}
    assert jclient.post(f"/sources/{gone}/delete", data=data).status_code == 303
    assert audit.entries(state_of(japp).store.database) == [
        Entry("2026-02-01", "carol", "deleted items", kept_name, 1),
        Entry("2026-02-01", "carol", "deleted the source", gone_name, 1),
        Entry("2026-02-01", "carol", "downloaded items", kept_name, 1),
    ]
    assert jclient.get("/admin/audit").status_code == 403  # not an admin

    admin = japp.test_client()
    logged_in(admin, japp, "dana", admin=True)
    page = admin.get("/admin/audit")
    rows = [r.text for r in find(page.data, "tr", cls="entry")]  # the cells' texts, joined
    assert f"2026-02-01caroldownloaded items{kept_name}1" in rows
    assert "Kept for 90 days" in page.data.decode()
    assert f"2026-02-01caroldeleted the source{gone_name}1" in rows
