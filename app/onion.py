"""Tipbox's two v3 onion services, driven through tor's control port with stem.

**Design: tor's own configuration, not ADD_ONION.** Both services are ``HiddenServiceDir``
blocks in ``/etc/tor/torrc.d/tipbox.conf`` (Debian's torrc gets an ``%include`` line from
``make deploy``); stem is used to check, reload (SIGHUP) and read tor's state. We chose this
over ADD_ONION with keys stored by Tipbox because:

- *Persistence without a helper.* tor re-publishes torrc services by itself after a restart,
  an upgrade or a reboot. ADD_ONION services die with tor and need a re-publisher ordered after
  it; until it runs, the source service is silently down.
- *One journalist at a time.* tor reads ``authorized_clients/NAME.auth`` files, one per
  journalist, on every reload. ADD_ONION cannot change a running service's clients: removing
  one journalist would mean DEL_ONION and ADD_ONION again with everyone else's keys.
- *Fewer places hold the keys.* The onion keys stay where tor makes them: in the
  ``HiddenServiceDir`` under tor's data directory, 0600 and owned by tor's user (debian-tor),
  which is the only service that needs them. The web apps run as another user with no network
  and never see them, so a compromised app cannot take over the addresses. ADD_ONION would put
  them in a second place and hand them to tor over the control port on every start.
- *Proof of work.* ``HiddenServicePoWDefensesEnabled`` is a torrc option per service.

The costs: the keys live under /var/lib/tor (``make backup`` includes them) and every change is
a reload of the whole tor. A reload is dangerous: tor 0.4.9 **exits** when a SIGHUP brings a
configuration it rejects or a damaged key (tested), which would take the source service down.
So every reload here is prepared and checked first: the service folders get tor's owner and
private modes back, every key and client file must parse, and ``tor --verify-config`` must
accept the files the running tor was started with; afterwards tor's own view of its services
(GETCONF) must match what we asked for. Failures raise :class:`TorError`
subclasses whose text the ``tipbox`` command prints as ``tipbox: error: …``.

The journalist service never runs without client authorization: tor serves a v3 service to
anyone when ``authorized_clients/`` is empty, so while no journalist has a key that folder
holds a placeholder key (``_locked.auth``) whose private half nobody has. Removing a journalist
rebuilds the journalist service (configured out and back in, same address): on a plain
reload tor only re-encrypts the descriptor cookie for the remaining keys and keeps the cookie
and the introduction points (hs_service.c, move_descriptors), so a removed journalist who kept
the cookie could still read the introduction points and connect. The other journalists keep
their keys and reconnect after a short pause.

Key formats (tor's rend-spec-v3 and tor(1), CLIENT AUTHORIZATION):
``authorized_clients/NAME.auth`` holds ``descriptor:x25519:<base32 public key>``; the
journalist's ``NAME.auth_private`` holds ``<address without .onion>:descriptor:x25519:<base32
private key>``; keys are raw x25519 keys in upper-case base32 without padding.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ConfigError, TipboxError, UsageError
from app.files import atomic_write

SOURCE, JOURNALIST = "source", "journalist"
SERVICES = (SOURCE, JOURNALIST)
SNIPPET_NAME = "tipbox.conf"
ADDRESSES_NAME = "onion-addresses"
LOCKED = "_locked"  # journalist names never start with "_"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
KEY_CHARS = 52  # 32 bytes in base32, padding removed
VERIFY_TIMEOUT = 120.0
APPEAR_TIMEOUT = 10.0
_PUBLIC_HEADER = b"== ed25519v1-public: type0 ==\x00\x00\x00"
_SECRET_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"
_QUIET = ("running Tor as root", "TestingTorNetwork", "DirAuthority", "very low", "GeoIP")


class TorError(TipboxError):
    """tor did not do what was asked"""


class TorMissingError(TorError):
    """tor is not installed"""

    hint = "install it with 'apt-get install tor' (make deploy does)"


class TorUnreachableError(TorError):
    """tor's control port does not answer: is tor running?"""

    hint = "start it with 'systemctl start tor', or set TIPBOX_TOR_CONTROL to its control port"


class TorAuthError(TorError):
    """tor refused to let us use its control port"""

    hint = "run this as root, or set TIPBOX_TOR_PASSWORD if tor's control port uses a password"


class TorConfigError(TorError):
    """tor would reject the new configuration, so nothing was changed"""


class OnionKeyError(TorError):
    """a key is damaged or is not a valid key"""


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


# --- Keys ---------------------------------------------------------------------------------


def onion_address(public_key: bytes) -> str:
    """The v3 address (``….onion``) of an ed25519 public key (rend-spec-v3, section 6)."""
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + b"\x03").digest()[:2]
    return base64.b32encode(public_key + checksum + b"\x03").decode().lower() + ".onion"


def service_address(hs_dir: Path) -> str | None:
    """The address of the keys in ``hs_dir``, checked; ``None`` while tor has made none.

    :raises OnionKeyError: a key file is damaged or the two halves do not match.
    """
    from nacl.bindings import crypto_scalarmult_ed25519_base

    secret_path = hs_dir / "hs_ed25519_secret_key"
    public_path = hs_dir / "hs_ed25519_public_key"
    hint = "restore this folder from a backup (make restore); without it the address is lost"
    if not secret_path.exists():
        if public_path.exists():
            raise OnionKeyError(f"{secret_path} is missing but its public key is there", hint=hint)
        return None
    secret = secret_path.read_bytes()
    if len(secret) != 96 or not secret.startswith(_SECRET_HEADER):
        raise OnionKeyError(f"{secret_path} is damaged: it is not a v3 onion key", hint=hint)
    # The file holds tor's expanded key: a clamped scalar, then the nonce half.
    public = crypto_scalarmult_ed25519_base(secret[32:64])
    if public_path.exists() and public_path.read_bytes() != _PUBLIC_HEADER + public:
        raise OnionKeyError(f"{public_path} does not match the secret key beside it", hint=hint)
    return onion_address(public)


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class ClientKey:
    """A journalist's client-authorization key: the public half, and the private one if known."""

    name: str
    public: str
    private: str | None = field(default=None, repr=False)

    @classmethod
    def generate(cls, name: str) -> ClientKey:
        """A fresh x25519 pair."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        key = X25519PrivateKey.generate()
        private = key.private_bytes_raw()
        return cls(name, _b32(key.public_key().public_bytes_raw()), _b32(private))

    def auth_line(self) -> str:
        """The line tor reads from ``authorized_clients/NAME.auth``."""
        return f"descriptor:x25519:{self.public}"

    def auth_private_line(self, address: str) -> str:
        """The journalist's ``.auth_private`` line (tor's ClientOnionAuthDir format)."""
        if self.private is None:
            raise UsageError(f"the private key of {self.name!r} is not known here")
        return f"{address.removesuffix('.onion')}:descriptor:x25519:{self.private}"


def parse_public_key(text: str) -> str:
    """A base32 x25519 public key, bare or as ``descriptor:x25519:KEY``, normalised.

    :raises OnionKeyError: it is not 32 bytes of base32.
    """
    key = text.strip()
    key = key.removeprefix("descriptor:x25519:").strip().upper()
    try:
        raw = base64.b32decode(key + "====", casefold=False) if len(key) == KEY_CHARS else b""
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise OnionKeyError(
            "not a valid x25519 public key: expected 52 base32 characters (A-Z, 2-7)"
        )
    return key


def check_name(name: str) -> str:
    """A journalist's name as used for their key file.

    :raises UsageError: not 1 to 32 lower-case letters, digits, '-' or '_', starting with a
        letter or digit.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a valid name: use 1 to 32 lower-case letters, digits, '-' or '_'"
        )
    return name


def _read_client(path: Path) -> ClientKey:
    try:
        return ClientKey(path.stem, parse_public_key(path.read_text("ascii")))
    except (OnionKeyError, UnicodeDecodeError):
        raise OnionKeyError(
            f"{path} does not hold a valid client key",
            hint=f"remove it with 'tipbox access remove {path.stem}' and add it again",
        ) from None


def list_clients(layout: Layout) -> list[ClientKey]:
    """The journalists who hold a key to the journalist service, by name."""
    if not layout.clients_dir.is_dir():
        return []
    paths = sorted(layout.clients_dir.glob("*.auth"))
    return [_read_client(p) for p in paths if not p.stem.startswith("_")]


# --- Talking to tor -----------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    return re.sub(r"^\[Errno \d+\] ", "", str(exc)).rstrip(".").lower() or type(exc).__name__


def _connect(layout: Layout) -> Any:
    import stem
    from stem.control import Controller

    control = layout.control
    unix = control.startswith("unix:")
    host, _, port = control.rpartition(":")
    if not unix and not (port.isdigit() and re.fullmatch(r"[0-9.]*", host)):
        raise ConfigError(f"TIPBOX_TOR_CONTROL must be unix:PATH or ADDRESS:PORT, not {control!r}")
    address: Any = control.removeprefix("unix:") if unix else (host or "127.0.0.1", int(port))
    try:
        # Try the door ourselves first: stem 1.8 leaks its socket when the connection fails.
        with socket.socket(socket.AF_UNIX if unix else socket.AF_INET) as probe:
            probe.settimeout(10)
            probe.connect(address)
        if unix:
            return Controller.from_socket_file(path=address)
        return Controller.from_port(address=address[0], port=address[1])
    except (OSError, stem.SocketError) as exc:
        reason = _reason(exc)
        if "permission denied" in reason:
            raise TorAuthError(f"not allowed to use tor's control socket {control}") from None
        if shutil.which(layout.tor) is None:
            raise TorMissingError(
                f"tor is not installed (no '{layout.tor}' program), and nothing answers at"
                f" {control}"
            ) from None
        raise TorUnreachableError(
            f"cannot reach tor's control port at {control}: {reason}"
        ) from None


def _auth_error(exc: Exception, control: str) -> TorAuthError:
    from stem import connection as sc

    cookie = getattr(exc, "cookie_path", None)
    if isinstance(exc, sc.MissingPassword):
        return TorAuthError(
            f"tor's control port at {control} wants a password", hint="set TIPBOX_TOR_PASSWORD"
        )
    if isinstance(exc, sc.PasswordAuthFailed):
        return TorAuthError("tor refused the control port password in TIPBOX_TOR_PASSWORD")
    if isinstance(exc, sc.UnreadableCookieFile):
        return TorAuthError(f"cannot read tor's authentication cookie {cookie}")
    if isinstance(exc, sc.CookieAuthFailed):
        return TorAuthError(
            f"tor refused its authentication cookie {cookie}: the file does not hold the"
            " running tor's cookie",
            hint="restart tor to write a fresh cookie, and check TIPBOX_TOR_CONTROL",
        )
    return TorAuthError(f"tor refused to authenticate us: {_reason(exc)}")


@contextlib.contextmanager
def controller(layout: Layout, wait: float = 0.0) -> Iterator[Any]:
    """An authenticated stem ``Controller`` for tor; ``wait`` seconds for tor to come up."""
    try:
        import stem
        import stem.connection
    except ImportError:
        raise TorError("the 'stem' Python library is missing", hint="pip install stem") from None
    deadline = time.monotonic() + wait
    with warnings.catch_warnings():
        # stem 1.8 starts its threads with Thread.setDaemon(), deprecated since Python 3.10.
        warnings.filterwarnings("ignore", "setDaemon", DeprecationWarning)
        while True:
            try:
                ctl = _connect(layout)
                break
            except TorUnreachableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
        try:
            ctl.authenticate(password=layout.password)
            # stem subscribes to SIGNAL events; the one our own RELOAD causes, handled while
            # close() holds stem's send lock, deadlocks stem 1.8. We need no events at all.
            ctl.msg("SETEVENTS")
        except stem.connection.AuthenticationFailure as exc:
            ctl.close()
            raise _auth_error(exc, layout.control) from None
        except BaseException:
            ctl.close()
            raise
    try:
        yield ctl
    except stem.SocketClosed:
        raise TorError(
            "tor closed the control connection: it may have exited",
            hint="see its log: journalctl -u tor@default",
        ) from None
    except stem.ControllerError as exc:
        raise TorError(f"tor refused the request: {_reason(exc)}") from None
    finally:
        ctl.close()


def _configured(ctl: Any) -> dict[Path, dict[str, list[str]]]:
    """Tor's own view of its onion services: HiddenServiceDir -> its other options."""
    services: dict[Path, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in ctl.msg("GETCONF HiddenServiceOptions"):
        key, sep, value = str(line).partition("=")
        value = value.strip().strip('"')
        if not sep:
            continue
        if key == "HiddenServiceDir":
            current = services.setdefault(Path(value), {})
        elif current is not None:
            current.setdefault(key, []).append(value)
    return services


def _present(ctl: Any, layout: Layout) -> set[str]:
    configured = _configured(ctl)
    return {name for name in SERVICES if layout.hs_dir(name) in configured}


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


def _owner(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    with atomic_write(path, mode, overwrite=True) as handle:
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            os.fchown(handle.fileno(), *owner)
        handle.write(data)


def _restore(path: Path, data: bytes | None, mode: int, owner: tuple[int, int] | None) -> None:
    if data is None:
        path.unlink(missing_ok=True)
    else:
        _write(path, data, mode, owner)


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


def _tor_owner(layout: Layout) -> tuple[int, int]:
    if not layout.tor_dir.is_dir():
        raise TorMissingError(f"tor's data directory {layout.tor_dir} does not exist")
    return _owner(layout.tor_dir)


def _prepare_dir(path: Path, owner: tuple[int, int]) -> None:
    """A folder tree tor accepts as its own (tor exits on a reload if it does not): owned by
    tor's user, folders 0700, files 0600. Fixes what a restore or a hand copy got wrong."""
    path.mkdir(mode=0o700, exist_ok=True)
    for item in [path, *path.rglob("*")]:
        if item.is_symlink():
            raise TorConfigError(f"{item} is a symbolic link; tor wants plain files here")
        info = item.lstat()
        if (info.st_uid, info.st_gid) != owner:
            os.chown(item, *owner)
        mode = 0o700 if item.is_dir() else 0o600
        if info.st_mode & 0o777 != mode:
            item.chmod(mode)


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


# --- What the commands do -----------------------------------------------------------------


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
    """Take a journalist's key away; the others keep theirs (see the module docstring)."""
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


# --- Health -------------------------------------------------------------------------------


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
