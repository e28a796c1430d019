"""Where the two services live: paths from the environment, the torrc snippet, the addresses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.onion.disk import _owner, _write

SOURCE, JOURNALIST = "source", "journalist"
SERVICES = (SOURCE, JOURNALIST)
SNIPPET_NAME = "tipbox.conf"
ADDRESSES_NAME = "onion-addresses"


@dataclass(frozen=True)
class Layout:
    """Where tor's configuration, the services' keys and sockets, and the addresses live."""

    torrc_dir: Path
    tor_dir: Path
    data_dir: Path
    source_socket: Path
    journalist_socket: Path
    control: str
    password: str | None = field(default=None, repr=False)
    tor: str = "tor"

    @classmethod
    def under(cls, root: Path, **changes: Any) -> Layout:
        """The deployment layout below ``root`` ("/" on a server, a temporary folder in tests)."""
        values: dict[str, Any] = {
            "torrc_dir": root / "etc/tor/torrc.d",
            "tor_dir": root / "var/lib/tor",
            "data_dir": root / "var/lib/tipbox",
            "source_socket": root / "run/tipbox/source.sock",
            "journalist_socket": root / "run/tipbox/journalist.sock",
            "control": f"unix:{root / 'run/tor/control'}",
        }
        return cls(**{**values, **changes})

    def hs_dir(self, service: str) -> Path:
        """The service's ``HiddenServiceDir``."""
        return self.tor_dir / f"tipbox-{service}"

    def socket(self, service: str) -> Path:
        """The unix socket the service's app listens on."""
        return self.source_socket if service == SOURCE else self.journalist_socket

    @property
    def clients_dir(self) -> Path:
        """The journalist service's ``authorized_clients`` folder."""
        return self.hs_dir(JOURNALIST) / "authorized_clients"

    @property
    def snippet(self) -> Path:
        """The torrc file holding both services."""
        return self.torrc_dir / SNIPPET_NAME

    @property
    def addresses_file(self) -> Path:
        """Where the addresses are kept for admins and the apps."""
        return self.data_dir / ADDRESSES_NAME


def layout_from_env(env: Mapping[str, str]) -> Layout:
    """The layout from ``TIPBOX_ROOT`` (a prefix for every path), ``TIPBOX_TOR_CONTROL``,
    ``TIPBOX_TOR_PASSWORD``, ``TIPBOX_TOR`` (the program), ``TIPBOX_DATA_DIR``,
    ``TIPBOX_SOURCE_SOCKET`` and ``TIPBOX_JOURNALIST_SOCKET``; all optional, the defaults are
    Debian's."""
    root = Path(env.get("TIPBOX_ROOT", "").strip() or "/")
    changes: dict[str, Any] = {"password": env.get("TIPBOX_TOR_PASSWORD") or None}
    if control := env.get("TIPBOX_TOR_CONTROL", "").strip():
        changes["control"] = control
    if tor := env.get("TIPBOX_TOR", "").strip():
        changes["tor"] = tor
    for name, key in (
        ("TIPBOX_DATA_DIR", "data_dir"),
        ("TIPBOX_SOURCE_SOCKET", "source_socket"),
        ("TIPBOX_JOURNALIST_SOCKET", "journalist_socket"),
    ):
        if value := env.get(name, "").strip():
            changes[key] = Path(value)
    return Layout.under(root, **changes)


def render_torrc(layout: Layout, services: tuple[str, ...] = SERVICES) -> str:
    """The torrc snippet for ``services`` (deploy/torrc is this text for the default layout)."""
    for path in (layout.tor_dir, layout.source_socket, layout.journalist_socket):
        if re.search(r"[\s\"\\#]", str(path)):
            raise ConfigError(f"{path}: paths in tor's configuration cannot hold spaces or quotes")
    lines = [
        "# Tipbox's onion services. Written by 'tipbox onion publish' (make deploy) as",
        f"# {layout.snippet}: do not edit, it is rewritten on every deploy.",
    ]
    if SOURCE in services:
        lines += [
            "",
            "# Source service: public. Its key stays in this folder (0600, tor's user only).",
            f"HiddenServiceDir {layout.hs_dir(SOURCE)}",
            f"HiddenServicePort 80 unix:{layout.source_socket}",
            "# Under a flood of introductions, clients must solve a puzzle to get in.",
            "HiddenServicePoWDefensesEnabled 1",
            "# A circuit asking for more streams than a browser ever opens is cut.",
            "HiddenServiceMaxStreams 64",
            "HiddenServiceMaxStreamsCloseCircuit 1",
        ]
    if JOURNALIST in services:
        lines += [
            "",
            "# Journalist service: only clients holding a key listed in authorized_clients/",
            "# (one NAME.auth per journalist: 'tipbox access add|list|remove').",
            f"HiddenServiceDir {layout.hs_dir(JOURNALIST)}",
            f"HiddenServicePort 80 unix:{layout.journalist_socket}",
        ]
    return "\n".join(lines) + "\n"


def read_addresses(layout: Layout) -> dict[str, str]:
    """The addresses stored by the last :func:`publish` (empty if none)."""
    try:
        text = layout.addresses_file.read_text("ascii")
    except FileNotFoundError:
        return {}
    pairs = (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    return {words[0]: words[1] for words in pairs if len(words) == 2 and words[0] in SERVICES}


def _store_addresses(layout: Layout, addresses: Mapping[str, str]) -> None:
    layout.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = ["# Tipbox's onion addresses, written by 'tipbox onion publish'"]
    lines += [f"{name} {addresses[name]}" for name in SERVICES if name in addresses]
    _write(
        layout.addresses_file, ("\n".join(lines) + "\n").encode(), 0o640, _owner(layout.data_dir)
    )
