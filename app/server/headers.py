"""The security surface of every response: one header table, and the onion-only host guard.

:data:`HEADERS` is applied in ``after_request`` to every response the app makes, pages, error
pages and static files alike. Only ``Cache-Control`` is left to static files (the stylesheet and
the logo may be cached; pages never are). There is no HSTS: onion services are plain http and
already end-to-end encrypted by Tor.

The host guard runs before anything else: a request relayed by a tor2web proxy (``X-tor2web``)
or addressed to anything but an ``.onion`` name gets a warning page telling the source to use
Tor Browser, instead of the app. In development mode ``127.0.0.1`` and ``localhost`` are
allowed too.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from flask import Flask, Response, render_template, request

from app.config import Config

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "ambient-light-sensor",
        "autoplay",
        "bluetooth",
        "camera",
        "display-capture",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "picture-in-picture",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "sync-xhr",
        "usb",
        "web-share",
        "xr-spatial-tracking",
    )
)
HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": CSP,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": PERMISSIONS_POLICY,
        "Cache-Control": "no-store",
    }
)
# Endpoints serving public, unchanging files: they keep their own Cache-Control, and are served
# even to a wrong host so that the warning page has its stylesheet.
ASSET_ENDPOINTS = frozenset({"static", "source.logo"})
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def add_headers(response: Response) -> Response:
    """Apply :data:`HEADERS` to ``response`` (``Cache-Control`` only to pages)."""
    asset = (
        request.endpoint in ASSET_ENDPOINTS
        and request.method in {"GET", "HEAD"}
        and response.status_code < 400
    )
    for name, value in HEADERS.items():
        if name == "Cache-Control" and asset:
            continue
        response.headers[name] = value
    return response


def host_allowed(host: str, development: bool) -> bool:
    """Whether ``host`` (a Host header, maybe with a port) is one the app answers."""
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return False
    return name.endswith(".onion") or (development and name in LOCAL_HOSTS)


def init_app(app: Flask, config: Config) -> None:
    """Register the host guard (first of all ``before_request``) and the header table."""

    def guard_host() -> tuple[str, int] | None:
        if "X-Tor2web" in request.headers:
            return render_template("warning.html"), 403
        if request.endpoint in ASSET_ENDPOINTS:
            return None
        if not host_allowed(request.host, config.development):
            return render_template("warning.html"), 421
        return None

    app.before_request(guard_host)
    app.after_request(add_headers)
