"""Reloading tor without taking it down: tor exits on a SIGHUP that brings a configuration it
rejects or a damaged key, so every file is checked and ``tor --verify-config`` run first, and
tor's own view of its services is checked afterwards.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from app.onion.control import _present
from app.onion.disk import _prepare_dir, _restore, _tor_owner, _write
from app.onion.errors import TorConfigError, TorError, TorMissingError
from app.onion.keys import _read_client, service_address
from app.onion.layout import SERVICES, SOURCE, Layout, render_torrc

VERIFY_TIMEOUT = 120.0
_QUIET = ("running Tor as root", "TestingTorNetwork", "DirAuthority", "very low", "GeoIP")


def _tor_complaint(output: str) -> str:
    """The first warning or error tor printed, without its time stamp."""
    for line in output.splitlines():
        match = re.search(r"\[(warn|err)\] (.*)", line)
        if match and not any(quiet in line for quiet in _QUIET):
            return match.group(2).strip()
    return output.strip().splitlines()[-1] if output.strip() else "no reason given"


def _verify_config(ctl: Any, layout: Layout) -> None:
    """``tor --verify-config`` on the files the running tor was started with."""
    binary = shutil.which(layout.tor)
    if binary is None:
        raise TorMissingError(
            f"tor is not installed: no '{layout.tor}' program to check its configuration with"
        )
    config_file = ctl.get_info("config-file", "")
    defaults = ctl.get_info("config-defaults-file", "")
    if not config_file or not Path(config_file).is_file():
        raise TorConfigError(
            "cannot check tor's configuration before reloading it: tor runs without a"
            f" configuration file ({config_file or 'none'})"
        )
    command = [binary, "--verify-config", "-f", config_file]
    if defaults:
        command += ["--defaults-torrc", defaults]
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            command, capture_output=True, text=True, timeout=VERIFY_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise TorError(f"'tor --verify-config' did not finish in {VERIFY_TIMEOUT:.0f} s") from None
    if result.returncode != 0:
        detail = _tor_complaint(result.stdout + result.stderr)
        raise TorConfigError(
            f"tor would refuse its configuration, so it was not reloaded: {detail}"
        )


def _check_files(layout: Layout) -> None:
    """Every folder, key and client file tor reads on reload: a bad one would make it exit.
    Owners and modes are fixed; a damaged key or client file raises."""
    for name in SERVICES:
        hs_dir = layout.hs_dir(name)
        if not hs_dir.is_dir():
            continue
        _prepare_dir(hs_dir, _tor_owner(layout))
        service_address(hs_dir)
        clients = sorted((hs_dir / "authorized_clients").glob("*.auth"))
        if name == SOURCE and clients:
            raise TorConfigError(
                f"the source service must be public, but {clients[0]} restricts it",
                hint=f"delete the files in {hs_dir / 'authorized_clients'}",
            )
        for path in clients:
            _read_client(path)


def _reload(ctl: Any, layout: Layout, present: set[str]) -> None:
    """Check everything, SIGHUP tor, and make sure it now publishes exactly ``present``."""
    _check_files(layout)
    _verify_config(ctl, layout)
    ctl.signal("RELOAD")
    configured = _present(ctl, layout)
    if configured != present:
        wanted = ", ".join(sorted(present)) or "none"
        raise TorConfigError(
            f"tor reloaded but publishes {', '.join(sorted(configured)) or 'no service'}"
            f" of ours instead of {wanted}",
            hint="see tor's log: journalctl -u tor@default",
        )


def _install_snippet(ctl: Any, layout: Layout, services: tuple[str, ...]) -> None:
    """Write the torrc snippet for ``services`` and reload; put the old one back on failure."""
    path = layout.snippet
    old = path.read_bytes() if path.exists() else None
    _write(path, render_torrc(layout, services).encode(), 0o644, None)
    try:
        _reload(ctl, layout, set(services))
    except BaseException:
        _restore(path, old, 0o644, None)
        raise


def _check_include(ctl: Any, layout: Layout) -> None:
    config_file = Path(ctl.get_info("config-file", ""))
    try:
        text = config_file.read_text("utf-8", "replace")
    except OSError:
        return  # _verify_config names the problem
    for line in text.splitlines():
        words = line.split(maxsplit=1)
        if len(words) == 2 and words[0] == "%include":
            target = words[1].strip()
            if Path(target) == layout.torrc_dir or fnmatch.fnmatch(str(layout.snippet), target):
                return
    raise TorConfigError(
        f"tor's configuration {config_file} does not include {layout.torrc_dir}",
        hint=f"add the line '%include {layout.torrc_dir}/*.conf' to it (make deploy does)",
    )
