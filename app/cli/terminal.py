"""What every ``tipbox`` command shares with its user: messages, prompts, progress, files.

Messages go to stderr as ``tipbox: KIND: TEXT`` (``error``, ``hint``, ``warning``), lowercase,
as age's command does; anything that came from a file (a name, metadata) passes through
:func:`printable` first, so a bundle cannot drive the terminal. Passphrases are asked on the
terminal only, never read from stdin, which may be the ciphertext.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from app.crypto.stream import Readable
from app.errors import PassphraseError, UsageError
from app.files import atomic_write

PROG = "tipbox"
MIN_PASSPHRASE = 12
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


def say(kind: str, text: str) -> None:
    """One ``tipbox: KIND: TEXT`` line on stderr."""
    print(f"{PROG}: {kind}: {text}", file=sys.stderr)


def printable(text: str) -> str:
    """``text`` without control characters (metadata must not drive the terminal)."""
    return "".join(c for c in text if unicodedata.category(c)[0] != "C")


class Bar(Protocol):
    """A progress display, as :class:`Progress`."""

    def __call__(self, done: int) -> None: ...

    def finish(self) -> None: ...


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


def ask(prompt: str) -> str:
    """A line typed on the terminal, not echoed."""
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


def asker(prompt: str) -> Callable[[], str]:
    """:func:`ask` for ``prompt``, when called (a key file may need no passphrase)."""
    return lambda: ask(prompt)


def new_passphrase() -> str:
    """A new passphrase for the newsroom identity, typed twice."""
    first = ask("Choose a passphrase for the newsroom identity: ")
    if len(first) < MIN_PASSPHRASE:
        raise PassphraseError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    if ask("Type it again: ") != first:
        raise PassphraseError("the two passphrases differ; nothing was written")
    return first


@contextlib.contextmanager
def opened_input(path: str | None) -> Iterator[tuple[Readable, int | None]]:
    """The input file (``-`` or none: stdin) and its size when known."""
    if path in (None, "-"):
        yield cast(Readable, sys.stdin.buffer), None
        return
    with open(path, "rb") as handle:  # noqa: PTH123 - a plain binary handle is what we stream
        yield handle, os.fstat(handle.fileno()).st_size


def write_output(path: str | None, write: Callable[[BinaryIO], object], binary: bool) -> None:
    """Run ``write`` on the output file (``-`` or none: stdout), whole or not at all."""
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
