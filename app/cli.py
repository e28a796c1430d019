"""The ``tipbox`` command.

The air-gapped commands (``keygen``, ``encrypt``, ``decrypt``, ``codename``, ``fingerprint``,
``open``, ``reply``) import only :mod:`app.crypto`, :mod:`app.errors`, :mod:`app.files`,
:mod:`app.words`, :mod:`app.container` and, for ``open``/``reply``, :mod:`app.airgap`,
:mod:`app.bundle` and :mod:`app.reply` (the last three inside their handlers, so the common
commands start fast). None of them needs more than ``cryptography``: no Flask, no stem, no
SQLite. Server commands (:mod:`app.admin`, :mod:`app.users_cli`) are registered from modules
that import only the standard library at load time and what they need inside their own handler.
One dispatcher turns every :class:`TipboxError` and ``OSError`` into ``tipbox: error: …`` (plus
``tipbox: hint: …``) and exit status 1: never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NoReturn, cast

from app import admin, crypto, users_cli, words
from app.crypto.keyfile import identity_file_text, load_identities
from app.crypto.stream import Readable
from app.errors import KeyFormatError, PassphraseError, TipboxError, UsageError
from app.files import atomic_write

PROG = "tipbox"
MIN_PASSPHRASE = 12
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse through our dispatcher (exit 1, our format)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _say(kind: str, text: str) -> None:
    print(f"{PROG}: {kind}: {text}", file=sys.stderr)


class Progress:
    """A one-line progress bar on a terminal's stderr; silent when stderr is not a terminal."""

    def __init__(self, label: str, total: int | None) -> None:
        self.enabled = bool(total and total >= PROGRESS_MIN_BYTES and sys.stderr.isatty())
        self._label, self._total, self._last, self._done = label, total or 0, 0.0, 0

    def __call__(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < self._total):
            return
        self._last = now
        share = min(done / self._total, 1.0)
        bar = "#" * int(share * 30)
        sys.stderr.write(f"\r{self._label} [{bar:<30}] {share:4.0%} {done >> 20} MiB")
        sys.stderr.flush()

    def finish(self) -> None:
        """Draw the full bar (decryption counts plaintext, a little less than the input)."""
        if self.enabled:
            sys.stderr.write(f"\r{self._label} [{'#' * 30}] 100% {self._done >> 20} MiB\n")


def _ask(prompt: str) -> str:
    try:
        with warnings.catch_warnings():
            # Without a terminal getpass falls back to stdin, which may be the ciphertext.
            warnings.simplefilter("error", getpass.GetPassWarning)
            return getpass.getpass(prompt)
    except (EOFError, OSError, getpass.GetPassWarning):
        raise PassphraseError(
            "a passphrase is needed but there is no terminal to ask it on",
            hint="run the command in a terminal",
        ) from None


def _asker(prompt: str) -> Callable[[], str]:
    return lambda: _ask(prompt)


def _new_passphrase() -> str:
    first = _ask("Choose a passphrase for the newsroom identity: ")
    if len(first) < MIN_PASSPHRASE:
        raise PassphraseError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    if _ask("Type it again: ") != first:
        raise PassphraseError("the two passphrases differ; nothing was written")
    return first


@contextlib.contextmanager
def _input(path: str | None) -> Iterator[tuple[Readable, int | None]]:
    if path in (None, "-"):
        yield cast(Readable, sys.stdin.buffer), None
        return
    with open(path, "rb") as handle:  # noqa: PTH123 - a plain binary handle is what we stream
        yield handle, os.fstat(handle.fileno()).st_size


def _write_output(path: str | None, write: Callable[[BinaryIO], object], binary: bool) -> None:
    if path in (None, "-"):
        if binary and sys.stdout.isatty():
            raise UsageError(
                "refusing to write binary ciphertext to the terminal",
                hint="use -o FILE or redirect the output",
            )
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.exists() and not target.is_file():
        # A device or a pipe (/dev/null, a FIFO): write in place; renaming over it would
        # replace the device with a regular file.
        with target.open("wb") as handle:
            write(handle)
        return
    with atomic_write(target, overwrite=True, durable=False) as handle:
        write(handle)


def _recipients(args: argparse.Namespace) -> list[crypto.X25519Recipient]:
    recipients = [crypto.X25519Recipient.parse(r) for r in args.recipient]
    for name in args.recipients_file:
        try:
            recipients += crypto.parse_recipients(Path(name).read_text("utf-8"))
        except (KeyFormatError, UnicodeDecodeError) as exc:
            raise KeyFormatError(f"{name}: {exc}") from None
    if not recipients:
        raise UsageError("no recipient given", hint="use -r age1… or -R FILE")
    return recipients


def cmd_encrypt(args: argparse.Namespace) -> None:
    """Encrypt to one or more recipients, like ``age -r``."""
    recipients = _recipients(args)
    with _input(args.input) as (src, size):
        bar = Progress("encrypting", size)
        _write_output(args.output, lambda dst: crypto.encrypt(src, dst, recipients, bar), True)
        bar.finish()


def cmd_decrypt(args: argparse.Namespace) -> None:
    """Decrypt with one or more identity files, like ``age -d -i``."""
    identities: list[crypto.X25519Identity] = []
    for name in args.identity:
        identities += load_identities(Path(name).read_bytes(), _asker(f"Passphrase for {name}: "))
    with _input(args.input) as (src, size):
        bar = Progress("decrypting", size)
        _write_output(args.output, lambda dst: crypto.decrypt(src, dst, identities, bar), False)
        bar.finish()


def cmd_open(args: argparse.Namespace) -> None:
    """Decrypt a bundle from the journalist app into a folder per source."""
    from app import airgap

    identities: list[crypto.X25519Identity] = []
    for name in args.identity:
        identities += load_identities(Path(name).read_bytes(), _asker(f"Passphrase for {name}: "))
    airgap.open_bundle(Path(args.bundle), identities, Path(args.out), Progress, clean=args.clean)


def cmd_reply(args: argparse.Namespace) -> None:
    """Encrypt a reply to a source of a bundle, for upload through the journalist app."""
    from app import reply

    text = reply.reply_text(args.message, Path(args.file) if args.file else None)
    output = Path(args.output) if args.output else None
    source, path = reply.write_reply(Path(args.target), args.source, text, output)
    print(f"reply for {source.designation!r} written to {path}: upload it in the journalist app")


def cmd_keygen(args: argparse.Namespace) -> None:
    """Create the newsroom identity (secret) and its recipient file (public)."""
    identity_path, recipient_path = Path(args.identity), Path(args.recipient)
    for path in (identity_path, recipient_path):
        if path.exists() and not args.force:
            raise UsageError(f"{path} already exists; nothing was written", hint="use --force")
    identity = crypto.X25519Identity.generate()
    created = datetime.now(UTC).strftime("%Y-%m-%d")
    text = identity_file_text(identity, created)
    data = text.encode() if args.no_passphrase else crypto.encrypt_identity(text, _new_passphrase())
    recipient = str(identity.recipient)
    with atomic_write(identity_path, 0o600, overwrite=args.force) as handle:
        handle.write(data)
    with atomic_write(recipient_path, 0o644, overwrite=args.force) as handle:
        handle.write(f"# Tipbox newsroom recipient, created {created}\n{recipient}\n".encode())
    print(f"identity (secret, keep it on this machine): {identity_path}")
    print(f"recipient (public, copy it to the server's keys/): {recipient_path}")
    print(f"recipient: {recipient}")
    print(f"fingerprint: {' '.join(words.fingerprint(recipient.encode()))}")


def cmd_fingerprint(args: argparse.Namespace) -> None:
    """Print the word fingerprint of each recipient, to compare a copied key by voice."""
    for recipient in _recipients(args):
        print(f"{recipient}  {' '.join(words.fingerprint(str(recipient).encode()))}")


def cmd_codename(args: argparse.Namespace) -> None:
    """Print a fresh codename, for trying the portal."""
    print(words.generate_codename(args.lang))


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, one sub-command per job."""
    parser = _Parser(prog=PROG, description="Tipbox: anonymous tips for newsrooms.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("keygen", help="create the newsroom identity and recipient files")
    p.add_argument("--identity", default="newsroom-identity.age", help="secret identity file")
    p.add_argument("--recipient", default="newsroom.pub", help="public recipient file")
    p.add_argument("--no-passphrase", action="store_true", help="do not protect (tests only)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(run=cmd_keygen)

    for name, run, text in (
        ("encrypt", cmd_encrypt, "encrypt to recipients (age format)"),
        ("fingerprint", cmd_fingerprint, "show recipients' word fingerprints"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("-r", "--recipient", action="append", default=[], metavar="RECIPIENT")
        p.add_argument("-R", "--recipients-file", action="append", default=[], metavar="FILE")
        if name == "encrypt":
            p.add_argument("-o", "--output", metavar="OUT", help="output file (default stdout)")
            p.add_argument("input", nargs="?", metavar="IN", help="input file (default stdin)")
        p.set_defaults(run=run)

    p = sub.add_parser("decrypt", help="decrypt an age file with identity files")
    p.add_argument("-i", "--identity", action="append", required=True, metavar="IDENTITY")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default stdout)")
    p.add_argument("input", nargs="?", metavar="IN", help="input file (default stdin)")
    p.set_defaults(run=cmd_decrypt)

    p = sub.add_parser("open", help="decrypt a bundle into a folder per source")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle file from the journalist app")
    p.add_argument("-i", "--identity", action="append", required=True, metavar="IDENTITY")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--clean", action="store_true", help="also write mat2-cleaned copies")
    p.set_defaults(run=cmd_open)

    p = sub.add_parser("reply", help="encrypt a reply to a source of a bundle")
    p.add_argument("target", metavar="BUNDLE-OR-DIR", help="bundle, or folder 'open' wrote")
    p.add_argument("--source", required=True, metavar="DESIGNATION", help="e.g. 'amber falcon'")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--message", metavar="TEXT", help="the reply's text")
    given.add_argument("--file", metavar="PATH", help="a UTF-8 text file holding the reply")
    p.add_argument("-o", "--output", metavar="OUT", help="reply file (default reply-NAME.age)")
    p.set_defaults(run=cmd_reply)

    p = sub.add_parser("codename", help="print a fresh source codename")
    p.add_argument("--lang", choices=words.LANGUAGES, default="en")
    p.set_defaults(run=cmd_codename)
    admin.register(sub)
    users_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except TipboxError as exc:
        _say("error", exc.message)
        if exc.hint:
            _say("hint", exc.hint)
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
        _say("error", f"{exc.filename}: {text}" if exc.filename else text)
        return 1
    except KeyboardInterrupt:
        _say("error", "interrupted; nothing was written")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
