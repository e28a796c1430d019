"""Shared fixtures: real keys, real files, the repository's paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

pytest.register_assert_rewrite("tests.helpers")

# Property tests (marker "property"): a bounded run in `make test`, a long one in `make fuzz`
# (HYPOTHESIS_PROFILE=fuzz). No deadline: the machine is shared, timings are not what is tested.
settings.register_profile("tipbox", max_examples=100, deadline=None)
settings.register_profile("fuzz", max_examples=10_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tipbox"))

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
