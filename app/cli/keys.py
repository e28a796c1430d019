"""``tipbox keygen``, ``fingerprint`` and ``codename``: the newsroom's keys and sources' codenames.

Air-gapped: the core only (:mod:`app.crypto`, :mod:`app.words`, :mod:`app.files`). ``keygen``
makes a post-quantum hybrid key (``age1pq1…``, readable by age 1.3 and later) unless
``--classic`` asks for X25519 (``age1…``, any age). The identity file is written 0600, its
passphrase asked twice on the terminal; the recipient file is public and is what the server's
``keys/`` folder holds. A fingerprint is words, so two people can compare a copied key by voice.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from app import crypto, words
from app.cli.terminal import new_passphrase
from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import KeyIdentity, KeyRecipient, identity_file_text, parse_recipient
from app.errors import KeyFormatError, UsageError
from app.files import atomic_write


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The options of ``command``."""
    if command == "keygen":
        p.add_argument("--identity", default="newsroom-identity.age", help="secret identity file")
        p.add_argument("--recipient", default="newsroom.pub", help="public recipient file")
        p.add_argument("--no-passphrase", action="store_true", help="do not protect (tests only)")
        p.add_argument("--force", action="store_true", help="overwrite existing files")
        p.add_argument(
            "--classic",
            action="store_true",
            help="an X25519 key, for an age older than 1.3 (not post-quantum)",
        )
        p.set_defaults(run=cmd_keygen)
    elif command == "fingerprint":
        recipient_options(p)
        p.set_defaults(run=cmd_fingerprint)
    else:
        p.add_argument(
            "--lang", choices=words.LANGUAGES, default="en", help="the codename's language"
        )
        p.set_defaults(run=cmd_codename)


def recipient_options(p: argparse.ArgumentParser) -> None:
    """``-r RECIPIENT`` and ``-R FILE``, each as often as needed."""
    p.add_argument(
        "-r", "--recipient", action="append", default=[], metavar="RECIPIENT",
        help="a public key (age1…); may be given again",
    )  # fmt: skip
    p.add_argument(
        "-R", "--recipients-file", action="append", default=[], metavar="FILE",
        help="a file of public keys, one a line, such as newsroom.pub; may be given again",
    )  # fmt: skip


def read_recipients(args: argparse.Namespace) -> list[KeyRecipient]:
    """The recipients given with ``-r`` and ``-R``; at least one."""
    recipients = [parse_recipient(r) for r in args.recipient]
    for name in args.recipients_file:
        try:
            recipients += crypto.parse_recipients(Path(name).read_text("utf-8"))
        except (KeyFormatError, UnicodeDecodeError) as exc:
            raise KeyFormatError(f"{name}: {exc}") from None
    if not recipients:
        raise UsageError("no recipient given", hint="use -r age1… or -R FILE")
    return recipients


def cmd_keygen(args: argparse.Namespace) -> None:
    """Create the newsroom identity (secret) and its recipient file (public): a post-quantum
    hybrid key unless ``--classic`` asks for X25519."""
    identity_path, recipient_path = Path(args.identity), Path(args.recipient)
    for path in (identity_path, recipient_path):
        if path.exists() and not args.force:
            raise UsageError(f"{path} already exists; nothing was written", hint="use --force")
    identity: KeyIdentity = (
        crypto.X25519Identity.generate() if args.classic else HybridIdentity.generate()
    )
    created = datetime.now(UTC).strftime("%Y-%m-%d")
    text = identity_file_text(identity, created)
    data = text.encode() if args.no_passphrase else crypto.encrypt_identity(text, new_passphrase())
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
    for recipient in read_recipients(args):
        print(f"{recipient}  {' '.join(words.fingerprint(str(recipient).encode()))}")


def cmd_codename(args: argparse.Namespace) -> None:
    """Print a fresh codename, for trying the portal."""
    print(words.generate_codename(args.lang))
