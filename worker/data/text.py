"""Stage-aware text sources, keyed by content name.

`characters`, `combinations` and `complex` are generated cluster by cluster
from spelling tables, so every cluster is valid Khmer (checked in the tests by
`worker.khmer.orthography`, written apart from these tables). `words` and
`lines` come from a corpus (`worker.data.corpus`): the bundled one, or a user's
file of one word or line per text line.
"""

from __future__ import annotations

import random
from pathlib import Path

from worker.data.corpus import Corpus, load_corpus
from worker.khmer import normalize, segment

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


# Latin words as Khmer text quotes them: names, places, brands, units and abbreviations.
LATIN_WORDS = """
ASEAN UN WHO NGO UNESCO UNICEF CEO ID TV SMS PDF USB GPS VAT GDP km kg cm mm ml USD KHR AM PM
COVID-19 Wi-Fi e-mail email online internet website app Facebook Google YouTube TikTok Telegram
Messenger Zoom Microsoft Windows Apple iPhone Samsung Android Toyota Honda Lexus Visa ABA ACLEDA
Wing Cambodia Khmer Angkor Wat Phnom Penh Siem Reap Battambang Kampot Kep Takeo Kandal Mekong Tonle
Sap Sihanoukville Bangkok Vietnam Thailand Laos China Japan Korea France America Paris Tokyo
Mr Mrs Ms Dr No Tel Fax www com org Hotel Restaurant Coffee Mart Bank Co Ltd Plc Inc Group Center
OK Hello Thank you the and of for in on to from with new news sport music movie video photo
""".split()
RIEL, REPEAT = "\u17db", "\u17d7"
SENTENCE_ENDS = ("\u17d4", "\u17d4", "\u17d4", "\u17d5", "\u17d6", "?", "!")
BRACKETS = (("(", ")"), ("(", ")"), ("[", "]"), ("«", "»"), ("“", "”"), ('"', '"'), ("\u2018", "\u2019"))


def number(rng: random.Random) -> str:
    """A number as Khmer text writes it: Khmer or Latin digits, grouped, decimal, a date, a time, a price."""
    digits = KHMER_DIGITS if rng.random() < 0.65 else list("0123456789")
    def run(n: int) -> str:
        return "".join(rng.choice(digits) for _ in range(n))
    kind = rng.random()
    if kind < 0.45:
        return run(rng.randint(1, 4))
    if kind < 0.6:
        return run(rng.randint(1, 3)) + "," + run(3)
    if kind < 0.7:
        return run(rng.randint(1, 3)) + "." + run(rng.randint(1, 2))
    if kind < 0.8:
        return f"{run(2)}/{run(2)}/{run(4)}"
    if kind < 0.87:
        return f"{run(rng.randint(1, 2))}:{run(2)}"
    if kind < 0.94:
        return run(rng.randint(1, 3)) + "%"
    return run(rng.randint(3, 6)) + RIEL


class TextSource:
    """Draws a label for any content name from a per-sample `random.Random`.

    Words and lines come from a corpus (the bundled one unless `corpus` names a file); training
    draws its training part and validation (`split="val"`) its held-out part. Lines mix words as
    real Khmer text does: phrases without spaces between words, spaces between phrases, numbers,
    punctuation, brackets and quotes, and now and then a Latin word.
    """

    def __init__(self, corpus: str | Path | Corpus | None = None, max_line_chars: int = 40) -> None:
        self.max_line_chars = max_line_chars
        self.corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)

    @property
    def words(self) -> list[str]:
        return self.corpus.words

    @property
    def lines(self) -> list[str]:
        return self.corpus.lines

    def sample(self, content: str, rng: random.Random, split: str = "train") -> str:
        if content == "characters":
            return character(rng)
        if content == "combinations":
            return combination(rng)
        if content == "complex":
            return complex_cluster(rng)
        if content == "words":
            return self._word(rng, split)
        if content == "lines":
            return self._line(rng, split)
        raise ValueError(f"unknown content {content!r}; expected one of {', '.join(CONTENTS)}")

    def _word(self, rng: random.Random, split: str) -> str:
        kind = rng.random()
        if kind < 0.04:
            return number(rng)
        if kind < 0.07:
            return rng.choice(LATIN_WORDS)
        word = rng.choice(self.corpus.pools(split)[0])
        return word + REPEAT if kind < 0.09 else word

    def _token(self, rng: random.Random, words: list[str]) -> tuple[str, bool]:
        """A word, number or Latin word; the flag says it stands apart (Latin words are spaced)."""
        kind = rng.random()
        if kind < 0.07:
            return number(rng), rng.random() < 0.5
        if kind < 0.10:
            return rng.choice(LATIN_WORDS), True
        word = rng.choice(words)
        if kind < 0.14:
            left, right = rng.choice(BRACKETS)
            return left + word + right, False
        return (word + REPEAT if kind < 0.17 else word), False

    def _line(self, rng: random.Random, split: str) -> str:
        """Phrases of words written together, spaces between phrases, cut to `max_line_chars` at a token."""
        words, lines = self.corpus.pools(split)
        if lines and rng.random() < 0.5:
            return self._crop(rng.choice(lines), rng)
        for _ in range(5):  # a first phrase that fills the line leaves no space: draw again
            line = self._phrases(rng, words)
            if " " in line:
                break
        if rng.random() < 0.35 and len(line) < self.max_line_chars:
            line += rng.choice(SENTENCE_ENDS)
        return normalize(line)

    def _phrases(self, rng: random.Random, words: list[str]) -> str:
        line, apart = "", False
        for phrase in range(rng.randint(2, 5)):
            for k in range(rng.randint(1, 3)):
                token, spaced = self._token(rng, words)
                sep = " " if line and (k == 0 or spaced or apart) else ""
                if len(line) + len(sep) + len(token) > self.max_line_chars:
                    break
                line, apart = line + sep + token, spaced
        return line or self._crop(token, rng)

    def _crop(self, line: str, rng: random.Random) -> str:
        """At most `max_line_chars` code points from a word start (or any cluster of a line without spaces)."""
        if len(line) <= self.max_line_chars:
            return line
        clusters = segment(line)
        starts = [i for i, c in enumerate(clusters) if i == 0 or clusters[i - 1] == " "]
        start = rng.choice(starts) if len(starts) > 1 else rng.randrange(len(clusters))
        out = ""
        for c in clusters[start:]:
            if len(out) + len(c) > self.max_line_chars:
                break
            out += c
        return normalize(out) or clusters[start][: self.max_line_chars]

