"""``tipbox retention run``: delete the sources retention has expired, on the server.

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
    """Delete every source whose retention ran out; say how many."""
    days = retention_days(os.environ)
    if days is None:
        print("retention is off (TIPBOX_RETENTION_DAYS is not set): nothing deleted")
        return
    done = retention.run(_store(), days, date.fromisoformat(today()))
    print(
        f"retention {days} days: {done.sources} source(s) deleted with {done.items} item(s); "
        "starred sources are kept"
    )
