"""Days: the only time granularity Tipbox keeps (a UTC date, never a time of day).

Sources, items, accounts, tokens and bundles carry a day, so that a seized server or bundle
tells when something happened only to the day. Everything that stamps a date asks
:func:`today`, so a test (or a retention job) can move the clock in one place.
"""

from __future__ import annotations

from datetime import UTC, datetime


def today() -> str:
    """The current UTC day, as ``YYYY-MM-DD``."""
    return datetime.now(UTC).date().isoformat()
