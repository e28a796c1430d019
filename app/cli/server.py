"""The server's admin commands: ``tipbox onion``, ``tipbox access`` and ``tipbox status``.

Server commands: the dispatcher (:mod:`app.cli`) imports this module only for them, so the
air-gapped commands never load stem. Paths and tor's control port come from the environment
(see :func:`app.onion.layout_from_env`); the defaults are Debian's, so on a server
``sudo tipbox status`` needs no setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from app.config import load_config
from app.errors import TipboxError, UsageError
from app.files import atomic_write
from app.onion import (
    SERVICES,
    Layout,
    TorState,
    add_client,
    check_name,
    inspect,
    layout_from_env,
    list_clients,
    publish,
    read_addresses,
    remove_client,
    unpublish,
)
from app.server import updates
from app.server.digest import status as digest_status
from app.server.newsroom import classical_warning, load_recipients
from app.server.unixhttp import UnixHTTPConnection

APP_TIMEOUT = 20.0  # a socket-activated app imports itself on the first connection
ENV_FILE = "etc/tipbox/tipbox.env"  # the apps' settings (deploy/install.sh), under TIPBOX_ROOT


def arguments(command: str, p: argparse.ArgumentParser) -> None:
    """The options and sub-commands of ``command`` (``onion``, ``access`` or ``status``)."""
    if command == "onion":
        _onion_arguments(p)
    elif command == "access":
        _access_arguments(p)
    else:
        p.set_defaults(run=cmd_status)


def _onion_arguments(p: argparse.ArgumentParser) -> None:
    onion = p.add_subparsers(dest="onion_command", required=True)
    q = onion.add_parser("publish", help="configure both services in tor and print the addresses")
    q.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for tor")
    q.set_defaults(run=cmd_publish)
    q = onion.add_parser("remove", help="stop publishing both services (keeps their keys)")
    q.add_argument("--purge", action="store_true", help="also delete the keys: addresses lost")
    q.set_defaults(run=cmd_remove)
    q = onion.add_parser("addresses", help="print the stored onion addresses")
    q.set_defaults(run=cmd_addresses)


def _access_arguments(p: argparse.ArgumentParser) -> None:
    access = p.add_subparsers(dest="access_command", required=True)
    q = access.add_parser("add", help="create a key for a journalist and authorise it")
    q.add_argument("name", metavar="NAME", help="lower-case letters, digits, '-' or '_'")
    q.add_argument("--public-key", metavar="KEY", help="authorise this key instead of a new one")
    q.add_argument("--out", default=".", metavar="DIR", help="where to write NAME.auth_private")
    q.set_defaults(run=cmd_access_add)
    q = access.add_parser("list", help="list the journalists who have a key")
    q.set_defaults(run=cmd_access_list)
    q = access.add_parser("remove", help="take a journalist's key away (the others keep theirs)")
    q.add_argument("name", metavar="NAME", help="the name the key was added under")
    q.set_defaults(run=cmd_access_remove)


def _layout() -> Layout:
    return layout_from_env(os.environ)


def _url(address: str) -> str:
    return f"http://{address}/"


def cmd_publish(args: argparse.Namespace) -> None:
    """Configure both services, reload tor, print and store the addresses."""
    layout = _layout()
    addresses, previous = publish(layout, wait=args.wait)
    for name, address in addresses.items():
        if previous.get(name) not in (None, address):
            print(
                f"tipbox: warning: the {name} address changed from {previous[name]}: its key was"
                " lost or replaced; restore it from a backup, or announce the new address",
                file=sys.stderr,
            )
    print(f"source onion service:     {_url(addresses['source'])}")
    print(f"journalist onion service: {_url(addresses['journalist'])}  (one key per journalist)")
    print(f"addresses stored in {layout.addresses_file}")


def cmd_remove(args: argparse.Namespace) -> None:
    """Stop publishing both services."""
    unpublish(_layout(), purge=args.purge)
    if args.purge:
        print("both onion services removed and their keys deleted: the addresses are gone")
    else:
        print("both onion services removed; their keys are kept ('tipbox onion publish' again)")


def cmd_addresses(args: argparse.Namespace) -> None:
    """Print the addresses stored by the last publish."""
    layout = _layout()
    addresses = read_addresses(layout)
    if not addresses:
        raise TipboxError(
            f"no onion address stored in {layout.addresses_file}",
            hint="run 'tipbox onion publish' (make deploy does)",
        )
    for name, address in addresses.items():
        print(f"{name} {_url(address)}")


def cmd_access_add(args: argparse.Namespace) -> None:
    """Authorise a journalist; print what they put in Tor Browser and write their file."""
    name = check_name(args.name)
    out = Path(args.out) / f"{name}.auth_private"
    if args.public_key is None and not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not a folder; nothing was changed", hint="use --out DIR")
    if args.public_key is None and out.exists():
        raise UsageError(f"{out} already exists; nothing was changed", hint="use --out DIR")
    key, address = add_client(_layout(), name, args.public_key)
    print(f"{name} can now open the journalist onion service.")
    if key.private is None:
        print("They use the private key that goes with the public key you gave.")
        return
    line = key.auth_private_line(address)
    with atomic_write(out, 0o600) as handle:
        handle.write(f"{line}\n".encode())
    print("In Tor Browser: open the address, and paste the key when it asks for one:")
    print(f"  address: {_url(address)}")
    print(f"  key:     {key.private}")
    print(f"For a tor client (ClientOnionAuthDir), the same as one line, also in {out}:")
    print(f"  {line}")
    print("Hand it over in person, then delete the file here: the server needs only the public")
    print(f"half. Lost or leaked? 'tipbox access remove {name}', then add {name} again.")


def cmd_access_list(args: argparse.Namespace) -> None:
    """List the journalists who hold a key."""
    clients = list_clients(_layout())
    if not clients:
        print("nobody has access: the journalist service admits no one ('tipbox access add')")
    for client in clients:
        print(f"{client.name:<32} x25519 {client.public[:12]}…")


def cmd_access_remove(args: argparse.Namespace) -> None:
    """Take a journalist's key away."""
    remove_client(_layout(), args.name)
    print(f"{args.name} no longer has access; everyone else keeps their key.")
    print("The journalist service was rebuilt: open pages reconnect within a minute.")


# --- tipbox status ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One line of ``tipbox status``."""

    ok: bool
    text: str
    warning: bool = False  # works, but something should be done (shown WARN, not counted)

    def __str__(self) -> str:
        label = "FAIL" if not self.ok else "WARN" if self.warning else "ok  "
        return f"{label}  {self.text}"


def tor_checks(layout: Layout, state: TorState) -> list[Check]:
    """Tor itself, then each service, in plain words."""
    checks = [Check(True, f"tor {state.version} answers on {layout.control}")]
    if state.progress >= 100:
        checks.append(Check(True, "tor is connected to the Tor network"))
    else:
        text = f"tor is not connected to the Tor network ({state.progress}%: {state.summary})"
        checks.append(Check(False, text))
    for service in state.services.values():
        what = f"{service.name} onion service"
        if service.problem:
            checks.append(Check(False, f"{what}: {service.problem}"))
        elif not service.configured:
            checks.append(Check(False, f"{what} is not in tor's configuration (make deploy)"))
        elif not service.address or not service.descriptor:
            checks.append(Check(False, f"{what} is configured but not published yet"))
        else:
            extra = "proof-of-work defence on" if service.pow else "no proof-of-work defence"
            if service.clients is not None:
                extra = f"{service.clients} journalist(s) with a key"
            checks.append(Check(True, f"{what} is published: {_url(service.address)} ({extra})"))
        if service.loose:
            names = ", ".join(str(p) for p in service.loose)
            checks.append(Check(False, f"{what}: readable by others, chmod 0600: {names}"))
    return checks


def app_check(name: str, path: Path, host: str | None) -> Check:
    """Whether the app answers HTTP on its unix socket (what tor forwards to)."""
    import http.client  # here: the air-gapped commands load this module too (+25 ms)

    what = f"{name} app on {path}"
    conn = UnixHTTPConnection(path, APP_TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Host": host or "localhost"})
        status = conn.getresponse().status
    except FileNotFoundError:
        return Check(False, f"{what}: no such socket (is tipbox-{name}.socket running?)")
    except ConnectionRefusedError:
        return Check(False, f"{what}: nothing listens on it")
    except PermissionError:
        return Check(False, f"{what}: not allowed to connect (run as root)")
    except TimeoutError:
        return Check(False, f"{what}: no answer within {APP_TIMEOUT:.0f} s")
    except (OSError, http.client.HTTPException) as exc:
        return Check(False, f"{what}: {exc.__class__.__name__} {exc}".rstrip())
    finally:
        conn.close()
    if status >= 500:
        return Check(False, f"{what} answers with an error (HTTP {status}): see its journal")
    return Check(True, f"{what} answers (HTTP {status})")


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd's EnvironmentFile= reads them (quotes, # comments);
    nothing if the file cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    settings = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith(("#", ";")):
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            settings[key.strip()] = value
    return settings


def disk_check(data_dir: Path, reserve: int) -> Check:
    """Free space in the data folder, against the reserve below which submissions are refused."""
    try:
        stats = os.statvfs(data_dir)
    except OSError as exc:
        return Check(False, f"data folder {data_dir}: {exc.strerror}")
    free = stats.f_bavail * stats.f_frsize
    text = f"{_gib(free)} free in {data_dir} (submissions are refused below {_gib(reserve)})"
    if free < reserve:
        return Check(False, f"{text}: make room, or lower TIPBOX_FREE_SPACE_RESERVE")
    return Check(True, text)


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB"


def _settings() -> tuple[Path, dict[str, str]]:
    """The apps' settings file, and the settings as systemd passes them to the apps."""
    env_file = Path(os.environ.get("TIPBOX_ROOT", "").strip() or "/") / ENV_FILE
    return env_file, {**read_env_file(env_file), **os.environ}


def _disk(layout: Layout) -> Check:
    """The free space check, with the apps' settings."""
    env_file, settings = _settings()
    try:
        config = load_config(settings)
    except TipboxError as exc:
        return Check(False, f"{env_file}: {exc.message}")
    return disk_check(layout.data_dir, config.reserve_bytes)


def keys_check(keys_dir: Path) -> Check:
    """The newsroom keys as the apps load them: a warning when any of them is classical."""
    try:
        recipients = load_recipients(keys_dir)
    except TipboxError as exc:
        return Check(False, f"newsroom keys: {exc.message}")
    warning = classical_warning(recipients)
    if warning:
        return Check(True, f"newsroom keys: {warning}", warning=True)
    count = len(recipients)
    return Check(
        True, f"newsroom keys: {count} post-quantum recipient{'s' * (count > 1)} (age1pq1…)"
    )


def _keys() -> Check:
    """The keys check, with the apps' settings."""
    env_file, settings = _settings()
    try:
        config = load_config(settings)
    except TipboxError as exc:
        return Check(False, f"{env_file}: {exc.message}")
    return keys_check(config.keys_dir)


def updates_checks() -> list[Check]:
    """Pending security updates, unattended-upgrades and a needed reboot, with this machine's
    apt and the TIPBOX_REBOOT_AT that deploy/harden.sh reads (from tipbox.env only, as it does)."""
    root = Path(os.environ.get("TIPBOX_ROOT", "").strip() or "/")
    lines = updates.status(updates.Places.under(root), read_env_file(_settings()[0]))
    return [Check(level != updates.FAIL, text, level == updates.WARN) for level, text in lines]


def cmd_status(args: argparse.Namespace) -> None:
    """Check tor, both onion services, both apps, the free space, the newsroom keys, the
    digest and the security updates; exit 1 if anything is wrong (a WARN line is not)."""
    layout = _layout()
    addresses = read_addresses(layout)
    try:
        state = inspect(layout)
        checks = tor_checks(layout, state)
        addresses |= {k: v.address for k, v in state.services.items() if v.address}
    except TipboxError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        checks = [Check(False, f"tor: {exc.message}{hint}")]
    for name in SERVICES:
        checks.append(app_check(name, layout.socket(name), addresses.get(name)))
    checks.append(_disk(layout))
    checks.append(_keys())
    checks.extend(Check(ok, text) for ok, text in digest_status(_settings()[1]))
    checks.extend(updates_checks())
    for check in checks:
        print(check)
    failed = sum(not check.ok for check in checks)
    if failed:
        sys.stdout.flush()  # the checks before the error, also when piped (make status | tee)
        raise TipboxError(f"{failed} of {len(checks)} checks failed")
    print(f"all {len(checks)} checks passed")
