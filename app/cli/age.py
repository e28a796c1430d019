"""``tipbox encrypt`` and ``tipbox decrypt``: age files, as the ``age`` command makes them.

Air-gapped: the core only. Both stream (constant memory, any size) and write their output whole or
not at all (:func:`app.cli.terminal.write_output`); encrypt refuses to write binary ciphertext to
a terminal (``-a`` writes ASCII armor, which it may); decrypt reads binary and armored files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import BinaryIO

from app import crypto
from app.cli.keys import read_recipients, recipient_options
from app.cli.terminal import Progress, asker, opened_input, write_output
from app.crypto.armor import ArmorWriter, dearmor
from app.crypto.keyfile import KeyIdentity, load_identities


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The options of ``command``."""
    if command == "encrypt":
        recipient_options(p)
        p.add_argument("-a", "--armor", action="store_true", help="write PEM-armored text")
        p.set_defaults(run=cmd_encrypt)
    else:
        p.add_argument("-i", "--identity", action="append", required=True, metavar="IDENTITY")
        p.set_defaults(run=cmd_decrypt)
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default stdout)")
    p.add_argument("input", nargs="?", metavar="IN", help="input file (default stdin)")


def load_identity_files(names: list[str]) -> list[KeyIdentity]:
    """The identities in the files ``names``, asking for a passphrase where one is needed."""
    identities: list[KeyIdentity] = []
    for name in names:
        identities += load_identities(Path(name).read_bytes(), asker(f"Passphrase for {name}: "))
    return identities


def cmd_encrypt(args: argparse.Namespace) -> None:
    """Encrypt to one or more recipients, like ``age -r`` (``-a``: armored, like ``age -a``)."""
    recipients = read_recipients(args)

    def write(dst: BinaryIO) -> None:
        sink = ArmorWriter(dst) if args.armor else dst
        crypto.encrypt(src, sink, recipients, bar)
        if isinstance(sink, ArmorWriter):
            sink.close()

    with opened_input(args.input) as (src, size):
        bar = Progress("encrypting", size)
        write_output(args.output, write, not args.armor)
        bar.finish()


def cmd_decrypt(args: argparse.Namespace) -> None:
    """Decrypt with one or more identity files, like ``age -d -i``."""
    identities = load_identity_files(args.identity)
    with opened_input(args.input) as (src, size):
        bar = Progress("decrypting", size)
        armored = dearmor(src)  # as age -d: armor is recognised by its first line
        write_output(args.output, lambda dst: crypto.decrypt(armored, dst, identities, bar), False)
        bar.finish()
