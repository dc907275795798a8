import pytest

from worker.khmer import (
    BLANK, CHARACTERS, CHARSET_VERSION, NUM_CLASSES, Category, categorize, cluster_problem, content_of, decode, encode, segment,
)
from worker.khmer.charset import CHAR_TO_INDEX


def test_charset_indices_are_stable_and_blank_is_zero():
    assert BLANK == 0 and NUM_CLASSES == len(CHARACTERS) + 1
    # changing the alphabet breaks every checkpoint: these pins make it a deliberate act
    assert CHARSET_VERSION == "bbef58b1cf1c"
    assert CHAR_TO_INDEX["\u1780"] == 91 and NUM_CLASSES == 244
    assert "\u17de" not in CHARACTERS and "\u19e0" in CHARACTERS and " " in CHARACTERS
    assert decode(encode("ស្ត្រី ១២")) == "ស្ត្រី ១២"


@pytest.mark.parametrize(
    "text, clusters",
    [
        ("ស្ត្រី", ["ស្ត្រី"]),
        ("ប្រទេសកម្ពុជា", ["ប្រ", "ទេ", "ស", "ក", "ម្ពុ", "ជា"]),
        ("ខ្ញុំ ទៅ", ["ខ្ញុំ", " ", "ទៅ"]),
        ("ឱ្យ។", ["ឱ្យ", "។"]),
        ("\u17b6ក", ["\u17b6", "ក"]),
    ],
)
def test_segment(text, clusters):
    assert segment(text) == clusters


def test_categories_align_with_labels():
    text = "ខ្ញុំ ឥ១."
    assert categorize(text) == [
        Category.CONSONANT, Category.SUBSCRIPT, Category.SUBSCRIPT, Category.DEPENDENT_VOWEL, Category.SIGN,
        Category.SPACE, Category.INDEPENDENT_VOWEL, Category.DIGIT, Category.PUNCTUATION,
    ]


@pytest.mark.parametrize(
    "text, content",
    [("ក", "characters"), ("១", "characters"), ("កា", "combinations"), ("ប៉", "combinations"),
     ("ក្ក", "complex"), ("ប៉ុះ", "complex"), ("កម្ពុជា", "words"), ("ខ្ញុំ ទៅ", "lines"),
     ("កខគឃងចឆជឈញដ", "lines"), ("", None)],
)
def test_content_of(text, content):
    assert content_of(text) == content


@pytest.mark.parametrize("cluster", ["ក", "ស្ត្រី", "ខ្ញុំ", "ប៊ី", "ម៉ោះ", "ឱ្យ", "ក់", "ទាំ", "៣"])
def test_valid_clusters(cluster):
    assert cluster_problem(cluster) is None


@pytest.mark.parametrize(
    "cluster", ["ក្ឡ", "ក្រ្ត", "ក្ក្ក", "កិា", "ក៉", "ស្ត៊", "កេំ", "ក់ា", "ឥា", "ក្ខ្ខ", "\u17b6"],
)
def test_invalid_clusters(cluster):
    assert cluster_problem(cluster) is not None
