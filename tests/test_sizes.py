"""One unit system for sizes, shared by both web apps (binary units: KiB, MiB, GiB, TiB)."""

from __future__ import annotations

import pytest

from app.sizes import in_units, plain

CASES = [
    # (bytes, (number, unit), plain English)
    (0, (0, ""), "0 bytes"),
    (1, (1, ""), "1 byte"),
    (1023, (1023, ""), "1023 bytes"),
    (1024, (1.0, "KiB"), "1 KiB"),
    (1536, (1.5, "KiB"), "1.5 KiB"),
    (12 * 1024**2, (12.0, "MiB"), "12 MiB"),
    (2 * 1024**3, (2.0, "GiB"), "2 GiB"),
    (1536 * 1024**3, (1.5, "TiB"), "1.5 TiB"),
]


@pytest.mark.parametrize(("size", "parts", "text"), CASES)
def test_sizes_in_binary_units(size: int, parts: tuple[float, str], text: str) -> None:
    assert in_units(size) == parts
    assert plain(size) == text
