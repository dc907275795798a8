"""The recogniser's alphabet and its stable index mapping for CTC.

Index 0 is the CTC blank. Indices 1.. follow the sorted code points of
``CHARACTERS``; the list is fixed in code (not derived from data), so a
checkpoint's output layer means the same thing in every run. Only assigned
code points of the Khmer blocks are included, with ASCII digits, Latin letters,
common punctuation and the space. ``CHARSET_VERSION`` is a short
hash of the alphabet that checkpoints can record and compare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

BLANK = 0

KHMER_CONSONANTS = "".join(chr(c) for c in range(0x1780, 0x17A3))
KHMER_INDEPENDENT_VOWELS = "".join(chr(c) for c in range(0x17A3, 0x17B4))
KHMER_DEPENDENT_VOWELS = "".join(chr(c) for c in range(0x17B6, 0x17C6))
KHMER_SIGNS = "".join(chr(c) for c in range(0x17C6, 0x17D4)) + "\u17dd"
KHMER_INHERENT = "\u17b4\u17b5"
KHMER_PUNCTUATION = "".join(chr(c) for c in range(0x17D4, 0x17DD))
KHMER_DIGITS = "".join(chr(c) for c in range(0x17E0, 0x17EA))
KHMER_NUMERAL_SIGNS = "".join(chr(c) for c in range(0x17F0, 0x17FA))
KHMER_SYMBOLS = "".join(chr(c) for c in range(0x19E0, 0x1A00))
ASCII_DIGITS = "0123456789"
# Khmer text quotes Latin names, units and abbreviations (ASEAN, km, COVID-19).
LATIN_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PUNCTUATION = ".,:;!?'\"()[]{}-/%&+*=#@<>«»‘’“”…–—"
SPACE = " "

KHMER_BLOCK = (
    KHMER_CONSONANTS + KHMER_INDEPENDENT_VOWELS + KHMER_INHERENT + KHMER_DEPENDENT_VOWELS
    + KHMER_SIGNS + KHMER_PUNCTUATION + KHMER_DIGITS + KHMER_NUMERAL_SIGNS
)

CHARACTERS: str = "".join(sorted(set(
    KHMER_BLOCK + KHMER_SYMBOLS + ASCII_DIGITS + LATIN_LETTERS + PUNCTUATION + SPACE
)))
CHAR_TO_INDEX: dict[str, int] = {ch: i + 1 for i, ch in enumerate(CHARACTERS)}
INDEX_TO_CHAR: dict[int, str] = {i: ch for ch, i in CHAR_TO_INDEX.items()}
NUM_CLASSES = len(CHARACTERS) + 1
CHARSET_VERSION = hashlib.sha256(CHARACTERS.encode()).hexdigest()[:12]


def is_khmer(ch: str) -> bool:
    """True for a code point of the Khmer or Khmer Symbols blocks."""
    return "\u1780" <= ch <= "\u17ff" or "\u19e0" <= ch <= "\u19ff"


def in_charset(text: str) -> bool:
    return all(ch in CHAR_TO_INDEX for ch in text)


def encode(text: str) -> list[int]:
    """Label indices of an already normalised text; raises KeyError on an unknown character."""
    return [CHAR_TO_INDEX[ch] for ch in text]


def decode(indices: Iterable[int]) -> str:
    """Text of label indices; blanks are dropped (no CTC collapsing here)."""
    return "".join(INDEX_TO_CHAR[i] for i in indices if i != BLANK)
