"""The Firefox harness itself (tests/firefox.py): the Safest preferences hold, the viewport is
the size asked for, a file input takes several files, the sink catches anything addressed
beyond loopback, strace sees Firefox's processes send to loopback only, and nothing of Firefox
outlives its test."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from pathlib import Path

import pytest

from tests.firefox import SAFEST_PREFS, StartFirefox, running_in_group
from tests.live import StartServer

pytestmark = [pytest.mark.firefox, pytest.mark.slow]


def test_safest_preferences_hold(firefox: StartFirefox, live_server: StartServer) -> None:
    server = live_server()
    browser = firefox()
    # Firefox writes the preferences it holds to prefs.js (Marionette may not read them).
    wanted = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in SAFEST_PREFS.items()]
    browser.wait_for("prefs.js", lambda: (browser.root / "profile" / "prefs.js").exists())
    browser.wait_for("the Safest prefs", lambda: all(w in browser.saved_prefs() for w in wanted))
    browser.go(f"{server.url}/")
    # The page's one script (static/banner.js) would add the class "js" to <html>.
    assert "js" not in (browser.find("html").get_attribute("class") or "").split()
    assert not browser.find(".js-banner").is_displayed()


def test_viewport_is_the_size_asked_for(firefox: StartFirefox, live_server: StartServer) -> None:
    server = live_server()
    browser = firefox(viewport=(1280, 800))
    browser.go(f"{server.url}/")
    for size in [(1280, 800), (390, 844), (1280, 800)]:
        browser.set_viewport(*size)
        assert browser.viewport() == size
        # The page lays out to the viewport: no sideways scrolling at either width.
        assert browser.find("html").get_property("scrollWidth") <= size[0]
        assert browser.shot(f"landing-{size[0]}").read_bytes().startswith(b"\x89PNG")


def test_a_file_input_takes_several_files(
    firefox: StartFirefox, live_server: StartServer, tmp_path: Path
) -> None:
    server = live_server()
    browser = firefox()
    files = [tmp_path / "one.txt", tmp_path / "dos años.txt"]
    files[0].write_bytes(b"1")
    files[1].write_bytes(b"22")
    browser.go(f"{server.url}/en/generate")
    browser.click("a#continue")
    browser.choose_files("input[type=file][multiple]", files)
    chosen = browser.script(
        "return Array.from(arguments[0].files, f => [f.name, f.size]);",
        browser.find("input[type=file]"),
    )
    assert chosen == [["one.txt", 1], ["dos años.txt", 2]]


def test_requests_beyond_loopback_land_in_the_sink(firefox: StartFirefox) -> None:
    browser = firefox()
    assert browser.sink.seen == []
    # A name under .invalid, never resolved: the proxy (the sink) would resolve it.
    with pytest.raises(Exception, match="(?i)error"):
        browser.go("http://tripwire.invalid/page")
    browser.wait_for("the sink", lambda: bool(browser.sink.seen))
    assert browser.sink.seen[0] == "GET http://tripwire.invalid/page HTTP/1.1"
    assert browser.foreign_requests("http://127.0.0.1:1") == browser.sink.seen


# An IPv4 or IPv6 address in strace's rendering of a socket address.
TRACED_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def test_firefox_sends_to_loopback_only(firefox: StartFirefox, live_server: StartServer) -> None:
    """Below every preference: the system calls of all of Firefox's processes, from start-up to
    the end, a few pages and an idle while, address nothing but 127.0.0.1 (and ::1).

    Netlink messages are the kernel's business (the network link service asks it for a route to
    a fixed address: nothing is sent), so they are left out.
    """
    server = live_server()
    browser = firefox(trace=True)
    browser.go(f"{server.url}/")
    browser.click("a#first-time")
    time.sleep(10)  # background services start in the first seconds after start-up
    browser.stop()
    calls = [
        line
        for line in (browser.root / "strace.txt").read_text("utf-8", "replace").splitlines()
        if "AF_NETLINK" not in line
    ]
    addresses = {a or b for line in calls for a, b in TRACED_ADDRESS.findall(line)}
    assert any(f"htons({server.port})" in line for line in calls)  # the trace sees the server
    assert addresses, "no address was traced"
    assert [a for a in addresses if not ipaddress.ip_address(a).is_loopback] == []


def test_nothing_outlives_the_browser(firefox: StartFirefox) -> None:
    browser = firefox()
    group = browser.process.pid
    assert len(running_in_group(group)) > 1  # the parent and its content processes
    browser.stop()
    assert running_in_group(group) == []
