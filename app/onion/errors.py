"""The errors of :mod:`app.onion`; each docstring is the text a user sees, each hint the way out."""

from __future__ import annotations

from app.errors import TipboxError


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
