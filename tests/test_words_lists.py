"""The codename word lists: common, inoffensive, easy to write down and read back (issue 10)."""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path

import pytest

from app.words import CODENAME_WORDS, LANGUAGES, wordlist
from app.words.build import Blocklist, read_words

# Smallest list that keeps a 7-word codename at 90 bits: ceil(2 ** (90 / 7)) = 7,420. (Issue 10
# said 7,353, but 7 * log2(7353) is 89.91.)
MIN_SIZE = 7420

# The examples named in issue 10, each in the list where it was found.
OFFENDERS = {
    "en": ["impotent", "mammogram", "coroner"],
    "es": ["andrea", "marta", "floyd", "hughes", "bilbao", "boston", "comte", "full"],
}
# People and places are wrong in either list.
NAMES = ["andrea", "marta", "floyd", "hughes", "bilbao", "boston", "comte"]


def test_min_size_is_the_smallest_for_90_bits() -> None:
    assert CODENAME_WORDS * math.log2(MIN_SIZE) >= 90
    assert CODENAME_WORDS * math.log2(MIN_SIZE - 1) < 90


@pytest.mark.parametrize("lang", LANGUAGES)
def test_seven_words_carry_90_bits(lang: str) -> None:
    assert len(wordlist(lang)) >= MIN_SIZE
    assert CODENAME_WORDS * math.log2(len(wordlist(lang))) >= 90


@pytest.mark.parametrize("lang", LANGUAGES)
def test_words_are_4_to_9_plain_lowercase_letters(lang: str) -> None:
    bad = [w for w in wordlist(lang) if not (w.isascii() and w.isalpha() and w.islower())]
    assert bad == []
    assert {len(w) for w in wordlist(lang)} <= set(range(4, 10))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_sorted_and_unique_without_accents(lang: str) -> None:
    words = wordlist(lang)
    assert list(words) == sorted(set(words))
    plain = {
        "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
        for w in words
    }
    assert len(plain) == len(words)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_word_starts_another(lang: str) -> None:
    """Prefix-free: "flow" and "flower" never share a list, so a misread ending stays an error."""
    words = wordlist(lang)  # sorted: a word that starts another sorts right before it
    clashes = [(a, b) for a, b in zip(words, words[1:], strict=False) if b.startswith(a)]
    assert clashes == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_blocklisted_word(lang: str) -> None:
    blocklist = Blocklist.read(lang)
    assert len(blocklist.words) > 200
    assert blocklist.stems
    assert blocklist.ends
    assert [w for w in wordlist(lang) if blocklist.blocks(w)] == []


@pytest.mark.parametrize(("lang", "word"), [(k, w) for k, v in OFFENDERS.items() for w in v])
def test_named_offenders_are_gone(lang: str, word: str) -> None:
    assert word not in wordlist(lang)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("word", NAMES)
def test_no_names_in_any_list(lang: str, word: str) -> None:
    assert word not in wordlist(lang)


@pytest.mark.parametrize(
    ("entry", "word", "blocked"),
    [
        ("kill*", "killer", True),
        ("kill*", "skill", False),
        ("*itis", "colitis", True),
        ("*itis", "itisy", False),
        ("corpse", "corpse", True),
        ("corpse", "corpses", False),
    ],
)
def test_blocklist_entry_forms(tmp_path: Path, entry: str, word: str, blocked: bool) -> None:
    path = tmp_path / "list.txt"
    path.write_text(f"# comment {word}\n{entry} other  # trailing\n", encoding="utf-8")
    entries = read_words(path)
    assert entries == {entry, "other"}
    block = Blocklist(
        frozenset(e for e in entries if "*" not in e),
        tuple(e[:-1] for e in entries if e.endswith("*")),
        tuple(e[1:] for e in entries if e.startswith("*")),
    )
    assert block.blocks(word) is blocked


def test_names_blocklist_applies_to_both_lists() -> None:
    names = read_words(Blocklist.path("names"))
    assert names
    for lang in LANGUAGES:
        assert names <= Blocklist.read(lang).words
