"""``tipbox backup restore-key`` and ``tipbox backup reencrypt``: restoring a backup without
bringing the newsroom's secret key to a server.

``make backup`` encrypts to the newsroom's recipients, whose identity lives on the air-gapped
machine only. To restore, the new server makes a one-time *restore key* (``restore-key``, run by
``make restore-key``) and prints its recipient and word fingerprint; on the air-gapped machine
``reencrypt`` opens the backup with the newsroom identity and encrypts it, as it streams, to that
recipient; ``make restore`` opens the result with the restore key and then deletes the key. The
newsroom identity never leaves the air-gapped machine, and no plaintext touches either disk.

Air-gapped: the core only, like :mod:`app.cli.age`. The restore key is a plain identity file
(no passphrase: a script uses it once, on the server that made it, and deletes it).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from app import crypto, words
from app.cli.age import load_identity_files
from app.cli.keys import read_recipients, recipient_options
from app.cli.terminal import Progress, opened_input, write_output
from app.crypto.keyfile import KeyRecipient, identity_file_text, parse_identities
from app.errors import KeyFormatError, UsageError
from app.files import atomic_write


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The sub-commands of ``tipbox backup``."""
    sub = p.add_subparsers(dest="backup_command", required=True)
    q = sub.add_parser("restore-key", help="(new server) make a one-time key to restore with")
    q.add_argument("--identity", required=True, metavar="FILE", help="where to keep the key")
    q.set_defaults(run=cmd_restore_key)
    q = sub.add_parser(
        "reencrypt", help="(air-gapped) re-encrypt a backup to a new server's restore recipient"
    )
    q.add_argument(
        "-i",
        "--identity",
        action="append",
        required=True,
        metavar="IDENTITY",
        help="the newsroom identity file that opens the backup (repeat for older keys)",
    )
    recipient_options(q)
    q.add_argument("-o", "--output", metavar="OUT", help="output file (default stdout)")
    q.add_argument("input", nargs="?", metavar="IN", help="the backup (default stdin)")
    q.set_defaults(run=cmd_reencrypt)


def _show(recipient: KeyRecipient) -> None:
    print(f"restore recipient: {recipient}")
    print(f"fingerprint: {' '.join(words.fingerprint(str(recipient).encode()))}")


def cmd_restore_key(args: argparse.Namespace) -> None:
    """Make the one-time restore key (or show the one already made) and print its recipient."""
    path = Path(args.identity)
    if path.exists():
        # Running it twice must not change the recipient a backup may already be encrypted to.
        try:
            found = parse_identities(path.read_text("utf-8"))
        except (KeyFormatError, UnicodeDecodeError):
            found = []
        if len(found) != 1:
            raise UsageError(f"{path} is not a restore key", hint="move it away and run again")
        _show(found[0].recipient)
        return
    identity = crypto.HybridIdentity.generate()  # post-quantum, like the newsroom key
    created = datetime.now(UTC).strftime("%Y-%m-%d")
    with atomic_write(path, 0o600) as handle:
        handle.write(identity_file_text(identity, created).encode())
    _show(identity.recipient)


def cmd_reencrypt(args: argparse.Namespace) -> None:
    """Decrypt a backup with the newsroom identity and encrypt it to the restore recipient."""
    recipients = read_recipients(args)
    identities = load_identity_files(args.identity)
    if any(str(i.recipient) == str(r) for i in identities for r in recipients):
        raise UsageError(
            "that recipient is the newsroom's own key, not a restore key",
            hint="give the recipient 'sudo make restore-key' printed on the new server",
        )

    def write(dst: BinaryIO) -> None:
        # A damaged backup raises before the writer is closed: write_output then discards the
        # truncated output rather than leave a file that looks whole.
        with crypto.Writer(dst, recipients) as sealed:
            crypto.decrypt(src, sealed, identities, bar)

    with opened_input(args.input) as (src, size):
        bar = Progress("re-encrypting", size)
        write_output(args.output, write, True)
        bar.finish()
