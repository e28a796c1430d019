"""The ``tipbox`` command: one dispatcher, and one module per command family.

============  ==========================================  ==================
family        commands                                    runs on
============  ==========================================  ==================
``keys``      ``keygen``, ``fingerprint``, ``codename``   air-gapped machine
``age``       ``encrypt``, ``decrypt``                    air-gapped machine
``open``      ``open`` (with ``metadata``)                air-gapped machine
``reply``     ``reply``                                   air-gapped machine
``users``     ``user``                                    server
``server``    ``onion``, ``access``, ``status``           server
``digest``    ``digest``                                  server
============  ==========================================  ==================

The dispatcher imports only the family of the command it runs, so which libraries a command
loads follows from its module's imports: the air-gapped families import the shared core
(:mod:`app.crypto`, :mod:`app.words`, :mod:`app.bundle`, :mod:`app.files`…) and nothing else;
the server families import :mod:`app.server`, :mod:`app.journalist` and :mod:`app.onion` at the
top, as any module does. The command list and its help lines live in :data:`COMMANDS`, so
``tipbox --help`` loads no family at all. On the air-gapped kit, where the server's libraries are
not installed, a server command says so in one line.

Every :class:`TipboxError` and ``OSError`` becomes ``tipbox: error: …`` (plus ``tipbox: hint:
…``) and exit status 1: never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
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
    "onion": ("server", "publish or remove the two onion services"),
    "access": ("server", "journalists' keys to the journalist service"),
    "status": ("server", "check tor, the onion services, the apps, the disk"),
    "user": ("users", "manage journalists' accounts (on the server)"),
    "digest": ("digest", "send the daily encrypted digest now, or a test one"),
}
SERVER_FAMILIES = ("server", "users", "digest")


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
        raise UsageError(
            f"'tipbox {command}' runs on the server; this machine lacks {exc.name}",
            hint="the air-gapped kit has keygen, fingerprint, encrypt, decrypt, open and reply",
        ) from None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The command line, with the options of the command ``argv`` names (and no other's)."""
    parser = _Parser(prog=PROG, description="Tipbox: anonymous tips for newsrooms.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chosen = _chosen(argv)
    for command, (_, text) in COMMANDS.items():
        p = sub.add_parser(command, help=text)
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
