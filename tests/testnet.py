"""Real tor for tests: an offline tor (fast tier) and a private Tor network on loopback
(end-to-end tier), built as /work/shared/TOR-TESTNET.md describes.

- :func:`start_tor` launches one tor through stem from a Debian-like root (a defaults file
  with the test's settings, a torrc with ``%include <root>/etc/tor/torrc.d/*.conf``), so
  ``tor --verify-config`` and reloads see the same files as on a server. Each tor is owned by
  a ``cat`` child of the test process (``__OwningControllerProcess``): if the test process
  dies, ``cat`` sees end of file, exits, and tor follows. (Owning tor by the test's own pid
  would make stem send TAKEOWNERSHIP, and closing any controller would then stop tor.)
- ``testnet`` (session fixture): five directory authorities on 127.0.0.1, brought up once
  per pytest run. Under pytest-xdist the workers share one network: the first one to take
  the file lock starts a *keeper* process (``python -m tests.testnet serve DIR``) that owns
  the authorities, and every worker registers its pid; the keeper stops the network as soon as
  no registered pid is alive, and the worker that started it waits for that at teardown.
  Each test module starts its own onion-service and client tors in the network
  (:meth:`Network.start`), cheap next to the authorities.
- :func:`fetch` and friends: HTTP through a tor SocksPort (SOCKS5 with tor's extended error
  codes, so a test can tell "descriptor not found" from "client authorization missing").

Only 127.0.0.1 is used. Every process started here is stopped by its own handle.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TOR = shutil.which("tor")
TOR_GENCERT = shutil.which("tor-gencert")
HOST = "127.0.0.1"
AUTHORITIES = 5
START_TIMEOUT = 60.0
NETWORK_TIMEOUT = 120.0
KEEPER_LIFETIME = 3 * 3600.0
needs_tor = pytest.mark.skipif(TOR is None, reason="tor is not installed (apt-get install tor)")
needs_testnet = pytest.mark.skipif(
    TOR is None or TOR_GENCERT is None,
    reason="tor and tor-gencert are needed (apt-get install tor)",
)

COMMON = [
    "GeoIPFile /dev/null",
    "GeoIPv6File /dev/null",
    "ShutdownWaitLength 0",
    "SafeLogging 0",
    "LogTimeGranularity 1",
    "Log notice stdout",
]
NETWORK = [
    "TestingTorNetwork 1",
    "AssumeReachable 1",
    "PathsNeededToBuildCircuits 0.67",
    "TestingDirAuthVoteExit *",
    "TestingDirAuthVoteHSDir *",
    "TestingDirAuthVoteGuard *",
    "TestingMinExitFlagThreshold 0",
    "V3AuthNIntervalsValid 2",
]
AUTHORITY = [
    "Address 127.0.0.1",
    "SocksPort 0",
    "AuthoritativeDirectory 1",
    "V3AuthoritativeDirectory 1",
    "ExitRelay 0",
    "ExitPolicy reject *:*",
    "ContactInfo tipbox-tests",
    "TestingV3AuthInitialVotingInterval 5",
    "TestingV3AuthInitialVoteDelay 2",
    "TestingV3AuthInitialDistDelay 2",
    "V3AuthVotingInterval 10",
    "V3AuthVoteDelay 2",
    "V3AuthDistDelay 2",
]


def quiet_controller(connect: Callable[[], Any]) -> Any:
    """A stem controller, without stem's setDaemon() DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "setDaemon", DeprecationWarning)
        controller = connect()
        controller.authenticate()
    controller.msg("SETEVENTS")  # see app/onion/: stem 1.8 can deadlock on SIGNAL events
    return controller


@dataclass
class Tor:
    """One tor process, its files, and the ``cat`` that owns it."""

    name: str
    root: Path
    data_dir: Path
    process: subprocess.Popen[bytes]
    owner: subprocess.Popen[bytes]
    stopped: bool = False

    @property
    def torrc(self) -> Path:
        return self.root / "etc/tor/torrc"

    @property
    def defaults(self) -> Path:
        return self.root / "usr/share/tor/tor-service-defaults-torrc"

    @property
    def control_port(self) -> int:
        for line in (self.root / "run/tor/control-port").read_text().splitlines():
            if line.startswith("PORT="):
                return int(line.rpartition(":")[2])
        raise RuntimeError(f"tor {self.name} has no TCP control port")

    @property
    def control_socket(self) -> Path:
        return self.root / "run/tor/control"

    def controller(self) -> Any:
        from stem.control import Controller

        return quiet_controller(lambda: Controller.from_port(HOST, self.control_port))

    def socks_port(self) -> int:
        ctl = self.controller()
        try:
            listeners = ctl.get_info("net/listeners/socks")
        finally:
            ctl.close()
        return int(listeners.split()[0].strip('"').rpartition(":")[2])

    def signal(self, name: str) -> None:
        ctl = self.controller()
        try:
            ctl.signal(name)
        finally:
            ctl.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "tor.log").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL; then stop the owner and close every pipe."""
        if self.stopped:
            return
        self.stopped = True
        stop(self.process)
        stop(self.owner)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a child (kill it if it lingers), reap it and close its pipes."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def make_root(root: Path, settings: Sequence[str], torrc: str | None = None) -> None:
    """A Debian-like tor layout under ``root``: the settings go to the defaults file (as in
    Debian's tor-service-defaults-torrc), ``torrc`` (default: just the include) to etc/tor."""
    for folder, mode in (
        ("etc/tor/torrc.d", 0o755),
        ("usr/share/tor", 0o755),
        ("var/lib/tor", 0o700),
        ("var/lib/tipbox", 0o700),
        ("run/tor", 0o700),
        ("run/tipbox", 0o755),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder).chmod(mode)
    if torrc is None:
        torrc = f"%include {root}/etc/tor/torrc.d/*.conf\n"
    (root / "etc/tor/torrc").write_text(torrc)
    base = [
        f"DataDirectory {root}/var/lib/tor",
        "ControlPort 127.0.0.1:auto",
        f"ControlPortWriteToFile {root}/run/tor/control-port",
        f"ControlSocket {root}/run/tor/control",
        f"Log notice file {root}/tor.log",
        *COMMON,
    ]
    if not any(line.startswith("CookieAuthentication") for line in settings):
        base.append("CookieAuthentication 1")
    (root / "usr/share/tor/tor-service-defaults-torrc").write_text(
        "\n".join(base + list(settings)) + "\n"
    )


def start_tor(
    root: Path,
    settings: Sequence[str] = ("DisableNetwork 1", "SocksPort 0"),
    *,
    name: str = "tor",
    torrc: str | None = None,
    completion: int = 0,
    fresh: bool = True,
) -> Tor:
    """Start tor on the Debian-like root (made unless ``fresh`` is false: a restart)."""
    import stem.process

    assert TOR is not None
    if fresh:
        make_root(root, settings, torrc)
    (root / "run/tor/control-port").unlink(missing_ok=True)
    owner = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        process = stem.process.launch_tor(
            TOR,
            args=[
                "--defaults-torrc",
                str(root / "usr/share/tor/tor-service-defaults-torrc"),
                "__OwningControllerProcess",
                str(owner.pid),
            ],
            torrc_path=str(root / "etc/tor/torrc"),
            completion_percent=completion,
            timeout=START_TIMEOUT,
        )
    except BaseException as exc:
        stop(owner)
        log = (root / "tor.log").read_text(errors="replace") if (root / "tor.log").exists() else ""
        raise RuntimeError(f"tor {name} did not start: {exc}\n{log[-3000:]}") from None
    tor = Tor(name, root, root / "var/lib/tor", process, owner)
    deadline = time.monotonic() + START_TIMEOUT
    while not (root / "run/tor/control-port").exists():
        if time.monotonic() > deadline or not tor.alive():
            tor.stop()
            raise RuntimeError(f"tor {name} wrote no control port:\n{tor.log()[-3000:]}")
        time.sleep(0.02)
    return tor


# --- HTTP through a SocksPort -------------------------------------------------------------

SOCKS_REASONS = {
    0xF0: "onion service descriptor not found",
    0xF1: "onion service descriptor invalid",
    0xF2: "introduction failed",
    0xF3: "rendezvous failed",
    0xF4: "client authorization missing",
    0xF5: "client authorization wrong",
    0xF6: "invalid onion address",
    0xF7: "introduction timed out",
}
RETRY_CODES = {0x01, 0x04, 0x06, 0xF0, 0xF2, 0xF3, 0xF7}


class SocksError(OSError):
    """The SOCKS server refused the connection; ``code`` is its reply code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"SOCKS error 0x{code:02X}: {SOCKS_REASONS.get(code, 'failure')}")
        self.code = code


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the SOCKS server closed the connection")
        data += chunk
    return data


def socks_connect(
    socks_port: int, host: str, port: int = 80, timeout: float = 60.0
) -> socket.socket:
    """A TCP stream to ``host:port`` through tor (the name is resolved by tor)."""
    sock = socket.create_connection((HOST, socks_port), timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        if _recv(sock, 2) != b"\x05\x00":
            raise ConnectionError("the SOCKS server wants authentication")
        name = host.encode()
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
        _, code, _, kind = _recv(sock, 4)
        if code != 0:
            raise SocksError(code)
        _recv(sock, {1: 4, 4: 16}.get(kind) or _recv(sock, 1)[0])
        _recv(sock, 2)
    except BaseException:
        sock.close()
        raise
    return sock


class SocksHTTPConnection(http.client.HTTPConnection):
    """HTTP to an onion address through tor's SocksPort."""

    def __init__(self, socks_port: int, host: str, timeout: float = 60.0) -> None:
        super().__init__(host, 80, timeout=timeout)
        self.socks_port = socks_port

    def connect(self) -> None:
        self.sock = socks_connect(self.socks_port, self.host, self.port, self.timeout or 60.0)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class OnionClient:
    """A tiny browser over a SocksPort: one host, its cookies."""

    socks_port: int
    host: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        conn = SocksHTTPConnection(self.socks_port, self.host)
        try:
            sent = dict(headers or {})
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            conn.request(method, path, body=body, headers=sent)
            reply = conn.getresponse()
            data = reply.read()
        finally:
            conn.close()
        for value in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return Response(reply.status, reply.headers, data)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def wait(self, path: str = "/", timeout: float = 90.0) -> Response:
        """GET ``path``, retrying while the service is not reachable yet (not yet published)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(path)
            except SocksError as exc:
                if exc.code not in RETRY_CODES or time.monotonic() > deadline:
                    raise
            except (TimeoutError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(1.0)


# --- The private network ------------------------------------------------------------------


def free_port() -> int:
    """A loopback port free a moment ago (SO_REUSEADDR: TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _make_authority_keys(folder: Path, dirport: int) -> subprocess.Popen[bytes]:
    keys = folder / "keys"
    keys.mkdir(parents=True, mode=0o700)
    assert TOR_GENCERT is not None
    process = subprocess.Popen(
        [TOR_GENCERT, "--create-identity-key", "--passphrase-fd", "0", "-m", "12",
         "-i", "keys/authority_identity_key", "-s", "keys/authority_signing_key",
         "-c", "keys/authority_certificate", "-a", f"{HOST}:{dirport}"],
        cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write(b"tipbox-test-passphrase\n")
    process.stdin.close()
    return process


def _relay_fingerprint(folder: Path) -> str:
    assert TOR is not None
    result = subprocess.run(
        [TOR, "--ignore-missing-torrc", "-f", "/dev/null", "--orport", "1",
         "--datadirectory", str(folder), "--list-fingerprint",
         "--GeoIPFile", "/dev/null", "--GeoIPv6File", "/dev/null"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return "".join(result.stdout.strip().splitlines()[-1].split()[1:])


def _v3ident(folder: Path) -> str:
    for line in (folder / "keys/authority_certificate").read_text().splitlines():
        if line.startswith("fingerprint "):
            return line.split()[1]
    raise RuntimeError(f"no fingerprint in {folder}/keys/authority_certificate")


def _consensus_routers(tor: Tor) -> int:
    try:
        ctl = tor.controller()
    except Exception:  # noqa: BLE001 - still starting
        return 0
    try:
        text = ctl.get_info("dir/status-vote/current/consensus", "")
    finally:
        ctl.close()
    return text.count("\nr ")


def build_authorities(root: Path) -> tuple[list[Tor], list[str]]:
    """Start five authorities and wait until every one serves a consensus listing all five."""
    ports = [(free_port(), free_port()) for _ in range(AUTHORITIES)]
    folders = [root / f"auth{i}" / "var/lib/tor" for i in range(AUTHORITIES)]
    gencerts = [_make_authority_keys(f, ports[i][1]) for i, f in enumerate(folders)]
    try:
        for process in gencerts:
            if process.wait(120) != 0:
                raise RuntimeError("tor-gencert failed")
    finally:
        for process in gencerts:
            stop(process)
    lines = [
        f"DirAuthority auth{i} orport={ports[i][0]} no-v2 v3ident={_v3ident(f)} "
        f"{HOST}:{ports[i][1]} {_relay_fingerprint(f)}"
        for i, f in enumerate(folders)
    ]
    tors: list[Tor] = []
    try:
        for i in range(AUTHORITIES):
            settings = [
                *NETWORK, *lines, *AUTHORITY, f"Nickname auth{i}",
                f"ORPort {HOST}:{ports[i][0]}", f"DirPort {HOST}:{ports[i][1]}",
            ]  # fmt: skip
            tors.append(start_tor(root / f"auth{i}", settings, name=f"auth{i}"))
        deadline = time.monotonic() + NETWORK_TIMEOUT
        while not all(_consensus_routers(t) >= AUTHORITIES for t in tors):
            dead = [t.name for t in tors if not t.alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"no full consensus (exited: {dead}):\n{tors[0].log()[-3000:]}")
            time.sleep(0.5)
    except BaseException:
        for tor in tors:
            tor.stop()
        raise
    return tors, lines


@dataclass
class Network:
    """The authorities' lines; :meth:`start` adds an onion-service or client tor to it."""

    dirauth: list[str]

    def start(self, root: Path, settings: Sequence[str], name: str) -> Tor:
        """A tor in this network (bootstrapped), on a Debian-like root."""
        lines = [*NETWORK, *self.dirauth, "VanguardsLiteEnabled 0", *settings]
        return start_tor(root, lines, name=name, completion=100)


def serve(state_dir: Path) -> None:
    """The keeper: build the network, publish its state, stop it when no user is left."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state = state_dir / "state.json"
    users = state_dir / "users"
    tors: list[Tor] = []
    failed = False
    try:
        net_root = state_dir / f"net-{os.getpid()}"
        tors, lines = build_authorities(net_root)
        _write_json(state, {"pid": os.getpid(), "ready": True, "dirauth": lines})
        started = time.monotonic()
        seen = False
        while time.monotonic() - started < KEEPER_LIFETIME:
            alive = [p for p in users.glob("*") if _alive(int(p.name))]
            seen = seen or bool(alive)
            if (seen and not alive) or (not seen and time.monotonic() - started > 300):
                break
            if not all(t.alive() for t in tors):
                raise RuntimeError("an authority exited")
            time.sleep(0.5)
    except Exception as exc:  # noqa: BLE001 - reported to the waiting workers
        failed = True
        _write_json(state, {"pid": os.getpid(), "error": f"{type(exc).__name__}: {exc}"})
    finally:
        for tor in tors:
            tor.stop()
        if not failed:
            state.unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(state_dir: Path) -> dict[str, Any]:
    """The keeper's state ({} if none), with "alive": whether its process runs."""
    try:
        data: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return {**data, "alive": _alive(int(data.get("pid", 0)))}


@pytest.fixture(scope="session")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """Five directory authorities on loopback, shared by every xdist worker of this run."""
    if TOR is None or TOR_GENCERT is None:
        pytest.skip("tor and tor-gencert are needed (apt-get install tor)")
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "testnet"
    shared.mkdir(exist_ok=True)
    (shared / "users").mkdir(exist_ok=True)
    me = shared / "users" / str(os.getpid())
    keeper: subprocess.Popen[bytes] | None = None
    with _locked(shared / "lock"):
        if not _read_state(shared).get("alive"):
            with (shared / "keeper.log").open("ab") as log:
                keeper = subprocess.Popen(
                    [sys.executable, "-m", "tests.testnet", "serve", str(shared)],
                    cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )  # fmt: skip
            # Claimed before the lock is released: other workers wait for this keeper.
            _write_json(shared / "state.json", {"pid": keeper.pid, "ready": False})
        me.touch()
    try:
        deadline = time.monotonic() + NETWORK_TIMEOUT + 60
        while not (state := _read_state(shared)).get("ready"):
            if "error" in state:
                pytest.fail(f"the test network failed: {state['error']}\n{_keeper_log(shared)}")
            if time.monotonic() > deadline or not state.get("alive"):
                pytest.fail(f"the test network did not come up:\n{_keeper_log(shared)}")
            time.sleep(0.2)
        yield Network(state["dirauth"])
    finally:
        me.unlink(missing_ok=True)
        if keeper is not None:
            # The keeper stops once no user is left; other workers may still need it.
            try:
                keeper.wait(KEEPER_LIFETIME)
            finally:
                stop(keeper)


def _keeper_log(shared: Path) -> str:
    with contextlib.suppress(OSError):
        return (shared / "keeper.log").read_text(errors="replace")[-4000:]
    return ""


# --- The tipbox command, in process --------------------------------------------------------


def tipbox_main(argv: Sequence[str]) -> int:
    """``tipbox ARGS``, in this process."""
    from app import cli

    return cli.main(list(argv))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["tipbox"]:
        sys.exit(tipbox_main(sys.argv[2:]))
    else:
        sys.exit("usage: python -m tests.testnet serve DIR | tipbox ARGS")
