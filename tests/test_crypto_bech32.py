"""Bech32 as age uses it: any length (a hybrid recipient is 1,216 bytes), strict padding."""

from __future__ import annotations

import os

import pytest

from app.crypto import bech32
from app.errors import KeyFormatError


def _with_checksum(hrp: str, data_chars: str) -> str:
    """``data_chars`` (already Bech32 characters) under ``hrp`` with a valid checksum."""
    values = [bech32.CHARSET.index(c) for c in data_chars]
    polymod = bech32._polymod(bech32._hrp_expand(hrp) + values + [0] * 6) ^ 1
    checksum = "".join(bech32.CHARSET[(polymod >> 5 * (5 - i)) & 31] for i in range(6))
    return f"{hrp}1{data_chars}{checksum}"


@pytest.mark.parametrize("size", [0, 1, 4, 5, 31, 32, 33, 1216])
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    text = bech32.encode("age", data)
    assert bech32.decode(text) == ("age", data)
    assert bech32.decode(text.upper()) == ("age", data)
    assert text == _with_checksum("age", text[4:-6])  # the checksum is BIP 173's


@pytest.mark.parametrize(
    ("data_chars", "message"),
    [
        ("qqqqqqp", "non-zero padding"),  # 35 bits for 4 bytes: the 3 spare bits are not zero
        ("qqqqqqqq" + "q", "non-zero padding"),  # 45 bits: a whole spare group (5 bits)
        ("qqqqqqqb", "character outside"),
    ],
)
def test_bad_data_is_refused(data_chars: str, message: str) -> None:
    text = _with_checksum("age", data_chars) if "b" not in data_chars else f"age1{data_chars}qqqqqq"
    with pytest.raises(KeyFormatError, match=message):
        bech32.decode(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Age1qqqqqqqq", "mixed case"),
        ("age1qq qqqqqq", "unexpected character"),
        ("age1qqqqq", "separator"),
        ("age1" + "q" * 10, "checksum"),
    ],
)
def test_malformed_strings_are_refused(text: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        bech32.decode(text)
