"""``tipbox retention run``: delete the sources retention has expired (and audit-log rows as
old), on the server.

Run once a day by ``tipbox-retention.timer`` (deploy/), as the apps' user and with their
settings, like ``tipbox user``; by hand it does the same. With ``TIPBOX_RETENTION_DAYS`` unset it
says so and deletes nothing. What counts and when is :mod:`app.server.retention`.
"""

from __future__ import annotations

import argparse
import os
from datetime import date

from app.config import load_config
from app.days import today
from app.db import DATABASE, Database
from app.journalist import audit
from app.journalist.config import retention_days
from app.server import retention, startup
from app.server.newsroom import load_recipients
from app.server.store import Store


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The sub-commands of ``tipbox retention``."""
    sub = p.add_subparsers(dest="retention_command", required=True)
    q = sub.add_parser("run", help="delete sources inactive for TIPBOX_RETENTION_DAYS (daily)")
    q.set_defaults(run=cmd_run)


def _store() -> Store:
    config = load_config(os.environ)
    database = Database(config.data_dir / DATABASE)
    # One sentence for a folder or database it cannot write, or a database newer than the code.
    startup.open_database(database)
    return Store(database, load_recipients(config.keys_dir))


def cmd_run(args: argparse.Namespace) -> None:
    """Delete every source whose retention ran out, and audit rows as old; say how many."""
    days, on = retention_days(os.environ), date.fromisoformat(today())
    store = _store()
    purged = audit.purge(store.database, days, on)
    kept = f"audit log rows older than {days or audit.DEFAULT_DAYS} days deleted: {purged}"
    if days is None:
        print(f"retention is off (TIPBOX_RETENTION_DAYS is not set): no source deleted; {kept}")
        return
    done = retention.run(store, days, on)
    print(
        f"retention {days} days: {done.sources} source(s) deleted with {done.items} item(s); "
        f"starred sources are kept; {kept}"
    )
