"""Shared fixtures: real keys, real files, the repository's paths."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.helpers")

from app.crypto import X25519Identity  # noqa: E402 - after the assert-rewrite registration
from tests.firefox import firefox  # noqa: E402, F401 - real Firefox ESR (Marionette)
from tests.fixtures_app import app, client, config, translations_dir  # noqa: E402, F401
from tests.live import browser, live_server  # noqa: E402, F401 - real Gunicorn and Chromium

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture
def keypair() -> X25519Identity:
    """A fresh newsroom identity (its ``.recipient`` is the public half)."""
    return X25519Identity.generate()
