"""``tipbox encrypt`` and ``tipbox decrypt``: age files, as the ``age`` command makes them.

Air-gapped: the core only. Both stream (constant memory, any size) and write their output whole or
not at all (:func:`app.cli.terminal.write_output`); encrypt refuses to write ciphertext to a
terminal. The commands most often confused are told apart by a file's first block
(:func:`sniff`): ``decrypt`` given a bundle and ``open`` given a single item each point to the
other, and an identity option given a public key says so, before anything is written.
Encrypt may write ASCII armor (``-a``); decrypt reads binary and armored files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import BinaryIO

from app import crypto
from app.bundle import MANIFEST_NAME
from app.cli.keys import read_recipients, recipient_options
from app.cli.terminal import Progress, asker, opened_input, write_output
from app.crypto.armor import ArmorWriter, dearmor
from app.crypto.keyfile import KeyIdentity, load_identities
from app.errors import KeyFormatError, UsageError

AGE_STARTS = (b"age-encryption.org/", b"-----BEGIN AGE ENCRYPTED FILE-----")
RECIPIENT_PREFIX = "age1"
PUBLIC_KEY_HINT = (
    "-i takes the secret identity file (newsroom-identity.age from 'tipbox keygen'); "
    "the public key is for encrypting"
)


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The options of ``command``."""
    if command == "encrypt":
        recipient_options(p)
        p.add_argument("-a", "--armor", action="store_true", help="write PEM-armored text")
        p.set_defaults(run=cmd_encrypt)
    else:
        p.add_argument(
            "-i", "--identity", action="append", required=True, metavar="IDENTITY",
            help="the secret identity file (newsroom-identity.age); may be given again",
        )  # fmt: skip
        p.set_defaults(run=cmd_decrypt)
    p.add_argument(
        "-o", "--output", metavar="OUT", help="the file to write (default: standard output)"
    )
    p.add_argument(
        "input", nargs="?", metavar="IN", help="the file to read (default: standard input)"
    )


def load_identity_files(names: list[str]) -> list[KeyIdentity]:
    """The identities in the files ``names``, asking for a passphrase where one is needed."""
    identities: list[KeyIdentity] = []
    for name in names:
        path = Path(name)
        if name.startswith(RECIPIENT_PREFIX) and not path.exists():
            raise _public_key(name)  # the key itself, pasted where its file was expected
        data = path.read_bytes()
        if _is_public_key(data):
            raise _public_key(name)
        identities += load_identities(data, asker(f"Passphrase for {name}: "))
    return identities


def _is_public_key(data: bytes) -> bool:
    """Whether an identity file's bytes are in fact recipients (``age1…`` lines, comments)."""
    lines = data.decode("utf-8", "replace").splitlines()
    keys = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return bool(keys) and all(key.startswith(RECIPIENT_PREFIX) for key in keys)


def _public_key(name: str) -> KeyFormatError:
    return KeyFormatError(
        f"{name} is a public key (a recipient), not an identity", hint=PUBLIC_KEY_HINT
    )


def sniff(path: str | None) -> str | None:
    """What a file looks like from its first block: ``"age"``, ``"bundle"``, or ``None``
    (standard input, a pipe, unreadable, or anything else: the command itself will say what is
    wrong). Only a regular file is read: bytes read from a pipe would be lost to the command."""
    if path in (None, "-"):
        return None
    try:
        if not Path(path).is_file():
            return None
        with Path(path).open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    if head.startswith(AGE_STARTS):
        return "age"
    tar_name = head[:100].rstrip(b"\0")
    if head[257:262] == b"ustar" and tar_name == MANIFEST_NAME.encode():
        return "bundle"
    return None


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
    if sniff(args.input) == "bundle":
        raise UsageError(
            f"{args.input} is a bundle, not a single age file",
            hint=f"use 'tipbox open {args.input} -i IDENTITY --out DIR'",
        )
    identities = load_identity_files(args.identity)
    with opened_input(args.input) as (src, size):
        bar = Progress("decrypting", size)
        armored = dearmor(src)  # as age -d: armor is recognised by its first line
        write_output(args.output, lambda dst: crypto.decrypt(armored, dst, identities, bar), False)
        bar.finish()
