"""``make run``: start the source portal and the journalist app on a developer's machine
(``python -m app.server.dev``).

Sets the development environment and starts two Gunicorns, each with its production config
(deploy/gunicorn.conf.py, deploy/gunicorn-journalist.conf.py), bound to 127.0.0.1:$PORT (default
8080) and 127.0.0.1:$JOURNALIST_PORT (default the next port), over one development setup:

- data in ``<repo>/data`` (``TIPBOX_DATA_DIR``), the folder ``make user`` also uses;
- the newsroom recipient from ``<repo>/keys/*.pub`` when there is one; otherwise a throwaway
  *development* newsroom key, created once under ``data/dev/`` (identity ``data/dev/identity.txt``,
  recipient ``data/dev/keys/newsroom.pub``), announced loudly: its secret half sits next to the
  server, so anything encrypted to it is as good as plaintext.

This process stays as their supervisor (.supervisor), rather than becoming one Gunicorn, so
that one Ctrl-C stops both apps and every worker.

When Debian's ``tor`` is installed, ``make run`` also publishes the portal as an onion service
through stem: it starts a private tor (its own data dir under ``data/dev/tor``, no SOCKS port),
asks it over the control port for a detached v3 onion service pointing at 127.0.0.1:$PORT, keeps
that service's key in ``data/dev/tor/onion.key`` so the address survives restarts, and prints
the address. tor is then told that this process owns it (``__OwningControllerProcess``), so tor
stops by itself soon after this supervisor does. Without tor, or if tor fails, it says so and
serves on 127.0.0.1 only. The journalist app gets no onion here.

Never used in deployment: the service starts Gunicorn itself, with TIPBOX_ENV=production.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import KeyIdentity, identity_file_text, parse_identities
from app.files import atomic_write
from app.server.supervisor import Stop, raise_stop, supervise

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"
JOURNALIST_CONF = REPO / "deploy" / "gunicorn-journalist.conf.py"
APP = "app.source:create_app()"
JOURNALIST_APP = "app.journalist:create_app()"
DEFAULT_PORT = 8080
BAR = "!" * 78
DEV_HEADER = "# DEVELOPMENT ONLY: this secret key sits next to a test server. Never use it.\n"


def _port(environ: Mapping[str, str], name: str = "PORT", default: int = DEFAULT_PORT) -> int:
    raw = environ.get(name, "").strip() or str(default)
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SystemExit(f"tipbox dev: {name} must be a TCP port number (1-65535), not {raw!r}")
    return int(raw)


def _journalist_port(environ: Mapping[str, str], port: int) -> int:
    journalist = _port(environ, "JOURNALIST_PORT", port + 1 if port < 65535 else port - 1)
    if journalist == port:
        raise SystemExit(f"tipbox dev: JOURNALIST_PORT must differ from PORT ({port})")
    return journalist


def _repo_recipients(keys_dir: Path) -> bool:
    return keys_dir.is_dir() and any(p.is_file() for p in keys_dir.glob("*.pub"))


def ensure_dev_key(dev_dir: Path) -> tuple[Path, Path, bool]:
    """The development identity and keys folder under ``dev_dir``; made if absent.

    Returns ``(identity path, keys dir, created now)``.
    """
    identity_path = dev_dir / "identity.txt"
    keys_dir = dev_dir / "keys"
    recipient_path = keys_dir / "newsroom.pub"
    dev_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys_dir.mkdir(mode=0o755, exist_ok=True)
    created = datetime.now(UTC).strftime("%Y-%m-%d")
    made = not identity_path.is_file()
    if made:
        identity: KeyIdentity = HybridIdentity.generate()
        text = DEV_HEADER + identity_file_text(identity, created)
        with atomic_write(identity_path, 0o600) as handle:
            handle.write(text.encode())
    else:  # keep an existing identity: it still decrypts earlier test submissions
        identity = parse_identities(identity_path.read_text("utf-8"))[0]
    if made or not recipient_path.is_file():
        note = f"# Tipbox DEVELOPMENT newsroom recipient, created {created}: not for real use\n"
        with atomic_write(recipient_path, 0o644, overwrite=True) as handle:
            handle.write(f"{note}{identity.recipient}\n".encode())
    return identity_path, keys_dir, made


def _warn(identity_path: Path, created: bool) -> None:
    made = "Created" if created else "Using"
    lines = [
        BAR,
        "!!  DEVELOPMENT NEWSROOM KEY: FOR TESTING ON THIS MACHINE ONLY",
        f"!!  {made} a throwaway newsroom identity: {identity_path}",
        "!!  Its SECRET key sits right next to the server, so everything submitted to",
        "!!  this instance is readable by anyone who can read this folder.",
        "!!  Never submit anything real to it, and never deploy with it: production",
        "!!  uses keys/newsroom.pub made on the air-gapped machine (`make keys`).",
        f"!!  Decrypt test submissions with:  tipbox decrypt -i {identity_path} ITEM",
        BAR,
    ]
    print("\n".join(lines), file=sys.stderr)


TOR_WAIT = 30.0


def _torrc(tor_dir: Path, offline: bool) -> str:
    lines = [
        *(["DisableNetwork 1"] if offline else []),
        f"DataDirectory {tor_dir / 'data'}",
        "ControlPort auto",
        f"ControlPortWriteToFile {tor_dir / 'control-port'}",
        "CookieAuthentication 1",
        "SocksPort 0",
        "GeoIPFile /dev/null",
        "GeoIPv6File /dev/null",
        f"Log notice file {tor_dir / 'tor.log'}",
        f"PidFile {tor_dir / 'tor.pid'}",
    ]
    return "".join(f"{line}\n" for line in lines)


def _control_port(tor_dir: Path, process: subprocess.Popen[bytes]) -> int:
    path = tor_dir / "control-port"
    deadline = time.monotonic() + TOR_WAIT
    while time.monotonic() < deadline and process.poll() is None:
        if path.is_file() and (text := path.read_text().strip()):
            return int(text.rsplit(":", 1)[1])
        time.sleep(0.1)
    raise RuntimeError(f"tor did not open its control port (see {tor_dir / 'tor.log'})")


def find_tor() -> str | None:
    """Debian's tor, on PATH or where Debian puts it."""
    return shutil.which("tor") or shutil.which("tor", path="/usr/sbin:/usr/bin")


def publish_onion(tor_dir: Path, port: int, offline: bool = False) -> str | None:
    """Start a private tor and publish 127.0.0.1:``port`` as an onion service; its address.

    ``None`` (after saying why) when tor is missing or fails: the portal still runs locally.
    ``offline`` keeps tor off the network (tests: the address exists, nothing is published).
    """
    tor = find_tor()
    if tor is None:
        print("tipbox dev: tor is not installed: serving on 127.0.0.1 only", file=sys.stderr)
        return None
    from stem.control import Controller  # stem only when there is a tor to talk to

    tor_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (tor_dir / "control-port").unlink(missing_ok=True)
    torrc = tor_dir / "torrc"
    with atomic_write(torrc, 0o600, overwrite=True) as handle:
        handle.write(_torrc(tor_dir, offline).encode())
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [tor, "-f", str(torrc), "--defaults-torrc", str(torrc)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        control = _control_port(tor_dir, process)
        key_path = tor_dir / "onion.key"
        key = key_path.read_text().strip() if key_path.is_file() else None
        with Controller.from_port(address="127.0.0.1", port=control) as ctl:
            ctl.authenticate()
            reply = ctl.create_ephemeral_hidden_service(
                {80: f"127.0.0.1:{port}"},
                key_type="ED25519-V3" if key else "NEW",
                key_content=key or "ED25519-V3",
                await_publication=False,
                detached=True,
            )
            # Set only now: stem takes ownership over the control connection (and tor exits
            # when it closes) if it finds its own pid here while authenticating.
            ctl.set_conf("__OwningControllerProcess", str(os.getpid()))
        if not key:
            with atomic_write(key_path, 0o600) as handle:
                handle.write(f"{reply.private_key}\n".encode())
    except Exception as exc:  # noqa: BLE001 - any tor trouble: say so, serve locally
        process.terminate()
        print(f"tipbox dev: tor failed ({exc}); serving on 127.0.0.1 only", file=sys.stderr)
        return None
    address = f"{reply.service_id}.onion"
    print(
        f"tipbox dev: onion service http://{address}/ (reachable once tor has bootstrapped;"
        f" log: {tor_dir / 'tor.log'})",
        file=sys.stderr,
    )
    return address


def prepare(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The environment and the two command lines (source portal, journalist app) to run,
    creating the development key if needed."""
    port = _port(environ)
    journalist_port = _journalist_port(environ, port)
    data_dir = Path(environ.get("TIPBOX_DATA_DIR") or REPO / "data")
    data_dir.mkdir(mode=0o700, exist_ok=True)
    repo_keys = REPO / "keys"
    env = dict(environ)
    if _repo_recipients(repo_keys):
        keys_dir = repo_keys
        print(f"tipbox dev: newsroom recipients from {repo_keys}", file=sys.stderr)
    else:
        identity_path, keys_dir, created = ensure_dev_key(data_dir / "dev")
        _warn(identity_path, created)
    for name in [k for k in env if k.startswith("GUNICORN")]:
        del env[name]  # GUNICORN_CMD_ARGS could rebind us to a public address
    env.update(
        {
            "TIPBOX_ENV": "development",
            "TIPBOX_DATA_DIR": str(data_dir),
            "TIPBOX_KEYS_DIR": str(keys_dir),
            "TIPBOX_BIND": f"127.0.0.1:{port}",
            "TIPBOX_JOURNALIST_BIND": f"127.0.0.1:{journalist_port}",
        }
    )
    print(f"tipbox dev: serving the source portal at http://127.0.0.1:{port}", file=sys.stderr)
    print(
        f"tipbox dev: serving the journalist app at http://127.0.0.1:{journalist_port}"
        " (add an account with `make user NAME=you`)",
        file=sys.stderr,
    )
    gunicorn = [sys.executable, "-m", "gunicorn", "-c"]
    commands = {
        "source portal": [*gunicorn, str(GUNICORN_CONF), APP],
        "journalist app": [*gunicorn, str(JOURNALIST_CONF), JOURNALIST_APP],
    }
    return env, commands


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_stop)
    try:
        env, commands = prepare(os.environ)
        if os.environ.get("TIPBOX_DEV_ONION", "1") != "0":
            tor_dir = Path(env["TIPBOX_DATA_DIR"]) / "dev" / "tor"
            offline = os.environ.get("TIPBOX_DEV_TOR_OFFLINE") == "1"
            publish_onion(tor_dir, _port(os.environ), offline=offline)
    except Stop:
        raise SystemExit(0) from None
    raise SystemExit(supervise(commands, env))


if __name__ == "__main__":
    main()
