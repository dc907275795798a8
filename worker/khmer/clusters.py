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

from enum import IntEnum

COENG = "\u17d2"
RO = "\u179a"
SHIFTERS = "\u17c9\u17ca"  # MUUSIKATOAN, TRIISAP
ROBAT = "\u17cc"


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


class Part(IntEnum):
    """Kinds of cluster parts, numbered in their canonical order."""

    BASE = 0
    SUBSCRIPT = 1
    SUBSCRIPT_RO = 2
    SHIFTER = 3
    VOWEL = 4
    SIGN = 5
    LONE_COENG = 6


def parts(cluster: str) -> list[tuple[Part, str]]:
    """Split one cluster into (kind, text) parts; a subscript part is COENG + letter."""
    out: list[tuple[Part, str]] = []
    i = 0
    while i < len(cluster):
        ch = cluster[i]
        if ch == COENG:
            if i + 1 < len(cluster) and is_letter(cluster[i + 1]):
                kind = Part.SUBSCRIPT_RO if cluster[i + 1] == RO else Part.SUBSCRIPT
                out.append((kind, cluster[i : i + 2]))
                i += 2
                continue
            out.append((Part.LONE_COENG, ch))
        elif ch in SHIFTERS:
            out.append((Part.SHIFTER, ch))
        elif is_dependent_vowel(ch):
            out.append((Part.VOWEL, ch))
        elif is_mark(ch):
            out.append((Part.SIGN, ch))
        else:
            out.append((Part.BASE, ch))
        i += 1
    return out


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
