"""Word lists for source codenames and for reading key fingerprints aloud.

A source's codename is the only credential it has: it is shown once, when the first tip is
submitted, and must be typed back to read replies. It is made of words drawn independently and
uniformly (:func:`secrets.choice`) from one of two vendored lists:

* ``en``: the EFF large word list, 7,776 words (``log2(7776)`` ~= 12.925 bits per word);
  seven words carry ~90.47 bits.
* ``es``: the Spanish list shipped by the ``diceware`` package, 8,192 words (exactly 13 bits per
  word); seven words carry 91 bits.

Both lists give at least 90 bits for the default :data:`CODENAME_WORDS` = 7 words, which is the
figure an attacker must brute-force offline against a stolen codename hash.

:func:`fingerprint` turns a SHA-256 digest into English words two people can read to each other
to check a copied public key: six words carry ``6 * log2(7776)`` ~= 77.5 bits of the digest.

Origin, licences and SHA-256 of the vendored files are in ``README.md`` next to this module.

This module uses only the standard library: it is imported by the air-gapped command-line tool.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import secrets
import unicodedata
from pathlib import Path

__all__ = [
    "CODENAME_WORDS",
    "LANGUAGES",
    "codename_bits",
    "fingerprint",
    "generate_codename",
    "normalise_codename",
    "wordlist",
]

LANGUAGES: tuple[str, ...] = ("en", "es")
CODENAME_WORDS = 7

# Expected size and allowed word shape of each vendored list. The EFF list has four hyphenated
# words (drop-down, felt-tip, t-shirt, yo-yo), so hyphens are allowed between letters in "en".
_EXPECTED_COUNT: dict[str, int] = {"en": 7776, "es": 8192}
_WORD_PATTERN: dict[str, re.Pattern[str]] = {
    "en": re.compile(r"[a-z]+(?:-[a-z]+)*"),
    "es": re.compile(r"[a-z]+"),
}

# The number of base-7776 digits that fit in a 256-bit digest: 7776**19 < 2**256 < 7776**20.
_FINGERPRINT_MAX_WORDS = 19


def _check_language(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown word list language {lang!r}; expected one of {LANGUAGES}")


@functools.cache
def _load(lang: str) -> tuple[str, ...]:
    data = (Path(__file__).parent / f"{lang}.txt").read_bytes()  # (importlib.resources: +6 ms)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RuntimeError(f"word list {lang!r} is not ASCII") from exc
    words = tuple(text.split("\n"))
    if not words or words[-1] != "":
        raise RuntimeError(f"word list {lang!r} does not end with a newline")
    words = words[:-1]
    pattern = _WORD_PATTERN[lang]
    for number, word in enumerate(words, start=1):
        if pattern.fullmatch(word) is None:
            raise RuntimeError(f"word list {lang!r} line {number}: invalid word {word!r}")
    expected = _EXPECTED_COUNT[lang]
    if len(words) != expected:
        raise RuntimeError(f"word list {lang!r} has {len(words)} words, expected {expected}")
    if len(set(words)) != len(words):
        raise RuntimeError(f"word list {lang!r} has duplicate words")
    return words


def wordlist(lang: str) -> tuple[str, ...]:
    """Return the word list for ``lang`` ("en" or "es"), loaded once and validated.

    Raises ``ValueError`` for an unknown language and ``RuntimeError`` if the packaged file is
    damaged (wrong size, duplicates, or a word outside the allowed alphabet).
    """
    _check_language(lang)
    return _load(lang)


def generate_codename(lang: str = "en", words: int = CODENAME_WORDS) -> str:
    """Return ``words`` words drawn independently and uniformly from the list, space-separated."""
    if words < 1:
        raise ValueError(f"a codename needs at least one word, got {words}")
    choices = wordlist(lang)
    return " ".join(secrets.choice(choices) for _ in range(words))


def codename_bits(lang: str, words: int = CODENAME_WORDS) -> float:
    """Return the entropy in bits of a ``words``-word codename: ``words * log2(len(list))``."""
    if words < 1:
        raise ValueError(f"a codename needs at least one word, got {words}")
    return words * math.log2(len(wordlist(lang)))


def normalise_codename(text: str) -> str:
    """Return the canonical form of a typed codename, without checking it against any list.

    Compatibility-decomposes (NFKD, so fullwidth letters and ligatures become plain letters),
    case-folds, drops nonspacing marks (accents: "canción" -> "cancion"), and collapses all
    whitespace (spaces, tabs, newlines, no-break spaces; leading, trailing and repeated) into
    single spaces.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    # Case folding can itself produce precomposed or combining sequences, so decompose again.
    folded = unicodedata.normalize("NFKD", decomposed.casefold())
    stripped = "".join(ch for ch in folded if unicodedata.category(ch) != "Mn")
    return " ".join(stripped.split())


def fingerprint(data: bytes, count: int = 6) -> tuple[str, ...]:
    """Return ``count`` English words derived from SHA-256 of ``data``.

    The digest is read as a big-endian integer and written in base 7,776 (the EFF list size),
    least significant digit first; each digit picks one word. Six words carry ~77.5 bits of
    the digest. ``count`` may be 1 to 19 (19 base-7,776 digits fit in 256 bits).
    """
    if not 1 <= count <= _FINGERPRINT_MAX_WORDS:
        raise ValueError(f"count must be between 1 and {_FINGERPRINT_MAX_WORDS}, got {count}")
    words = wordlist("en")
    value = int.from_bytes(hashlib.sha256(data).digest(), "big")
    result: list[str] = []
    for _ in range(count):
        value, index = divmod(value, len(words))
        result.append(words[index])
    return tuple(result)
