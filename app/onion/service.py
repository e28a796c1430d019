"""What the ``tipbox onion``, ``access`` and ``status`` commands do with tor and its files."""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import TipboxError, UsageError
from app.onion.control import _configured, _present, _reason, controller
from app.onion.disk import _owner, _prepare_dir, _restore, _tor_owner, _write
from app.onion.errors import TorError
from app.onion.keys import (
    LOCKED,
    ClientKey,
    check_name,
    list_clients,
    parse_public_key,
    service_address,
)
from app.onion.layout import JOURNALIST, SERVICES, Layout, _store_addresses, read_addresses
from app.onion.reload import _check_include, _install_snippet, _reload

APPEAR_TIMEOUT = 10.0


def _lock_if_open(layout: Layout, owner: tuple[int, int]) -> bool:
    """Give the journalist service a placeholder client while nobody has a key."""
    if list_clients(layout):
        return False
    locked = layout.clients_dir / f"{LOCKED}.auth"
    if locked.exists():
        return False
    _write(locked, (ClientKey.generate(LOCKED).auth_line() + "\n").encode(), 0o600, owner)
    return True


def _wait_address(hs_dir: Path) -> str:
    deadline = time.monotonic() + APPEAR_TIMEOUT
    while (address := service_address(hs_dir)) is None:
        if time.monotonic() >= deadline:
            raise TorError(f"tor did not create the keys in {hs_dir}")
        time.sleep(0.1)
    return address


def publish(layout: Layout, wait: float = 0.0) -> tuple[dict[str, str], dict[str, str]]:
    """Configure both services in tor, reload it, store the addresses.

    Returns the addresses and the ones stored before (to warn when one changed).
    """
    with controller(layout, wait) as ctl:
        _check_include(ctl, layout)
        owner = _tor_owner(layout)
        for name in SERVICES:
            _prepare_dir(layout.hs_dir(name), owner)
        _prepare_dir(layout.clients_dir, owner)
        _lock_if_open(layout, owner)
        _install_snippet(ctl, layout, SERVICES)
        addresses = {name: _wait_address(layout.hs_dir(name)) for name in SERVICES}
    previous = read_addresses(layout)
    _store_addresses(layout, addresses)
    return addresses, previous


def unpublish(layout: Layout, purge: bool = False) -> None:
    """Stop publishing both services; ``purge`` also deletes their keys (addresses lost)."""
    with controller(layout) as ctl:
        old = layout.snippet.read_bytes() if layout.snippet.exists() else None
        layout.snippet.unlink(missing_ok=True)
        try:
            _reload(ctl, layout, set())
        except BaseException:
            _restore(layout.snippet, old, 0o644, None)
            raise
    if purge:
        for name in SERVICES:
            shutil.rmtree(layout.hs_dir(name), ignore_errors=True)
    layout.addresses_file.unlink(missing_ok=True)


def _journalist_address(layout: Layout) -> str:
    address = None
    if layout.clients_dir.is_dir():
        address = service_address(layout.hs_dir(JOURNALIST))
    if address is None:
        raise TorError(
            "the journalist onion service is not set up yet",
            hint="run 'tipbox onion publish' (make deploy does)",
        )
    return address


def add_client(layout: Layout, name: str, public_key: str | None = None) -> tuple[ClientKey, str]:
    """Authorise a new journalist; returns their key (with its private half if made here) and
    the journalist service's address."""
    check_name(name)
    address = _journalist_address(layout)
    path = layout.clients_dir / f"{name}.auth"
    if path.exists():
        raise UsageError(
            f"{name!r} already has access",
            hint=f"to give them a new key: 'tipbox access remove {name}', then add them again",
        )
    key = (
        ClientKey.generate(name)
        if public_key is None
        else ClientKey(name, parse_public_key(public_key))
    )
    locked = layout.clients_dir / f"{LOCKED}.auth"
    with controller(layout) as ctl:
        present = _present(ctl, layout)
        owner = _owner(layout.clients_dir)
        old_lock = locked.read_bytes() if locked.exists() else None
        _write(path, (key.auth_line() + "\n").encode(), 0o600, owner)
        locked.unlink(missing_ok=True)
        try:
            _reload(ctl, layout, present)
        except BaseException:
            path.unlink(missing_ok=True)
            _restore(locked, old_lock, 0o600, owner)
            raise
    return key, address


def remove_client(layout: Layout, name: str) -> None:
    """Take a journalist's key away; the others keep theirs (see the package docstring)."""
    check_name(name)
    _journalist_address(layout)
    path = layout.clients_dir / f"{name}.auth"
    if not path.exists():
        raise UsageError(f"{name!r} has no access", hint="see 'tipbox access list'")
    with controller(layout) as ctl:
        present = _present(ctl, layout)
        owner = _owner(path)
        old = path.read_bytes()
        path.unlink()
        locked = _lock_if_open(layout, owner)
        try:
            if JOURNALIST in present:
                # Out and back in: new descriptors, cookie and introduction points.
                _install_snippet(ctl, layout, tuple(sorted(present - {JOURNALIST})))
                _install_snippet(ctl, layout, tuple(n for n in SERVICES if n in present))
            else:
                _reload(ctl, layout, present)
        except BaseException:
            _write(path, old, 0o600, owner)
            if locked:
                (layout.clients_dir / f"{LOCKED}.auth").unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class ServiceState:
    """What tor and the files say about one service."""

    name: str
    configured: bool
    address: str | None
    problem: str | None
    descriptor: bool
    pow: bool
    clients: int | None
    loose: list[Path]


@dataclass(frozen=True)
class TorState:
    """What tor says about itself and our services."""

    version: str
    progress: int
    summary: str
    services: dict[str, ServiceState]


def _service_state(
    ctl: Any, layout: Layout, name: str, options: dict[str, list[str]] | None
) -> ServiceState:
    hs_dir = layout.hs_dir(name)
    address, problem, clients = None, None, None
    try:
        address = service_address(hs_dir)
        if name == JOURNALIST:
            clients = len(list_clients(layout))
    except (TorError, OSError) as exc:
        problem = exc.message if isinstance(exc, TipboxError) else _reason(exc)
    descriptor = False
    if address is not None:
        reply = ctl.get_info(f"hs/service/desc/id/{address.removesuffix('.onion')}", None)
        descriptor = bool(reply)
    loose = []
    with contextlib.suppress(OSError):
        loose = [p for p in hs_dir.rglob("*") if p.is_file() and p.stat().st_mode & 0o077]
    pow_on = (options or {}).get("HiddenServicePoWDefensesEnabled", ["0"])[-1] == "1"
    return ServiceState(
        name, options is not None, address, problem, descriptor, pow_on, clients, loose
    )


def inspect(layout: Layout) -> TorState:
    """Ask tor how it is and what it publishes of ours."""
    with controller(layout) as ctl:
        version = str(ctl.get_version()).split()[0]
        phase = ctl.get_info("status/bootstrap-phase", "")
        progress = re.search(r"PROGRESS=(\d+)", phase)
        summary = re.search(r'SUMMARY="([^"]*)"', phase)
        configured = _configured(ctl)
        services = {
            name: _service_state(ctl, layout, name, configured.get(layout.hs_dir(name)))
            for name in SERVICES
        }
    return TorState(
        version,
        int(progress.group(1)) if progress else 0,
        summary.group(1) if summary else "unknown",
        services,
    )
