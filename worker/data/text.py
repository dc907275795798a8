"""Stage-aware text sources, keyed by content name.

`characters`, `combinations` and `complex` are generated cluster by cluster
from spelling tables, so every cluster is valid Khmer (checked in the tests by
`worker.khmer.orthography`, written apart from these tables). `words` and
`lines` come from a user corpus (one word or line per text line, UTF-8) when
given, else from the built-in `khmer_words.WORDS`.
"""

from __future__ import annotations

import random
from pathlib import Path

from worker.data.khmer_words import WORDS
from worker.khmer import in_charset, level_of, normalize, segment

CONTENTS = ("characters", "combinations", "complex", "words", "lines")

CONSONANTS = [chr(c) for c in range(0x1780, 0x17A3)]
SUBSCRIPTS = [c for c in CONSONANTS if c not in "\u17a1\u178a"]  # LA has none; DA's is spelled as TA's
INDEPENDENT_VOWELS = [chr(c) for c in range(0x17A5, 0x17B4) if c != 0x17A8]
VOWELS = [chr(c) for c in range(0x17B6, 0x17C6)]
KHMER_DIGITS = [chr(c) for c in range(0x17E0, 0x17EA)]
PUNCTUATION = ["\u17d4", "\u17d5", "\u17d6", "\u17d7", "?", "!", "(", ")", "-", "."]
COENG, RO = "\u17d2", "\u179a"
# sign → vowels it is written with ("" = no vowel)
FINAL_SIGNS = {
    "\u17c6": ("", "\u17b6", "\u17bb"),  # NIKAHIT: ំ ាំ ុំ
    "\u17c7": ("", "\u17b6", "\u17b7", "\u17bb", "\u17c1", "\u17c2", "\u17c4"),  # REAHMUK
    "\u17cb": ("",), "\u17cd": ("",), "\u17cf": ("",), "\u17d0": ("",), "\u17c8": ("",),
}
SHIFTER_BASES = {"\u17c9": "ងញមយរវប", "\u17ca": "សហអប"}


def character(rng: random.Random) -> str:
    pool = rng.choices([CONSONANTS, INDEPENDENT_VOWELS, KHMER_DIGITS, PUNCTUATION], weights=[60, 20, 15, 5])[0]
    return rng.choice(pool)


def combination(rng: random.Random) -> str:
    """A consonant with one dependent vowel, or one sign or register shifter."""
    if rng.random() < 0.75:
        return rng.choice(CONSONANTS) + rng.choice(VOWELS)
    if rng.random() < 0.2:
        shifter = rng.choice(list(SHIFTER_BASES))
        return rng.choice(SHIFTER_BASES[shifter]) + shifter
    return rng.choice(CONSONANTS) + rng.choice(list(FINAL_SIGNS))


def complex_cluster(rng: random.Random) -> str:
    """A subscript stack (single, double with RO, or COENG-RO) or a shifter, with a vowel and sign."""
    if rng.random() < 0.15:
        shifter = rng.choice(list(SHIFTER_BASES))
        head = rng.choice(SHIFTER_BASES[shifter]) + shifter
        vowel = rng.choice(VOWELS)
    else:
        base = rng.choice(CONSONANTS)
        kind = rng.random()
        if kind < 0.2:
            subs = COENG + RO
        elif kind < 0.45:
            subs = COENG + rng.choice([c for c in SUBSCRIPTS if c != RO]) + COENG + RO
        else:
            subs = COENG + rng.choice(SUBSCRIPTS)
        head = base + subs
        vowel = rng.choice(VOWELS) if rng.random() < 0.8 else ""
    signs = [s for s, vowels in FINAL_SIGNS.items() if vowel in vowels]
    sign = rng.choice(signs) if signs and rng.random() < 0.4 else ""
    return head + vowel + sign


class TextSource:
    """Draws a label for any content name from a per-sample `random.Random`."""

    def __init__(self, corpus: str | Path | None = None, max_line_chars: int = 40) -> None:
        self.max_line_chars = max_line_chars
        self.words: list[str] = list(WORDS)
        self.lines: list[str] = []
        if corpus is not None:
            self._load_corpus(Path(corpus))

    def _load_corpus(self, path: Path) -> None:
        texts = [normalize(t) for t in path.read_text(encoding="utf-8").splitlines()]
        texts = [t for t in texts if t and in_charset(t)]
        words = list(dict.fromkeys(w for t in texts for w in t.split(" ") if level_of(w) >= 1))
        if not words:
            raise ValueError(f"corpus {path} holds no usable Khmer text")
        self.words = words
        self.lines = [t for t in texts if level_of(t) == 5]

    def sample(self, content: str, rng: random.Random) -> str:
        if content == "characters":
            return character(rng)
        if content == "combinations":
            return combination(rng)
        if content == "complex":
            return complex_cluster(rng)
        if content == "words":
            return rng.choice(self.words)
        if content == "lines":
            return self._line(rng)
        raise ValueError(f"unknown content {content!r}; expected one of {', '.join(CONTENTS)}")

    def _line(self, rng: random.Random) -> str:
        if self.lines and rng.random() < 0.5:
            return self._crop(rng.choice(self.lines), rng)
        parts = []
        for _ in range(rng.randint(2, 6)):
            parts.append(_number(rng) if rng.random() < 0.08 else rng.choice(self.words))
            parts.append(" " if rng.random() < 0.5 else "")
        parts[rng.randrange(0, len(parts) - 1, 2) + 1] = " "
        line = "".join(parts).strip()
        if rng.random() < 0.3:
            line += rng.choice(["\u17d4", "\u17d4", "\u17d6", "?", "!"])
        return self._crop(normalize(line), rng)

    def _crop(self, line: str, rng: random.Random) -> str:
        """At most `max_line_chars` code points, cut at cluster boundaries."""
        if len(line) <= self.max_line_chars:
            return line
        clusters = segment(line)
        start = rng.randrange(len(clusters))
        out = ""
        for c in clusters[start:]:
            if len(out) + len(c) > self.max_line_chars:
                break
            out += c
        return normalize(out) or clusters[start][: self.max_line_chars]


def _number(rng: random.Random) -> str:
    return "".join(rng.choice(KHMER_DIGITS) for _ in range(rng.randint(1, 4)))
