"""End to end through a private Tor network on loopback (tests/testnet.py).

The real source app runs in Gunicorn on a unix socket, as in deployment, and a journalist app
on another (the real one once ``app.journalist`` exists, a stand-in until then). An
onion-service tor publishes both with app/onion/'s torrc, and a client tor reaches them
through its SocksPort: a tip sent to the source onion is stored encrypted; the journalist
onion refuses a client without a key, serves one with a key, and refuses it again once the
key is removed while another journalist's key keeps working; ``tipbox status`` is all green;
and a whole source journey runs in Chromium (JavaScript off) proxied through the client tor.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from app import onion
from app.crypto.keyfile import load_identities
from app.onion import Layout
from tests.fixtures_app import find, one
from tests.helpers import apt_without_updates
from tests.live import CHROMIUM, CHROMIUM_ARGS, STANDIN_APP, LiveServer, start_server
from tests.testnet import (
    HOST,
    Network,
    OnionClient,
    SocksError,
    Tor,
    needs_testnet,
    testnet,  # noqa: F401 - the session fixture
    tipbox_main,
)

# One worker runs them all (make test uses --dist loadgroup): the shared network's keeper stops
# when its users leave, and a second worker arriving later raced its teardown.
pytestmark = [pytest.mark.tor, pytest.mark.slow, needs_testnet, pytest.mark.xdist_group("testnet")]


def _journalist_app() -> str:
    """The real journalist app once it exists, a stand-in WSGI app until then."""
    try:
        from app.journalist import create_app  # noqa: F401
    except ImportError:
        return STANDIN_APP
    return "app.journalist:create_app()"


JOURNALIST_APP = _journalist_app()
REFUSED = {0xF4: "client authorization missing", 0xF5: "client authorization wrong"}


@dataclass
class Site:
    """Both apps, published by an onion-service tor, and a client tor to reach them."""

    layout: Layout
    hs: Tor
    client: Tor
    source: LiveServer
    journalist: LiveServer
    addresses: dict[str, str]
    auth_dir: Path

    @property
    def socks(self) -> int:
        return self.client.socks_port()

    def browse(self, name: str) -> OnionClient:
        return OnionClient(self.socks, self.addresses[name])


@pytest.fixture(scope="module")
def site(testnet: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # noqa: F811
    root = tmp_path_factory.mktemp("site")
    servers: list[LiveServer] = []
    tors: list[Tor] = []
    try:
        servers.append(start_server(root / "source", root / "newsroom.txt", unix_socket=True))
        servers.append(
            start_server(root / "journalist", root / "j.txt", app=JOURNALIST_APP, unix_socket=True)
        )
        source, journalist = servers
        assert source.socket_path is not None
        assert journalist.socket_path is not None
        tors.append(testnet.start(root / "hs", ["SocksPort 0"], "hs"))
        layout = Layout.under(
            root / "hs",
            source_socket=source.socket_path,
            journalist_socket=journalist.socket_path,
        )
        addresses, _ = onion.publish(layout)
        auth_dir = root / "client-auth"
        auth_dir.mkdir(mode=0o700)
        client_settings = [
            f"SocksPort {HOST}:auto ExtendedErrors",
            f"ClientOnionAuthDir {auth_dir}",
        ]
        tors.append(testnet.start(root / "client", client_settings, "client"))
        yield Site(layout, tors[0], tors[1], source, journalist, addresses, auth_dir)
    finally:
        for tor in reversed(tors):
            tor.stop()
        for server in reversed(servers):
            server.stop()


def _post_tip(client: OnionClient, message: str, files: list[tuple[bytes, str]]) -> str:
    """Be a first-time source: take a codename, send the form; return the codename."""
    page = client.get("/en/generate")
    assert page.status == 200, page.status
    codename = " ".join(one(page.body, id="codename").text.split())
    form = client.get("/en/submit")
    token = find(form.body, "input", name="csrf_token")[0]["value"]
    fields = MultiDict({"csrf_token": token, "message": message, "website": ""})
    for content, name in files:
        fields.add(
            "files", FileStorage(io.BytesIO(content), name, "files", "application/octet-stream")
        )
    boundary, body = encode_multipart(fields)
    sent = client.request(
        "POST",
        "/en/submit",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert sent.status == 303, sent.body[:500]
    received = client.get(sent.headers["Location"])
    assert find(received.body, id="received"), received.body[:500]
    return codename


def test_tip_through_the_source_onion_is_stored_encrypted(site: Site) -> None:
    client = site.browse("source")
    landing = client.wait("/")
    assert landing.status == 200
    assert landing.headers["Content-Security-Policy"].startswith("default-src 'none'")
    message = "Tip over Tor: the port authority falsifies cargo manifests."
    document = os.urandom(5000) + b"MANIFEST-2024"
    before = {s.id for s in site.source.store().list_sources()}
    _post_tip(client, message, [(document, "manifest.bin")])

    store = site.source.store()
    new = [s for s in store.list_sources() if s.id not in before]
    assert len(new) == 1
    items = store.items_of(new[0].id)
    assert len(items) == 2
    identity = load_identities(site.source.identity_path.read_bytes())[0]
    found = {}
    for item in items:
        raw = store.path_of(item).read_bytes()
        assert raw.startswith(b"age-encryption.org/v1\n")
        assert message.encode() not in raw
        assert b"MANIFEST-2024" not in raw
        name, data = store.read_member(item, identity)
        found[name] = data
    assert found == {"message.txt": message.encode(), "manifest.bin": document}


def _until_refused(client: OnionClient, tor: Tor, timeout: float = 120.0) -> int:
    """Fetch until the service refuses us for want of authorization; return the SOCKS code."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.get("/")
        except SocksError as exc:
            if exc.code in REFUSED:
                return exc.code
        except (TimeoutError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            pytest.fail("the journalist service still served a removed key")
        tor.signal("NEWNYM")  # forget the descriptor, circuits and rendezvous: fetch again
        time.sleep(2.0)


def _give_key(site: Site, name: str, line: str) -> None:
    for old in site.auth_dir.glob("*.auth_private"):
        old.unlink()
    path = site.auth_dir / f"{name}.auth_private"
    path.write_text(f"{line}\n")
    path.chmod(0o600)
    site.client.signal("RELOAD")
    site.client.signal("NEWNYM")


def test_journalist_onion_needs_a_key_per_journalist(site: Site) -> None:
    alice, address = onion.add_client(site.layout, "alice")
    bob, _ = onion.add_client(site.layout, "bob")
    client = site.browse("journalist")
    with pytest.raises(SocksError) as refused:
        client.wait("/", timeout=120)
    assert refused.value.code == 0xF4, refused.value

    _give_key(site, "alice", alice.auth_private_line(address))
    assert client.wait("/", timeout=120).status < 500

    onion.remove_client(site.layout, "alice")
    assert _until_refused(client, site.client) in REFUSED

    _give_key(site, "bob", bob.auth_private_line(address))  # bob's key was never touched
    assert client.wait("/", timeout=120).status < 500
    assert (site.layout.clients_dir / "bob.auth").read_text() == bob.auth_line() + "\n"


def test_status_is_all_green(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TIPBOX_ROOT", str(site.hs.root))
    monkeypatch.setenv("TIPBOX_SOURCE_SOCKET", str(site.layout.source_socket))
    monkeypatch.setenv("TIPBOX_JOURNALIST_SOCKET", str(site.layout.journalist_socket))
    monkeypatch.setenv("TIPBOX_KEYS_DIR", str(site.source.keys_dir))
    monkeypatch.setenv("APT_CONFIG", str(apt_without_updates(tmp_path)))
    for name in ("TIPBOX_DATA_DIR", "TIPBOX_TOR_CONTROL", "TIPBOX_TOR_PASSWORD", "TIPBOX_TOR"):
        monkeypatch.delenv(name, raising=False)
    deadline = time.monotonic() + 90
    while True:  # the descriptors are built once tor has introduction points
        status = tipbox_main(["status"])
        out, err = capsys.readouterr()
        if status == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == 0, out + err
    source, journalist = site.addresses["source"], site.addresses["journalist"]
    assert f"ok    source onion service is published: http://{source}/" in out
    assert "(proof-of-work defence on)" in out
    assert f"ok    journalist onion service is published: http://{journalist}/" in out
    assert "ok    tor is connected to the Tor network" in out
    assert re.search(r"ok    source app on \S+ answers \(HTTP 200\)", out)
    assert "ok    newsroom keys: 1 post-quantum recipient (age1pq1…)" in out
    assert "ok    no security update pending" in out  # apt with no source (unattended-upgrades:
    assert out.rstrip().endswith("all 11 checks passed")  # a WARN, it is not installed here)


def test_source_journey_in_chromium_through_tor(site: Site, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = f"http://{site.addresses['source']}"
    site.browse("source").wait("/")
    upload = tmp_path / "ledger.txt"
    upload.write_text("cash payments, 2024\n" * 40)
    before = {s.id for s in site.source.store().list_sources()}
    args = [
        *CHROMIUM_ARGS,
        f"--proxy-server=socks5://{HOST}:{site.socks}",
        # No name is resolved on this machine: tor resolves (and only it knows .onion).
        f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {HOST}",
    ]
    requested: list[str] = []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            context = chromium.new_context(java_script_enabled=False, locale="en-US")
            context.on("request", lambda request: requested.append(request.url))
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{base}/")
            page.screenshot(path=tmp_path / "1-landing.png")
            page.click("a#first-time")
            expect(page).to_have_url(f"{base}/en/generate")
            codename = " ".join(page.inner_text("#codename").split())
            assert len(codename.split()) >= 5
            page.screenshot(path=tmp_path / "2-codename.png")
            page.click("a#continue")
            expect(page).to_have_url(f"{base}/en/submit")
            page.fill("textarea[name=message]", "Sent from Chromium over Tor.")
            page.set_input_files("input[name=files][type=file][multiple]", [upload])
            page.click("#send")
            expect(page.locator("#received li")).to_have_count(2)
            page.screenshot(path=tmp_path / "3-received.png")
            context.close()
        finally:
            chromium.close()
    assert requested
    assert all(url.startswith(f"{base}/") for url in requested), requested
    store = site.source.store()
    new = [s for s in store.list_sources() if s.id not in before]
    assert len(new) == 1
    identity = load_identities(site.source.identity_path.read_bytes())[0]
    names = sorted(store.read_member(item, identity)[0] for item in store.items_of(new[0].id))
    assert names == ["ledger.txt", "message.txt"]
