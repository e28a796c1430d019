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

The package, by job: :mod:`~app.onion.layout` (paths, the torrc snippet, the stored addresses),
:mod:`~app.onion.keys` (onion and client-authorization keys), :mod:`~app.onion.control` (stem and
tor's control port), :mod:`~app.onion.reload` (the checked reload), :mod:`~app.onion.service`
(what the commands do), :mod:`~app.onion.disk` (tor's file owners and modes) and
:mod:`~app.onion.errors`. Everything callers use is imported here.
"""

from app.errors import ConfigError, TipboxError, UsageError
from app.onion.control import _configured as _configured  # tests call these two directly
from app.onion.control import _present as _present
from app.onion.control import controller
from app.onion.errors import (
    OnionKeyError,
    TorAuthError,
    TorConfigError,
    TorError,
    TorMissingError,
    TorUnreachableError,
)
from app.onion.keys import (
    KEY_CHARS,
    LOCKED,
    NAME_PATTERN,
    ClientKey,
    check_name,
    list_clients,
    onion_address,
    parse_public_key,
    service_address,
)
from app.onion.layout import (
    ADDRESSES_NAME,
    JOURNALIST,
    SERVICES,
    SNIPPET_NAME,
    SOURCE,
    Layout,
    layout_from_env,
    read_addresses,
    render_torrc,
)
from app.onion.reload import VERIFY_TIMEOUT
from app.onion.service import (
    APPEAR_TIMEOUT,
    ServiceState,
    TorState,
    add_client,
    inspect,
    publish,
    remove_client,
    unpublish,
)

__all__ = [
    # layout
    "SOURCE",
    "JOURNALIST",
    "SERVICES",
    "SNIPPET_NAME",
    "ADDRESSES_NAME",
    "Layout",
    "layout_from_env",
    "render_torrc",
    "read_addresses",
    # keys
    "LOCKED",
    "NAME_PATTERN",
    "KEY_CHARS",
    "onion_address",
    "service_address",
    "ClientKey",
    "parse_public_key",
    "check_name",
    "list_clients",
    # control and reload
    "controller",
    "VERIFY_TIMEOUT",
    # service
    "APPEAR_TIMEOUT",
    "publish",
    "unpublish",
    "add_client",
    "remove_client",
    "ServiceState",
    "TorState",
    "inspect",
    # errors (the app.errors ones were reachable here before the split, and still are)
    "TorError",
    "TorMissingError",
    "TorUnreachableError",
    "TorAuthError",
    "TorConfigError",
    "OnionKeyError",
    "ConfigError",
    "TipboxError",
    "UsageError",
]
