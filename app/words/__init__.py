"""Word lists for source codenames and for reading key fingerprints aloud.

A source's codename is the only credential it has: it is shown once, when the first tip is
submitted, and must be typed back to read replies. It is made of words drawn independently and
uniformly (:func:`secrets.choice`) from one of two lists, built by ``build.py`` (``make words``)
from word frequencies, dictionaries and reviewed blocklists:

* ``en`` and ``es``: 7,776 common, inoffensive words each, 4 to 9 plain letters, no word the
  start of another; ``log2(7776)`` ~= 12.925 bits per word, so seven words carry ~90.47 bits.

That is the figure an attacker must brute-force offline against a stolen codename hash.

Login never depends on these lists: :func:`normalise_codename` checks no word, so a codename
drawn from an older list, or from the other language's list, logs in on any page. Whatever
the lists become, the normalisation (and so every derived key) must not change.

:func:`fingerprint` turns a SHA-256 digest into English words two people can read to each other
to check a copied public key: six words carry ``6 * log2(7776)`` ~= 77.5 bits of the digest.
It reads ``fingerprint.txt``, the EFF list that was ``en`` before issue 10, frozen: a newsroom
publishes its fingerprint, and new words after an upgrade would look to sources like a new key.

Origin, method, licences and SHA-256 of the files are in ``README.md`` next to this module.

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

# Expected size and allowed word shape of each list file. The frozen EFF list has four
# hyphenated words (drop-down, felt-tip, t-shirt, yo-yo), so it allows hyphens between letters.
_FINGERPRINT = "fingerprint"
_EXPECTED_COUNT: dict[str, int] = {"en": 7776, "es": 7776, _FINGERPRINT: 7776}
_WORD_PATTERN: dict[str, re.Pattern[str]] = {
    "en": re.compile(r"[a-z]{4,9}"),
    "es": re.compile(r"[a-z]{4,9}"),
    _FINGERPRINT: re.compile(r"[a-z]+(?:-[a-z]+)*"),
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
    the digest. ``count`` may be 1 to 19 (19 base-7,776 digits fit in 256 bits). The words
    come from the frozen EFF list (``fingerprint.txt``), never from the codename lists, so a
    published fingerprint survives any change to those.
    """
    if not 1 <= count <= _FINGERPRINT_MAX_WORDS:
        raise ValueError(f"count must be between 1 and {_FINGERPRINT_MAX_WORDS}, got {count}")
    words = _load(_FINGERPRINT)
    value = int.from_bytes(hashlib.sha256(data).digest(), "big")
    result: list[str] = []
    for _ in range(count):
        value, index = divmod(value, len(words))
        result.append(words[index])
    return tuple(result)
