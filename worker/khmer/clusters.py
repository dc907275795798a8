"""Khmer cluster (orthographic syllable) segmentation.

A cluster is one base followed by the marks written on, under or after it:

    cluster = base (COENG letter)* mark*

A *base* is any character that is not a mark: a consonant, an independent
vowel, a digit, punctuation, a space or any other character. ``COENG
letter`` is a subscript (U+17D2 followed by a consonant or independent
vowel). Marks are the dependent vowels, the register shifters and the
diacritic signs. Marks at the start of a text form a base-less cluster of
their own; nothing is ever dropped here (dropping is `normalize`'s job).
"""

from __future__ import annotations

COENG = "\u17d2"


def is_consonant(ch: str) -> bool:
    return "\u1780" <= ch <= "\u17a2"


def is_letter(ch: str) -> bool:
    """A consonant or an independent vowel: what may follow a COENG."""
    return "\u1780" <= ch <= "\u17b3"


def is_dependent_vowel(ch: str) -> bool:
    return "\u17b6" <= ch <= "\u17c5"


def is_sign(ch: str) -> bool:
    """Diacritic signs, register shifters included (U+17C6–U+17D1, U+17D3, U+17DD)."""
    return "\u17c6" <= ch <= "\u17d1" or ch in "\u17d3\u17dd"


def is_mark(ch: str) -> bool:
    """Anything that attaches to the preceding base (COENG and invisible vowels included)."""
    return is_dependent_vowel(ch) or is_sign(ch) or ch in "\u17d2\u17b4\u17b5"


def segment(text: str) -> list[str]:
    """Split text into clusters; ``"".join(segment(t)) == t`` always holds."""
    clusters: list[str] = []
    i, n = 0, len(text)
    while i < n:
        start = i
        if not is_mark(text[i]):
            i += 1
        while i < n:
            if text[i] == COENG and i + 1 < n and is_letter(text[i + 1]):
                i += 2
            elif is_mark(text[i]):
                i += 1
            else:
                break
        clusters.append(text[start:i])
    return clusters
