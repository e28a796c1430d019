"""OpenPGP for the daily digest, through Debian's ``gpg``: the journalists' mail clients read
OpenPGP, not age, and gpg is the implementation they already trust.

Each call runs gpg in a throwaway home (a fresh temporary folder, deleted after), so no keyring,
trust database or agent outlives it, and encrypts to the one key in a file
(``--recipient-file``) with ``--trust-model always``: the admin vouches for the key by putting
it in the recipients folder. Compression is off: a compressed digest's size would depend on its
words, an uncompressed one's only on its (padded) length. (An RSA key's encrypted session key
is a byte shorter once in 256 messages, at random: OpenPGP numbers drop leading zero bytes. That
says nothing about the digest; ECC keys, gpg's default, give one size always.)
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.errors import DigestError

GPG = "/usr/bin/gpg"
GPG_TIMEOUT = 60
KEY_SUFFIX = ".asc"
# An address as a file name: no spaces or slashes, one @ (what a mail relay accepts is its call).
ADDRESS = re.compile(r"[^@\s/]+@[^@\s/]+\.[^@\s/]+")


@dataclass(frozen=True)
class Recipient:
    """One journalist: the address the digest goes to, the file of the key it is encrypted to."""

    address: str
    key: Path


def recipients(folder: Path) -> list[Recipient]:
    """The recipients in ``folder``: one armored public key per ``ADDRESS.asc``, sorted."""
    try:
        files = sorted(folder.glob(f"*{KEY_SUFFIX}"))
    except OSError as exc:
        raise DigestError(f"cannot read the recipients folder {folder}: {exc.strerror}") from None
    if not files:
        raise DigestError(
            f"no recipient key (*{KEY_SUFFIX}) in {folder}",
            hint="export each journalist's key: gpg --armor --export ADDRESS > ADDRESS.asc",
        )
    found = []
    for path in files:
        address = path.name.removesuffix(KEY_SUFFIX)
        if not ADDRESS.fullmatch(address):
            raise DigestError(
                f"{path.name}: name each key file after its address (alice@example.org.asc)"
            )
        found.append(Recipient(address, path))
    return found


def encrypt(plain: bytes, key: Path) -> str:
    """``plain`` encrypted to the one public key in the file ``key``, ASCII-armored."""
    with tempfile.TemporaryDirectory(prefix="tipbox-gpg-") as home:
        command = [
            GPG, "--homedir", home, "--batch", "--no-tty", "--quiet", "--no-options",
            "--trust-model", "always", "--compress-algo", "none", "--armor",
            "--recipient-file", str(key), "--encrypt",
        ]  # fmt: skip
        try:
            run = subprocess.run(  # noqa: S603 - a fixed program, the arguments are not a shell's
                command, input=plain, capture_output=True, timeout=GPG_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DigestError(f"cannot run {GPG}: {exc}", hint="apt-get install gpg") from None
    if run.returncode != 0:
        reason = _last_line(run.stderr) or f"exit status {run.returncode}"
        raise DigestError(f"{key.name}: gpg cannot encrypt to it ({reason})")
    return run.stdout.decode("ascii")


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1].removeprefix("gpg: ").strip() if lines else ""


def problems(folder: Path) -> list[str]:
    """What is wrong with the recipients' keys, one sentence per key (nothing: all usable).

    Each key is tried for real (a small encryption), which catches what a listing would also
    have to: not a key, several keys, expired, revoked, no encryption subkey.
    """
    try:
        found = recipients(folder)
    except DigestError as exc:
        return [exc.message]
    wrong = []
    for recipient in found:
        try:
            encrypt(b"check", recipient.key)
        except DigestError as exc:
            wrong.append(exc.message)
    return wrong
