"""Character categories for the hierarchical classification task.

Every code point of a normalised label gets one category, so a category
sequence is aligned one-to-one with the CTC label sequence. A COENG and the
letter after it are both SUBSCRIPT. Index 0 is reserved for the CTC blank, as
in the charset; the numbering is stable (append, never renumber).
"""

from __future__ import annotations

from enum import IntEnum

from worker.khmer.clusters import COENG, is_consonant, is_dependent_vowel, is_letter, is_sign


class Category(IntEnum):
    BLANK = 0
    CONSONANT = 1
    INDEPENDENT_VOWEL = 2
    SUBSCRIPT = 3
    DEPENDENT_VOWEL = 4
    SIGN = 5
    DIGIT = 6
    PUNCTUATION = 7  # punctuation, Khmer symbols and anything else
    SPACE = 8
    LATIN = 9


NUM_CATEGORIES = len(Category)


def category_of(ch: str) -> Category:
    """Category of one code point out of context (a consonant counts as a base)."""
    if is_consonant(ch):
        return Category.CONSONANT
    if is_letter(ch):
        return Category.INDEPENDENT_VOWEL
    if ch == COENG:
        return Category.SUBSCRIPT
    if is_dependent_vowel(ch):
        return Category.DEPENDENT_VOWEL
    if is_sign(ch):
        return Category.SIGN
    if ch.isdigit() or "\u17f0" <= ch <= "\u17f9":
        return Category.DIGIT
    if ch.isspace():
        return Category.SPACE
    if ch.isascii() and ch.isalpha():
        return Category.LATIN
    return Category.PUNCTUATION


def categorize(text: str) -> list[int]:
    """Category index of every code point; the letter after a COENG is SUBSCRIPT."""
    cats = [int(category_of(ch)) for ch in text]
    for i in range(1, len(text)):
        if text[i - 1] == COENG and is_letter(text[i]):
            cats[i] = int(Category.SUBSCRIPT)
    return cats
