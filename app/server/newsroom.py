"""The server's view of the newsroom keys: public recipients only, checked before serving.

Fails closed: a ``keys/`` folder with no valid recipient, or with anything that parses as a
secret key, is a configuration error and the apps refuse to start. A folder or file that cannot
be read says so (a silent walk would report "no newsroom recipient" instead).

Recipients are post-quantum (hybrid, ``age1pq1…``, what ``tipbox keygen`` makes) or classical
(X25519, ``age1…``). Every item is encrypted to all of them at once, so by age's own rule they
must all be of one kind: a classical key beside a hybrid one would decide every file's strength.
A folder of classical keys is accepted, and :func:`classical_warning` is what the start-up log
and ``tipbox status`` say about it.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.crypto import parse_recipients
from app.crypto.keyfile import KeyRecipient, contains_secret_key, is_age_file, is_post_quantum
from app.errors import ConfigError, KeyFormatError

RECIPIENT_SUFFIX = ".pub"
IGNORED = {"README.md", ".gitkeep"}


def load_recipients(keys_dir: Path) -> list[KeyRecipient]:
    """Every recipient in ``keys_dir/*.pub``, deduplicated, after checking for secret keys."""
    if not keys_dir.is_dir():
        raise ConfigError(f"the keys folder {keys_dir} does not exist")
    recipients: list[KeyRecipient] = []
    for path in _files(keys_dir):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {_reason(exc)}") from None
        if contains_secret_key(data):
            raise ConfigError(
                f"{path} contains a secret key: the server must only hold public recipients",
                hint="remove it from the server now, and treat that key as compromised",
            )
        if path.name in IGNORED:
            continue
        if is_age_file(data):
            raise ConfigError(
                f"{path} is an age-encrypted file, probably a protected identity",
                hint="keep identities on the air-gapped machine; only *.pub files go here",
            )
        if path.suffix != RECIPIENT_SUFFIX:
            raise ConfigError(f"{path} is not a recipient file (expected *{RECIPIENT_SUFFIX})")
        try:
            found = parse_recipients(data.decode("utf-8"))
        except (KeyFormatError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        recipients += [r for r in dict.fromkeys(found) if r not in recipients]
    if not recipients:
        raise ConfigError(
            f"no newsroom recipient in {keys_dir}",
            hint="run 'make keys' on the air-gapped machine and copy newsroom.pub here",
        )
    if len({is_post_quantum(r) for r in recipients}) > 1:
        raise ConfigError(
            f"{keys_dir} mixes post-quantum (age1pq1…) and classical (age1…) recipients: "
            "the classical ones would decide every file's strength",
            hint="keep only the new hybrid key (see 'Rotating the newsroom key' in the README)",
        )
    return recipients


def classical_warning(recipients: list[KeyRecipient]) -> str | None:
    """One plain sentence when the newsroom keys are classical, else ``None``."""
    classical = [r for r in recipients if not is_post_quantum(r)]
    if not classical:
        return None
    return (
        f"{len(classical)} of {len(recipients)} newsroom recipients are classical (X25519, "
        "age1…): tips stored from now on can be read by whoever keeps a copy until a quantum "
        "computer exists; make a post-quantum key with 'tipbox keygen' and rotate to it"
    )


def _reason(exc: OSError) -> str:
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


def _files(keys_dir: Path) -> list[Path]:
    """Every file under ``keys_dir``, sorted; a folder that cannot be read is an error."""

    def refuse(exc: OSError) -> None:
        raise ConfigError(f"cannot read the keys folder {exc.filename}: {_reason(exc)}")

    found = []
    for folder, _, names in os.walk(keys_dir, onerror=refuse):
        found += [Path(folder, name) for name in names]
    return sorted(path for path in found if path.is_file())
