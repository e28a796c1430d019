"""app/onion/ and the admin commands against one real tor with ``DisableNetwork 1``.

Each test gets its own tor (started in about 50 ms) on a Debian-like root under tmp_path:
publishing, addresses that survive a restart, the client-authorization files, adding and
removing journalists one at a time, and every way tor can fail, as ``TorError`` text and as
``tipbox: error:`` with exit status 1.
"""

from __future__ import annotations

import base64
import http.server
import os
import re
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from app import onion
from app.crypto import X25519Identity
from app.errors import UsageError
from app.onion import (
    Layout,
    OnionKeyError,
    TorAuthError,
    TorConfigError,
    TorMissingError,
    TorUnreachableError,
)
from tests.helpers import apt_without_updates
from tests.testnet import TOR, Tor, free_port, needs_tor, start_tor, tipbox_main

pytestmark = [pytest.mark.tor, needs_tor]

ADDRESS = re.compile(r"[a-z2-7]{56}\.onion")
KEY = r"[A-Z2-7]{52}"


@pytest.fixture
def tor(tmp_path: Path) -> Iterator[Tor]:
    """A fresh offline tor; its root is ``tmp_path / 'root'``."""
    process = start_tor(tmp_path / "root")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def layout(tor: Tor) -> Layout:
    """The deployment layout under the tor's root (control over its unix socket)."""
    return Layout.under(tor.root)


@pytest.fixture
def addresses(layout: Layout) -> dict[str, str]:
    """Both services published."""
    return onion.publish(layout)[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# --- Publishing ---------------------------------------------------------------------------


def test_publish_configures_both_services(layout: Layout, tor: Tor) -> None:
    addresses, previous = onion.publish(layout)
    assert previous == {}
    assert set(addresses) == {"source", "journalist"}
    assert addresses["source"] != addresses["journalist"]
    for name, address in addresses.items():
        hs_dir = layout.hs_dir(name)
        assert ADDRESS.fullmatch(address)
        assert (hs_dir / "hostname").read_text().strip() == address
        public = (hs_dir / "hs_ed25519_public_key").read_bytes()[32:]
        assert onion.onion_address(public) == address
        assert _mode(hs_dir) == 0o700
        for key in ("hs_ed25519_secret_key", "hs_ed25519_public_key", "hostname"):
            assert _mode(hs_dir / key) == 0o600, key
    assert onion.read_addresses(layout) == addresses
    assert _mode(layout.addresses_file) == 0o640
    assert layout.snippet.read_text() == onion.render_torrc(layout)

    ctl = tor.controller()
    try:
        configured = onion._configured(ctl)
    finally:
        ctl.close()
    source = configured[layout.hs_dir("source")]
    journalist = configured[layout.hs_dir("journalist")]
    assert source["HiddenServicePort"] == [f"80 unix:{layout.source_socket}"]
    assert source["HiddenServicePoWDefensesEnabled"] == ["1"]
    assert journalist["HiddenServicePort"] == [f"80 unix:{layout.journalist_socket}"]
    assert "HiddenServicePoWDefensesEnabled" not in journalist


def test_journalist_service_is_never_open(layout: Layout, addresses: dict[str, str]) -> None:
    # Nobody has a key yet, yet tor must not serve the journalist service to anyone.
    locked = layout.clients_dir / "_locked.auth"
    assert re.fullmatch(rf"descriptor:x25519:{KEY}\n", locked.read_text())
    assert onion.list_clients(layout) == []
    assert list((layout.hs_dir("source") / "authorized_clients").iterdir()) == []


def test_addresses_survive_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = start_tor(root)
    try:
        addresses, _ = onion.publish(Layout.under(root))
        keys = _files(Layout.under(root).hs_dir("source"))
    finally:
        first.stop()
    second = start_tor(root, fresh=False)
    try:
        layout = Layout.under(root)
        state = onion.inspect(layout)  # tor took the services up from its own files
        assert {n: s.address for n, s in state.services.items()} == addresses
        assert all(s.configured for s in state.services.values())
        again, previous = onion.publish(layout)
    finally:
        second.stop()
    assert again == previous == addresses
    assert _files(layout.hs_dir("source")) == keys


def test_publish_twice_changes_nothing(layout: Layout, addresses: dict[str, str]) -> None:
    before = {name: _files(layout.hs_dir(name)) for name in onion.SERVICES}
    lock = (layout.clients_dir / "_locked.auth").read_bytes()
    assert onion.publish(layout) == (addresses, addresses)
    assert {name: _files(layout.hs_dir(name)) for name in onion.SERVICES} == before
    assert (layout.clients_dir / "_locked.auth").read_bytes() == lock


def test_remove_keeps_the_keys_unless_purged(
    layout: Layout, addresses: dict[str, str], tor: Tor
) -> None:
    onion.unpublish(layout)
    assert not layout.snippet.exists()
    assert onion.read_addresses(layout) == {}
    assert onion._present(tor.controller(), layout) == set()
    assert all((layout.hs_dir(n) / "hs_ed25519_secret_key").exists() for n in onion.SERVICES)
    assert onion.publish(layout)[0] == addresses
    onion.unpublish(layout, purge=True)
    assert not any(layout.hs_dir(n).exists() for n in onion.SERVICES)
    assert tor.alive()


# --- Client authorization -----------------------------------------------------------------


def test_client_key_formats(layout: Layout, addresses: dict[str, str]) -> None:
    key, address = onion.add_client(layout, "alice")
    assert address == addresses["journalist"]
    auth = layout.clients_dir / "alice.auth"
    assert auth.read_text() == f"descriptor:x25519:{key.public}\n"
    assert re.fullmatch(rf"descriptor:x25519:{KEY}\n", auth.read_text())
    assert _mode(auth) == 0o600
    line = key.auth_private_line(address)
    assert re.fullmatch(rf"{address.removesuffix('.onion')}:descriptor:x25519:{KEY}", line)
    assert key.private is not None
    private = X25519PrivateKey.from_private_bytes(base64.b32decode(key.private + "===="))
    public = base64.b32encode(private.public_key().public_bytes_raw()).decode().rstrip("=")
    assert public == key.public
    assert not (layout.clients_dir / "_locked.auth").exists()
    assert onion.list_clients(layout) == [onion.ClientKey("alice", key.public)]


def test_removing_one_journalist_leaves_the_others(
    layout: Layout, addresses: dict[str, str], tor: Tor
) -> None:
    for name in ("alice", "bob", "carol"):
        onion.add_client(layout, name)
    before = _files(layout.clients_dir)
    keys = _files(layout.hs_dir("journalist"))
    onion.remove_client(layout, "bob")
    after = _files(layout.clients_dir)
    assert after == {k: v for k, v in before.items() if k != "bob.auth"}
    assert [c.name for c in onion.list_clients(layout)] == ["alice", "carol"]
    assert {k: v for k, v in _files(layout.hs_dir("journalist")).items() if k in keys} == keys
    state = onion.inspect(layout)
    assert tor.alive()
    assert all(s.configured for s in state.services.values())
    assert state.services["journalist"].address == addresses["journalist"]
    assert state.services["journalist"].clients == 2

    onion.remove_client(layout, "alice")
    onion.remove_client(layout, "carol")
    assert onion.list_clients(layout) == []
    assert [p.name for p in layout.clients_dir.iterdir()] == ["_locked.auth"]


def test_add_a_journalists_own_public_key(layout: Layout, addresses: dict[str, str]) -> None:
    own = onion.ClientKey.generate("dana")
    key, _ = onion.add_client(layout, "dana", f"descriptor:x25519:{own.public}")
    assert key.private is None
    assert (layout.clients_dir / "dana.auth").read_text() == f"descriptor:x25519:{own.public}\n"
    with pytest.raises(UsageError, match="not known here"):
        key.auth_private_line(addresses["journalist"])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "A" * 51,
        "A" * 53,
        "1" * 52,
        "descriptor:x25519:" + "A" * 50,
        "descriptor:ed25519:" + "A" * 52,
        base64.b32encode(b"x" * 35).decode(),
    ],
)
def test_bad_public_keys_are_refused(layout: Layout, addresses: dict[str, str], text: str) -> None:
    with pytest.raises(OnionKeyError, match="not a valid x25519 public key"):
        onion.add_client(layout, "eve", text)
    assert not (layout.clients_dir / "eve.auth").exists()


@pytest.mark.parametrize("name", ["", "Alice", "-x", "_locked", "a/b", "../x", "a" * 33, "a b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="not a valid name"):
        onion.check_name(name)


def test_add_twice_or_remove_unknown(layout: Layout, addresses: dict[str, str]) -> None:
    onion.add_client(layout, "alice")
    with pytest.raises(UsageError, match="'alice' already has access"):
        onion.add_client(layout, "alice")
    with pytest.raises(UsageError, match="'bob' has no access"):
        onion.remove_client(layout, "bob")


def test_access_before_publishing(layout: Layout) -> None:
    with pytest.raises(onion.TorError, match="journalist onion service is not set up yet"):
        onion.add_client(layout, "alice")


# --- Tor failures -------------------------------------------------------------------------


def test_tor_missing(
    layout: Layout, addresses: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = layout.snippet.read_bytes()
    with pytest.raises(TorMissingError, match="tor is not installed") as caught:
        onion.publish(replace(layout, tor="/nonexistent/tor"))
    assert caught.value.hint
    assert "apt-get install tor" in caught.value.hint
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(TorMissingError, match="no 'tor' program"):
        onion.add_client(layout, "alice")
    assert not (layout.clients_dir / "alice.auth").exists()
    assert (layout.clients_dir / "_locked.auth").exists()
    assert layout.snippet.read_bytes() == before


def test_control_port_refused(layout: Layout) -> None:
    port = free_port()
    with pytest.raises(TorUnreachableError, match=rf"127\.0\.0\.1:{port}: connection refused"):
        onion.inspect(replace(layout, control=f"127.0.0.1:{port}"))
    missing = layout.control + "-missing"
    with pytest.raises(TorUnreachableError, match="no such file or directory"):
        onion.publish(replace(layout, control=missing))
    with pytest.raises(TorMissingError, match="nothing answers at 127.0.0.1"):
        onion.inspect(replace(layout, control=f"127.0.0.1:{port}", tor="/nonexistent/tor"))


def test_bad_control_setting(layout: Layout) -> None:
    with pytest.raises(onion.ConfigError, match="TIPBOX_TOR_CONTROL must be"):
        onion.inspect(replace(layout, control="localhost:nine"))


def test_bad_cookie(layout: Layout, tor: Tor) -> None:
    (tor.data_dir / "control_auth_cookie").write_bytes(os.urandom(32))
    with pytest.raises(TorAuthError, match="tor refused its authentication cookie"):
        onion.inspect(layout)
    assert tor.alive()


def test_control_password(tmp_path: Path) -> None:
    assert TOR is not None
    hashed = subprocess.run(
        [TOR, "--quiet", "--hash-password", "right horse"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    settings = ["DisableNetwork 1", "SocksPort 0", "CookieAuthentication 0"]
    tor = start_tor(tmp_path / "root", [*settings, f"HashedControlPassword {hashed}"])
    try:
        layout = Layout.under(tor.root)
        with pytest.raises(TorAuthError, match="wants a password") as caught:
            onion.inspect(layout)
        assert caught.value.hint == "set TIPBOX_TOR_PASSWORD"
        with pytest.raises(TorAuthError, match="refused the control port password"):
            onion.inspect(replace(layout, password="wrong horse"))
        assert onion.inspect(replace(layout, password="right horse")).version
    finally:
        tor.stop()


@pytest.mark.parametrize("service", ["source", "journalist"])
def test_damaged_service_key_is_caught_before_reloading(
    layout: Layout, addresses: dict[str, str], tor: Tor, service: str
) -> None:
    # A SIGHUP with this key would make tor exit (tor 0.4.9): we must refuse first.
    secret = layout.hs_dir(service) / "hs_ed25519_secret_key"
    secret.write_bytes(secret.read_bytes()[:40])
    with pytest.raises(OnionKeyError, match=f"{secret} is damaged") as caught:
        onion.publish(layout)
    assert caught.value.hint
    assert "make restore" in caught.value.hint
    assert tor.alive()
    state = onion.inspect(layout)
    assert state.services[service].problem
    assert "is damaged" in state.services[service].problem


def test_mismatched_key_halves(layout: Layout, addresses: dict[str, str], tor: Tor) -> None:
    other = layout.hs_dir("journalist") / "hs_ed25519_public_key"
    (layout.hs_dir("source") / "hs_ed25519_public_key").write_bytes(other.read_bytes())
    with pytest.raises(OnionKeyError, match="does not match the secret key"):
        onion.add_client(layout, "alice")
    assert tor.alive()


def test_damaged_client_file_is_caught_before_reloading(
    layout: Layout, addresses: dict[str, str], tor: Tor
) -> None:
    onion.add_client(layout, "alice")
    bad = layout.clients_dir / "eve.auth"
    bad.write_text("descriptor:x25519:NOTAKEY\n")
    with pytest.raises(OnionKeyError, match="eve.auth does not hold a valid client key"):
        onion.publish(layout)
    with pytest.raises(OnionKeyError, match="eve.auth"):
        onion.list_clients(layout)
    assert tor.alive()
    onion.remove_client(layout, "eve")  # the way out the hint gives
    assert [c.name for c in onion.list_clients(layout)] == ["alice"]
    onion.publish(layout)


def test_wrong_owners_and_modes_are_fixed_before_reloading(
    layout: Layout, addresses: dict[str, str], tor: Tor
) -> None:
    # As after a careless copy: tor would refuse these folders and exit on the reload.
    hs_dir = layout.hs_dir("journalist")
    hs_dir.chmod(0o755)
    (hs_dir / "hs_ed25519_secret_key").chmod(0o644)
    os.chown(layout.clients_dir, 12345, 12345)
    onion.add_client(layout, "alice")
    assert tor.alive()
    assert _mode(hs_dir) == 0o700
    assert _mode(hs_dir / "hs_ed25519_secret_key") == 0o600
    assert layout.clients_dir.stat().st_uid == layout.tor_dir.stat().st_uid
    assert [c.name for c in onion.list_clients(layout)] == ["alice"]


def test_config_tor_would_refuse_is_not_loaded(
    layout: Layout, addresses: dict[str, str], tor: Tor
) -> None:
    (layout.torrc_dir / "other.conf").write_text("NoSuchOption 1\n")
    old = layout.snippet.read_bytes()
    with pytest.raises(TorConfigError, match="Unknown option 'NoSuchOption'"):
        onion.publish(layout)
    assert tor.alive()
    assert layout.snippet.read_bytes() == old
    with pytest.raises(TorConfigError, match="would refuse"):
        onion.unpublish(layout)
    assert layout.snippet.read_bytes() == old
    assert onion._present(tor.controller(), layout) == set(onion.SERVICES)


def test_torrc_without_the_include(tmp_path: Path) -> None:
    tor = start_tor(tmp_path / "root", torrc="# Debian's torrc, untouched\n")
    try:
        layout = Layout.under(tor.root)
        with pytest.raises(TorConfigError, match="does not include") as caught:
            onion.publish(layout)
        assert caught.value.hint
        assert "%include" in caught.value.hint
        assert tor.alive()
    finally:
        tor.stop()


def test_source_service_must_stay_public(
    layout: Layout, addresses: dict[str, str], tor: Tor
) -> None:
    extra = layout.hs_dir("source") / "authorized_clients" / "x.auth"
    extra.write_text(onion.ClientKey.generate("x").auth_line() + "\n")
    with pytest.raises(TorConfigError, match="the source service must be public"):
        onion.publish(layout)


# --- The tipbox command -------------------------------------------------------------------


@pytest.fixture
def env(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> Layout:
    """The admin commands pointed at the test tor through the environment."""
    for name in (
        "TIPBOX_DATA_DIR",
        "TIPBOX_TOR_CONTROL",
        "TIPBOX_TOR_PASSWORD",
        "TIPBOX_TOR",
        "TIPBOX_SOURCE_SOCKET",
        "TIPBOX_JOURNALIST_SOCKET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TIPBOX_ROOT", str(layout.tor_dir.parent.parent.parent))
    return layout


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = tipbox_main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


def test_cli_publish_and_access(
    env: Layout, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = _run(capsys, "onion", "publish")
    assert status == 0
    addresses = onion.read_addresses(env)
    assert f"http://{addresses['source']}/" in out
    status, out, _ = _run(capsys, "onion", "addresses")
    assert out.splitlines() == [f"{k} http://{v}/" for k, v in addresses.items()]

    status, out, _ = _run(capsys, "access", "add", "alice", "--out", str(tmp_path))
    assert status == 0
    private = tmp_path / "alice.auth_private"
    line = private.read_text().strip()
    assert _mode(private) == 0o600
    assert re.fullmatch(rf"{addresses['journalist'][:-6]}:descriptor:x25519:{KEY}", line)
    assert f"  {line}" in out.splitlines()
    assert f"  key:     {line.rpartition(':')[2]}" in out.splitlines()

    status, out, _ = _run(capsys, "access", "list")
    assert status == 0
    assert out.startswith("alice ")
    status, out, _ = _run(capsys, "access", "remove", "alice")
    assert status == 0
    status, out, _ = _run(capsys, "access", "list")
    assert "nobody has access" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["access", "remove", "alice"], "'alice' has no access"),
        (["access", "add", "Alice"], "'Alice' is not a valid name"),
        (["access", "add", "bob", "--public-key", "xyz"], "not a valid x25519 public key"),
    ],
)
def test_cli_refusals(
    env: Layout,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
    tmp_path: Path,
) -> None:
    onion.publish(env)
    status, out, err = _run(capsys, *argv)
    assert status == 1
    assert err.startswith(f"tipbox: error: {message}")


@pytest.mark.parametrize(
    "argv",
    [["access", "add", "alice"], ["access", "remove", "bob"], ["onion", "publish"], ["status"]],
)
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"TIPBOX_TOR_CONTROL": "127.0.0.1:{free}"}, "cannot reach tor's control port"),
        ({"TIPBOX_TOR_CONTROL": "127.0.0.1:{free}", "TIPBOX_TOR": "/no/tor"}, "not installed"),
        ({"TIPBOX_TOR_PASSWORD": "x", "COOKIE": "bad"}, "tor refused its authentication cookie"),
    ],
)
def test_cli_tor_failures(
    env: Layout,
    tor: Tor,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    setting: dict[str, str],
    message: str,
) -> None:
    onion.publish(env)
    onion.add_client(env, "bob")
    free = str(free_port())
    for name, value in setting.items():
        if name == "COOKIE":
            (tor.data_dir / "control_auth_cookie").write_bytes(os.urandom(32))
        else:
            monkeypatch.setenv(name, value.format(free=free))
    status, out, err = _run(capsys, *argv)
    assert status == 1
    assert err.startswith("tipbox: error: ")
    assert message in (out if argv == ["status"] else err)
    assert tor.alive()


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.headers["Host"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_cli_status_in_plain_words(
    env: Layout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = tmp_path / "status-keys"
    keys.mkdir()
    (keys / "newsroom.pub").write_text(f"{X25519Identity.generate().recipient}\n")
    monkeypatch.setenv("TIPBOX_KEYS_DIR", str(keys))
    monkeypatch.setenv("APT_CONFIG", str(apt_without_updates(tmp_path)))
    addresses = onion.publish(env)[0]
    server = _UnixHTTPServer(str(env.source_socket), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, out, err = _run(capsys, "status")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    lines = out.splitlines()
    assert status == 1
    assert re.fullmatch(rf"ok    tor [0-9.]+ answers on {re.escape(env.control)}", lines[0])
    assert lines[1].startswith("FAIL  tor is not connected to the Tor network (0%")
    assert lines[2] == "FAIL  source onion service is configured but not published yet"
    assert lines[3] == "FAIL  journalist onion service is configured but not published yet"
    assert lines[4] == f"ok    source app on {env.source_socket} answers (HTTP 200)"
    assert lines[5].startswith(f"FAIL  journalist app on {env.journalist_socket}: no such socket")
    assert re.fullmatch(rf"ok    [0-9.]+ GiB free in {re.escape(str(env.data_dir))} .*", lines[6])
    assert lines[7].startswith("WARN  newsroom keys: 1 of 1 newsroom recipients are classical")
    assert lines[8] == "ok    daily digest not configured (TIPBOX_DIGEST_RELAY is empty)"
    assert lines[9] == "ok    no security update pending"
    assert lines[10].startswith("WARN  unattended-upgrades is not installed")
    assert err == "tipbox: error: 4 of 11 checks failed\n"
    assert addresses["source"]
