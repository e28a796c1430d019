"""Tests for app.words: the list files, codenames, normalisation and fingerprints."""

from __future__ import annotations

import collections
import hashlib
import math
import re
import secrets
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from app.words import (
    CODENAME_WORDS,
    LANGUAGES,
    codename_bits,
    fingerprint,
    generate_codename,
    normalise_codename,
    wordlist,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

LIST_SPECS = [
    # (lang, expected size, word pattern, first word, last word)
    ("en", 7776, r"[a-z]{4,9}", "aback", "zucchini"),
    ("es", 7776, r"[a-z]{4,9}", "abadesa", "zurdo"),
]


def _readme_hashes() -> dict[str, str]:
    readme = resources.files("app.words").joinpath("README.md").read_text(encoding="utf-8")
    found = re.findall(r"SHA-256 of `([a-z]+\.txt)`: `([0-9a-f]{64})`", readme)
    return dict(found)


# --- the vendored lists -------------------------------------------------------------------


def test_languages() -> None:
    assert LANGUAGES == ("en", "es")
    assert CODENAME_WORDS == 7


@pytest.mark.parametrize(("lang", "size", "pattern", "first", "last"), LIST_SPECS)
def test_list_size_uniqueness_charset(
    lang: str, size: int, pattern: str, first: str, last: str
) -> None:
    words_ = wordlist(lang)
    assert isinstance(words_, tuple)
    assert len(words_) == size
    assert len(set(words_)) == size
    bad = [w for w in words_ if re.fullmatch(pattern, w) is None]
    assert bad == []
    assert all(w.isascii() and w == w.strip() and " " not in w for w in words_)
    assert words_[0] == first
    assert words_[-1] == last


def _fingerprint_words() -> list[str]:
    text = resources.files("app.words").joinpath("fingerprint.txt").read_text(encoding="ascii")
    return text.split("\n")[:-1]


def test_fingerprint_hyphenated_words_are_the_known_four() -> None:
    assert sorted(w for w in _fingerprint_words() if "-" in w) == [
        "drop-down",
        "felt-tip",
        "t-shirt",
        "yo-yo",
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_words_are_plain_letters_4_to_9(lang: str) -> None:
    assert {len(w) for w in wordlist(lang)} <= set(range(4, 10))


def test_wordlist_is_cached() -> None:
    assert wordlist("en") is wordlist("en")
    assert wordlist("es") is wordlist("es")


def test_readme_lists_a_hash_for_every_language() -> None:
    assert set(_readme_hashes()) == {f"{name}.txt" for name in (*LANGUAGES, "fingerprint")}


@pytest.mark.parametrize("name", [*LANGUAGES, "fingerprint"])
def test_list_file_sha256_matches_readme(name: str) -> None:
    data = resources.files("app.words").joinpath(f"{name}.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == _readme_hashes()[f"{name}.txt"]
    # The file is exactly the list: one word per line, final newline, nothing else.
    words_ = wordlist(name) if name in LANGUAGES else tuple(_fingerprint_words())
    assert data == ("\n".join(words_) + "\n").encode("ascii")


@pytest.mark.parametrize("bad", ["fr", "", "EN", "en ", "es-ES", "../en"])
def test_unknown_language_raises(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown word list language"):
        wordlist(bad)
    with pytest.raises(ValueError, match="unknown word list language"):
        generate_codename(bad)
    with pytest.raises(ValueError, match="unknown word list language"):
        codename_bits(bad)


def test_module_imports_only_stdlib() -> None:
    """The air-gapped CLI imports app.words: it must not pull in any third-party module."""
    code = (
        "import sys\n"
        "import app.words\n"
        "names = {m.split('.')[0] for m in sys.modules}\n"
        "bad = sorted(n for n in names if n not in sys.stdlib_module_names"
        " and n not in ('app', '__main__', '_distutils_hack')"
        " and not n.startswith('__editable__'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


# --- entropy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "count", "expected"),
    [
        ("en", 7, 90.47),
        ("es", 7, 90.47),
        ("en", 1, 12.925),
        ("es", 1, 12.925),
        ("en", 6, 77.55),
    ],
)
def test_codename_bits(lang: str, count: int, expected: float) -> None:
    assert codename_bits(lang, count) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_default_codename_has_at_least_90_bits(lang: str) -> None:
    assert codename_bits(lang) >= 90
    assert codename_bits(lang) == CODENAME_WORDS * math.log2(len(wordlist(lang)))


@pytest.mark.parametrize("count", [0, -1])
def test_bits_and_codename_reject_non_positive_word_counts(count: int) -> None:
    with pytest.raises(ValueError, match="at least one word"):
        codename_bits("en", count)
    with pytest.raises(ValueError, match="at least one word"):
        generate_codename("en", count)


# --- codename generation ------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_generate_codename_shape(lang: str) -> None:
    codename = generate_codename(lang)
    parts = codename.split(" ")
    assert len(parts) == CODENAME_WORDS
    assert set(parts) <= set(wordlist(lang))
    assert codename == normalise_codename(codename)


def test_generate_codename_defaults_to_english_seven_words() -> None:
    parts = generate_codename().split(" ")
    assert len(parts) == 7
    assert set(parts) <= set(wordlist("en"))


@pytest.mark.parametrize("count", [1, 3, 12])
def test_generate_codename_word_count(count: int) -> None:
    assert len(generate_codename("es", count).split(" ")) == count


@pytest.mark.parametrize("lang", LANGUAGES)
def test_two_codenames_differ(lang: str) -> None:
    # Probability of a collision is 2**-90: not a flake.
    assert generate_codename(lang) != generate_codename(lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_generate_codename_is_uniform_smoke(lang: str) -> None:
    """Coarse uniformity check with failure probability far below 1e-9.

    168,000 words are drawn (24,000 seven-word codenames).

    * Every first letter that occurs in the list must occur in the sample. The rarest bucket
      is "x" in the en list (1 of 7,776 words): expected 21.6 hits, P(0 hits) < e**-21.6
      < 1e-9.
    * The list is cut into 16 equal index ranges; each must get its expected share within
      +-10%. Expected 10,500 each; by the Chernoff bound P(|X - mu| > 0.1 mu) <
      2 * exp(-0.01 * 10,500 / 3) = 2 * e**-35 per range.
    """
    words_ = wordlist(lang)
    index = {w: i for i, w in enumerate(words_)}
    draws = [w for _ in range(24_000) for w in generate_codename(lang).split(" ")]
    assert len(draws) == 168_000

    letters = collections.Counter(w[0] for w in draws)
    assert set(letters) == {w[0] for w in words_}

    buckets = collections.Counter(index[w] * 16 // len(words_) for w in draws)
    expected = len(draws) / 16
    assert set(buckets) == set(range(16))
    for bucket in range(16):
        assert 0.9 * expected < buckets[bucket] < 1.1 * expected, (bucket, buckets[bucket])


def test_generate_codename_uses_secrets_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_choice(seq: tuple[str, ...]) -> str:
        calls.append(len(seq))
        return seq[len(calls) - 1]

    monkeypatch.setattr(secrets, "choice", fake_choice)
    assert generate_codename("en", 3) == "aback abandon abbey"
    assert calls == [7776, 7776, 7776]


# --- normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abacus abdomen", "abacus abdomen"),
        ("canción", "cancion"),
        ("cancio\u0301n", "cancion"),  # already decomposed (NFD)
        ("ÁRBOL Ñandú pingüino", "arbol nandu pinguino"),
        ("CaNcIóN", "cancion"),
        ("Straße", "strasse"),
        ("T-Shirt", "t-shirt"),
        ("  abacus abdomen  ", "abacus abdomen"),
        ("abacus\tabdomen\nzoom", "abacus abdomen zoom"),
        ("abacus   \t\r\n  abdomen", "abacus abdomen"),
        ("\n\tabacus\n", "abacus"),
        ("abacus\u00a0abdomen\u3000zoom", "abacus abdomen zoom"),  # no-break, ideographic
        ("ＡＢＡＣＵＳ　ｚｏｏｍ", "abacus zoom"),  # fullwidth letters and space
        ("\ufb01esta", "fiesta"),  # "fi" ligature
        ("Ⅻ", "xii"),  # roman numeral compatibility form
        ("xyzzy notaword", "xyzzy notaword"),  # no validation against the lists
        ("", ""),
        (" \t\n ", ""),
    ],
)
def test_normalise_codename(raw: str, expected: str) -> None:
    assert normalise_codename(raw) == expected


@pytest.mark.parametrize("lang", LANGUAGES)
def test_normalise_is_identity_on_generated_and_idempotent(lang: str) -> None:
    codename = generate_codename(lang)
    assert normalise_codename(codename) == codename
    messy = "  " + codename.upper().replace(" ", " \t\n ") + "\n"
    assert normalise_codename(messy) == codename
    assert normalise_codename(normalise_codename(messy)) == codename


# --- fingerprints -------------------------------------------------------------------------


def test_fingerprint_known_answer() -> None:
    assert fingerprint(b"") == ("crop", "maggot", "prison", "traction", "giggling", "chaplain")


def test_fingerprint_is_deterministic() -> None:
    key = bytes(range(32))
    assert fingerprint(key) == fingerprint(key)
    assert fingerprint(key) == fingerprint(bytes(range(32)))


@pytest.mark.parametrize(
    ("a", "b"),
    [(b"a", b"b"), (b"", b"\x00"), (bytes(32), bytes(31) + b"\x01"), (b"key1", b"key2")],
)
def test_fingerprint_differs_for_different_inputs(a: bytes, b: bytes) -> None:
    assert fingerprint(a) != fingerprint(b)


@pytest.mark.parametrize("count", [1, 2, 6, 10, 19])
def test_fingerprint_count_and_words(count: int) -> None:
    result = fingerprint(b"public key", count)
    assert isinstance(result, tuple)
    assert len(result) == count
    assert set(result) <= set(_fingerprint_words())
    assert fingerprint(b"public key") == fingerprint(b"public key", 19)[:6]


@pytest.mark.parametrize("data", [b"", b"tipbox", bytes(range(256))])
def test_fingerprint_encodes_the_digest_in_base_7776(data: bytes) -> None:
    """Rebuild the number from the words: it is SHA-256(data) mod 7776**6."""
    index = {w: i for i, w in enumerate(_fingerprint_words())}
    value = sum(index[w] * 7776**i for i, w in enumerate(fingerprint(data)))
    assert value == int.from_bytes(hashlib.sha256(data).digest(), "big") % 7776**6


@pytest.mark.parametrize("count", [0, -1, 20])
def test_fingerprint_rejects_bad_count(count: int) -> None:
    with pytest.raises(ValueError, match="count must be between"):
        fingerprint(b"x", count)
