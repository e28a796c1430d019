"""Shared fixtures: real keys, real files, the repository's paths."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.helpers")

from app.crypto import X25519Identity  # noqa: E402 - after the assert-rewrite registration

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture
def keypair() -> X25519Identity:
    """A fresh newsroom identity (its ``.recipient`` is the public half)."""
    return X25519Identity.generate()
