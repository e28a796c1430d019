"""tor's control port through stem: connecting, authenticating, and tor's view of its services.

stem is imported inside these functions only, so ``tipbox`` commands that never talk to tor never
load it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.onion.errors import TorAuthError, TorError, TorMissingError, TorUnreachableError
from app.onion.layout import SERVICES, Layout


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
