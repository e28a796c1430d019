"""``tipbox digest``: send the daily digest now (what ``tipbox-digest.timer`` runs) or a test
one, and write the digest's systemd drop-ins (what ``make deploy`` runs).

Server commands. The settings are the apps' (``/etc/tipbox/tipbox.env``, read as systemd reads
it, then the environment), so an admin's ``sudo tipbox digest send --test`` sends exactly what
the timer would, through the same relay to the same keys.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from app.cli.server import ENV_FILE, read_env_file
from app.errors import DigestError
from app.files import atomic_write
from app.server.digest import send_digest
from app.server.digest_config import DigestConfig, drop_ins, load_digest_config, resolvers

SERVICE_DROP_IN = "tipbox-digest.service.d/relay.conf"
TIMER_DROP_IN = "tipbox-digest.timer.d/time.conf"


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The sub-commands of ``tipbox digest``."""
    digest = p.add_subparsers(dest="digest_command", required=True)
    q = digest.add_parser("send", help="send today's digest now (the timer does, daily)")
    q.add_argument("--test", action="store_true", help="a test message: says nothing of tips")
    q.set_defaults(run=cmd_send)
    q = digest.add_parser("units", help="write the systemd drop-ins for the relay and the time")
    q.add_argument("--out", required=True, metavar="DIR", help="systemd's unit folder")
    q.set_defaults(run=cmd_units)


def _env_file() -> Path:
    return Path(os.environ.get("TIPBOX_ROOT", "").strip() or "/") / ENV_FILE


def _config() -> DigestConfig | None:
    return load_digest_config({**read_env_file(_env_file()), **os.environ})


def cmd_send(args: argparse.Namespace) -> None:
    """Send the digest (or a test) to every recipient, retrying what the relay refuses."""
    config = _config()
    if config is None:
        raise DigestError(
            "the daily digest is not configured: TIPBOX_DIGEST_RELAY is empty",
            hint=f"set the TIPBOX_DIGEST_* settings in {_env_file()} (README: the daily digest)",
        )
    count = send_digest(config, test=args.test)
    what = "test digest" if args.test else "daily digest"
    print(f"{what} sent to {count} recipient(s) through {config.relay_host}:{config.port}")


def cmd_units(args: argparse.Namespace) -> None:
    """Write (or, with no relay set, remove) the drop-ins; say whether the digest is on."""
    out = Path(args.out)
    config = _config()
    paths = [out / SERVICE_DROP_IN, out / TIMER_DROP_IN]
    if config is None:
        for path in paths:
            path.unlink(missing_ok=True)
        print("daily digest not configured (TIPBOX_DIGEST_RELAY is empty): timer off")
        return
    for path, text in zip(paths, drop_ins(config, resolvers()), strict=True):
        path.parent.mkdir(mode=0o755, exist_ok=True)
        with atomic_write(path, 0o644, overwrite=True) as handle:
            handle.write(text.encode())
    print(f"daily digest at {config.time} UTC through {config.relay_host}:{config.port}")
