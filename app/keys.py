"""The server's view of the newsroom keys: public recipients only, checked before serving.

Fails closed: a ``keys/`` folder with no valid recipient, or with anything that parses as a
secret key, is a configuration error and the apps refuse to start.
"""

from __future__ import annotations

from pathlib import Path

from app.crypto import X25519Recipient, parse_recipients
from app.crypto.keyfile import contains_secret_key, is_age_file
from app.errors import ConfigError, KeyFormatError

RECIPIENT_SUFFIX = ".pub"
IGNORED = {"README.md", ".gitkeep"}


def load_recipients(keys_dir: Path) -> list[X25519Recipient]:
    """Every recipient in ``keys_dir/*.pub``, deduplicated, after checking for secret keys."""
    if not keys_dir.is_dir():
        raise ConfigError(f"the keys folder {keys_dir} does not exist")
    recipients: list[X25519Recipient] = []
    for path in sorted(keys_dir.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
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
    return recipients
