"""The ``tipbox`` command: one dispatcher, and one module per command family.

============  ==========================================  ==================
family        commands                                    runs on
============  ==========================================  ==================
``keys``      ``keygen``, ``fingerprint``, ``codename``   air-gapped machine
``age``       ``encrypt``, ``decrypt``                    air-gapped machine
``open``      ``open`` (with ``metadata``)                air-gapped machine
``reply``     ``reply``                                   air-gapped machine
``backup``    ``backup reencrypt``, ``restore-key``       air-gapped; server
``users``     ``user``                                    server
``retention`` ``retention run``                           server
``server``    ``onion``, ``access``, ``status``           server
``digest``    ``digest``                                  server
============  ==========================================  ==================

The dispatcher imports only the family of the command it runs, so which libraries a command
loads follows from its module's imports: the air-gapped families import the shared core
(:mod:`app.crypto`, :mod:`app.words`, :mod:`app.bundle`, :mod:`app.files`…) and nothing else;
the server families import :mod:`app.server`, :mod:`app.journalist` and :mod:`app.onion` at the
top, as any module does. The command list and its help lines live in :data:`COMMANDS`, so
``tipbox --help`` loads no family at all. On the air-gapped kit, where the server's libraries are
not installed, a server command says so in one line. Each command's help (``tipbox open --help``)
is its help line as a sentence, a sentence per option (the family's ``arguments``) and an example
from :data:`EXAMPLES`.

Every :class:`TipboxError` and ``OSError`` becomes ``tipbox: error: …`` (plus ``tipbox: hint:
…``) and exit status 1: never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from app.cli.terminal import PROG, say
from app.errors import TipboxError, UsageError

# command -> (family module in app.cli, help line)
COMMANDS = {
    "keygen": ("keys", "create the newsroom identity and recipient files"),
    "encrypt": ("age", "encrypt to recipients (age format)"),
    "fingerprint": ("keys", "show recipients' word fingerprints"),
    "decrypt": ("age", "decrypt an age file with identity files"),
    "open": ("open", "decrypt a bundle into a folder per source"),
    "reply": ("reply", "encrypt a reply to a source of a bundle"),
    "codename": ("keys", "print a fresh source codename"),
    "backup": ("backup", "re-encrypt a backup to a new server's one-time restore key"),
    "onion": ("server", "publish or remove the two onion services"),
    "access": ("server", "journalists' keys to the journalist service"),
    "status": ("server", "check tor, the onion services, the apps, the disk"),
    "user": ("users", "manage journalists' accounts (on the server)"),
    "digest": ("digest", "send the daily encrypted digest now, or a test one"),
    "retention": ("retention", "delete sources inactive for TIPBOX_RETENTION_DAYS (daily)"),
}
# command -> an example of its use, shown at the end of its --help
EXAMPLES = {
    "keygen": "tipbox keygen --identity newsroom-identity.age --recipient newsroom.pub",
    "encrypt": "tipbox encrypt -R newsroom.pub -o notes.age notes.txt",
    "fingerprint": "tipbox fingerprint -R newsroom.pub",
    "decrypt": "tipbox decrypt -i newsroom-identity.age -o item.tar 0003-amber-falcon-file.age",
    "open": "tipbox open bundle.tar -i newsroom-identity.age --out tips",
    "reply": "tipbox reply tips --source 'amber falcon' --file reply.txt -o reply.age",
    "codename": "tipbox codename --lang es",
    "onion": "sudo tipbox onion publish --wait 60",
    "access": "sudo tipbox access add alice --out /media/usb",
    "status": "sudo tipbox status",
    "user": "sudo tipbox user add alice --admin",
    "backup": "tipbox backup reencrypt -i newsroom-identity.age -R restore.pub -o new.tar old.tar",
    "retention": "sudo tipbox retention run",
    "digest": "sudo tipbox digest send --test",
}
SERVER_FAMILIES = ("server", "users", "digest", "retention")


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse through our dispatcher (exit 1, our format)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _chosen(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is one."""
    return next((word for word in argv if word in COMMANDS), None)


def _family(command: str) -> object:
    """The module of ``command``'s family, imported now."""
    family = COMMANDS[command][0]
    try:
        return importlib.import_module(f"app.cli.{family}")
    except ModuleNotFoundError as exc:
        if family not in SERVER_FAMILIES or (exc.name or "").startswith("app"):
            raise
        # One line, no hint (a TipboxError, not a UsageError with its --help hint): the kit
        # leaves the server's libraries out on purpose, and nothing else needs saying.
        raise TipboxError(
            f"'tipbox {command}' runs on the server, not from the air-gapped kit "
            f"(its library {exc.name!r} is not installed here)"
        ) from None


def version() -> str:
    """This tipbox's version: the installed package's, or a checkout's pyproject.toml."""
    # Imported here: importlib.metadata brings importlib.resources and more, which the
    # air-gapped commands do not load (tests/test_cli.py test_air_gapped_imports).
    import importlib.metadata  # noqa: PLC0415

    try:
        return importlib.metadata.version("tipbox")
    except importlib.metadata.PackageNotFoundError:
        text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text("utf-8")
        found = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
        return found[1] if found else "unknown"


class _Version(argparse.Action):
    """``--version``, looked up only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"{PROG} {version()}")
        parser.exit()


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The command line, with the options of the command ``argv`` names (and no other's)."""
    parser = _Parser(prog=PROG, description="Tipbox: anonymous tips for newsrooms.")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chosen = _chosen(argv)
    for command, (_, text) in COMMANDS.items():
        example = EXAMPLES.get(command)  # every command has one (tests/test_cli.py checks)
        p = sub.add_parser(
            command,
            help=text,
            description=f"{text[0].upper()}{text[1:]}.",
            epilog=f"example:\n  {example}" if example else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if command == chosen:
            _family(command).arguments(command, p)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
        args.run(args)
    except TipboxError as exc:
        say("error", exc.message)
        if exc.hint:
            say("hint", exc.hint)
        return 1
    except BrokenPipeError:
        # Whatever reads our standard output stopped reading: `| tar -x` stops at the end of
        # the archive, before a stored item's padding. Like any Unix filter killed by SIGPIPE
        # (age included), say nothing and exit with 128 + SIGPIPE. Python would complain again
        # when it flushes stdout at exit, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except OSError as exc:
        text = (exc.strerror or str(exc)).lower()
        say("error", f"{exc.filename}: {text}" if exc.filename else text)
        return 1
    except KeyboardInterrupt:
        say("error", "interrupted; nothing was written")
        return 1
    return 0
