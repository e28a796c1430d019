"""``tipbox user add|list|remove|reset-password|reset-totp``: journalists' accounts, on the server.

A server command: the dispatcher (:mod:`app.cli`) imports this module only for ``tipbox user``,
so the air-gapped commands never load SQLite or argon2. The database is the store's
(``TIPBOX_DATA_DIR``, as for the apps) and passwords are hashed with the apps' cost
(``TIPBOX_PASSWORD_*``). Run it as the user the apps run as (``sudo -u tipbox …``) so the
database stays theirs.

A new password is a generated seven-word passphrase unless ``--ask`` is given; the TOTP secret
is printed as text, as an ``otpauth://`` URI and, on a terminal, as a QR code to scan.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from app.config import load_config
from app.db import DATABASE, Database
from app.errors import PassphraseError
from app.journalist.accounts import (
    Accounts,
    check_password,
    cost_from_env,
    provisioning_uri,
    suggest_passphrase,
)
from app.server import startup


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The sub-commands of ``tipbox user``."""
    user = p.add_subparsers(dest="user_command", required=True)
    q = user.add_parser("add", help="create an account; prints its password and TOTP secret")
    q.add_argument("name", metavar="USERNAME")
    q.add_argument("--admin", action="store_true", help="may manage journalists in the web app")
    q.add_argument(
        "--ask", action="store_true", help="type the password instead of a generated one"
    )
    q.set_defaults(run=cmd_add)
    q = user.add_parser("list", help="list the accounts")
    q.set_defaults(run=cmd_list)
    q = user.add_parser("remove", help="delete an account, its sessions and API tokens")
    q.add_argument("name", metavar="USERNAME")
    q.set_defaults(run=cmd_remove)
    q = user.add_parser(
        "reset-password", help="set a new password (its sessions and API tokens end)"
    )
    q.add_argument("name", metavar="USERNAME")
    q.add_argument(
        "--ask", action="store_true", help="type the password instead of a generated one"
    )
    q.set_defaults(run=cmd_reset_password)
    q = user.add_parser(
        "reset-totp", help="a new TOTP secret to enrol again (its sessions and API tokens end)"
    )
    q.add_argument("name", metavar="USERNAME")
    q.set_defaults(run=cmd_reset_totp)


def _accounts() -> Accounts:
    database = Database(load_config(os.environ).data_dir / DATABASE)
    # One sentence for a folder or database it cannot write, or a database newer than the code.
    startup.open_database(database)
    return Accounts(database, cost_from_env(os.environ))


def _password(ask: bool) -> tuple[str, bool]:
    """The new password, and whether it was generated (and so must be printed)."""
    if not ask:
        return suggest_passphrase(), True
    try:
        first = getpass.getpass("New password (at least 14 characters): ")
        again = getpass.getpass("Type it again: ")
    except (EOFError, OSError):
        raise PassphraseError("there is no terminal to ask the password on") from None
    if first != again:
        raise PassphraseError("the two passwords differ; nothing was changed")
    return check_password(first), False


def _show_totp(username: str, secret: str) -> None:
    uri = provisioning_uri(secret, username, os.environ.get("TIPBOX_NEWSROOM_NAME", "Tipbox"))
    print(f"TOTP secret (6 digits, 30 s): {secret}")
    print(f"TOTP URI: {uri}")
    if sys.stdout.isatty():
        import qrcode  # type: ignore[import-untyped]

        code = qrcode.QRCode(border=2)
        code.add_data(uri)
        code.print_ascii(out=sys.stdout, invert=True)


def cmd_add(args: argparse.Namespace) -> None:
    """Create an account and print what the journalist needs, once."""
    password, generated = _password(args.ask)
    journalist, secret = _accounts().add(args.name, password, admin=args.admin)
    role = "admin" if journalist.is_admin else "journalist"
    print(f"{role} {journalist.username!r} added. Give them, in person, and only once:")
    if generated:
        print(f"password: {password}")
    _show_totp(journalist.username, secret)


def cmd_list(args: argparse.Namespace) -> None:
    """Print every account."""
    everyone = _accounts().all()
    for journalist in everyone:
        role = "admin" if journalist.is_admin else "journalist"
        print(f"{journalist.username:<32} {role:<10} since {journalist.created_day}")
    if not everyone:
        print("no accounts yet: add the first admin with 'tipbox user add --admin NAME'")


def cmd_remove(args: argparse.Namespace) -> None:
    """Delete an account."""
    journalist = _accounts().remove(args.name)
    print(f"{journalist.username!r} removed, with its sessions and API tokens")


def cmd_reset_password(args: argparse.Namespace) -> None:
    """Set a new password."""
    password, generated = _password(args.ask)
    journalist = _accounts().set_password(args.name, password)
    print(f"new password for {journalist.username!r}; their sessions and API tokens ended")
    if generated:
        print(f"password: {password}")


def cmd_reset_totp(args: argparse.Namespace) -> None:
    """Give an account a new TOTP secret."""
    journalist, secret = _accounts().reset_totp(args.name)
    print(f"new TOTP secret for {journalist.username!r}; their sessions and API tokens ended")
    _show_totp(journalist.username, secret)
