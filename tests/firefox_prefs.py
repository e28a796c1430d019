"""The profile of the test Firefox (tests/firefox.py): its ``user.js`` preferences and its
``userChrome.css``.

The Safest preferences are those of Tor Browser's Safest level that plain Firefox has. The
quiet ones turn off everything that would make Firefox reach the network on its own; each was
checked to exist in Debian's Firefox ESR (153), and a whole run (start, two pages, 30 s idle)
under ``strace -f -e trace=connect,sendto,sendmsg,bind`` made connections to 127.0.0.1 only
(the test server, Marionette). Firefox still asks the kernel, over netlink, for its route to a
fixed address (its network link service's check): that sends nothing on any wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tests.gunicorn_launch import HOST

# Tor Browser's Safest security level, as far as plain Firefox has the switches.
SAFEST_PREFS: dict[str, Any] = {
    "javascript.enabled": False,
    "svg.disabled": True,
    "mathml.disabled": True,
    "gfx.downloadable_fonts.enabled": False,
    "webgl.disabled": True,
}

# No connection of Firefox's own: the tests may only reach the loopback server.
QUIET_PREFS: dict[str, Any] = {
    # First run, start page, default-browser and welcome pages.
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "startup.homepage_welcome_url": "",
    "startup.homepage_welcome_url.additional": "",
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.sessionstore.resume_from_crash": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "datareporting.policy.firstRunURL": "",
    "termsofuse.bypassNotification": True,
    # Updates of add-ons, plugins, search engines, blocklists and remote settings (Debian
    # builds Firefox without its own updater).
    "extensions.update.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "browser.search.update": False,
    "services.settings.server": "data:,#remote-settings-off",
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    # Telemetry, studies and crash reports.
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "data:,",
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.usage.uploadEnabled": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "browser.crashReports.unsubmittedCheck.enabled": False,
    "breakpad.reportURL": "",
    # Probes: captive portal, connectivity, geolocation, region, time.
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "captivedetect.canonicalURL": "",
    "network.manage-offline-status": False,
    "geo.enabled": False,
    "geo.provider.network.url": "",
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    # Safe browsing and tracking-protection lists.
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "privacy.trackingprotection.enabled": False,
    # Accounts, push, new-tab feeds, translations, suggestions.
    "identity.fxaccounts.enabled": False,
    "dom.push.connection.enabled": False,
    "dom.push.serverURL": "",
    "browser.discovery.enabled": False,
    "browser.newtabpage.activity-stream.feeds.system.topstories": False,
    "browser.newtabpage.activity-stream.feeds.topsites": False,
    "browser.newtabpage.activity-stream.showSponsoredTopSites": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.topsites.contile.enabled": False,
    "browser.translations.enable": False,
    "browser.search.suggest.enabled": False,
    "browser.urlbar.suggest.quicksuggest.sponsored": False,
    "browser.urlbar.suggest.quicksuggest.nonsponsored": False,
    # Lookups and connections made ahead of time, DNS over HTTPS, QUIC, WebRTC.
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.urlbar.speculativeConnect.enabled": False,
    "browser.places.speculativeConnect.enabled": False,
    "network.trr.mode": 5,
    "network.http.http3.enable": False,
    "media.peerconnection.enabled": False,
    "security.OCSP.enabled": 0,
    # Fewer processes: a third less CPU at start-up (pages without scripts render the same).
    "dom.ipc.processCount": 1,
    "dom.ipc.processPrelaunch.enabled": False,
    "fission.autostart": False,
    "extensions.webextensions.remote": False,
    # Nothing a test would trip over: password and form memory.
    "signon.rememberSignons": False,
    "browser.formfill.enable": False,
    "intl.accept_languages": "en-US, en",
    "layout.css.devPixelsPerPx": "1.0",
    # Read chrome/userChrome.css (below).
    "toolkit.legacyUserProfileCustomizations.stylesheets": True,
}

# No toolbars: the window is then the page's viewport, and may be narrower than the toolbars'
# own minimum width (about 500 px), as a phone's is.
USER_CHROME = """\
:root, #main-window, #navigator-toolbox, toolbar { min-width: 0 !important; }
#navigator-toolbox { visibility: collapse !important; }
"""


def sink_prefs(port: int) -> dict[str, Any]:
    """Every proxy is the sink; loopback is never proxied (Firefox's default, set anyway)."""
    return {
        "network.proxy.type": 1,
        "network.proxy.share_proxy_settings": False,
        "network.proxy.http": HOST,
        "network.proxy.http_port": port,
        "network.proxy.ssl": HOST,
        "network.proxy.ssl_port": port,
        "network.proxy.socks": HOST,
        "network.proxy.socks_port": port,
        "network.proxy.socks_remote_dns": True,
        "network.proxy.no_proxies_on": "",
        "network.proxy.allow_hijacking_localhost": False,
    }


def user_js(prefs: Mapping[str, Any]) -> str:
    """A profile's ``user.js`` (JSON spells a pref's value the way user.js wants it)."""
    return "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
