import random

import pytest

from worker.data.khmer_words import WORDS
from worker.data.text import TextSource
from worker.khmer import cluster_problem, content_of, in_charset, normalize, segment


@pytest.mark.parametrize("content", ["characters", "combinations", "complex"])
def test_generated_clusters_are_valid_khmer_of_their_level(content):
    source, rng = TextSource(), random.Random(7)
    for _ in range(3000):
        text = source.sample(content, rng)
        assert normalize(text) == text and in_charset(text)
        assert len(segment(text)) == 1, text
        assert cluster_problem(text) is None, (text, cluster_problem(text))
        assert content_of(text) == content, text


def test_words_and_lines_are_normalised_and_in_charset():
    source, rng = TextSource(), random.Random(3)
    for content in ("words", "lines"):
        for _ in range(500):
            text = source.sample(content, rng)
            assert text and normalize(text) == text and in_charset(text)
            if content == "lines":
                assert len(text) <= source.max_line_chars


def test_builtin_words_are_clean():
    assert len(WORDS) >= 300
    assert all(normalize(w) == w and in_charset(w) for w in WORDS)


def test_corpus_replaces_builtin_words(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("សួស្តី\nខ្ញុំ ស្រឡាញ់ ភាសាខ្មែរ\nhello\n\n", encoding="utf-8")
    source, rng = TextSource(corpus), random.Random(0)
    assert set(source.words) == {"សួស្តី", "ខ្ញុំ", "ស្រឡាញ់", "ភាសាខ្មែរ"}
    assert source.lines == ["ខ្ញុំ ស្រឡាញ់ ភាសាខ្មែរ"]
    assert {source.sample("words", rng) for _ in range(50)} <= set(source.words)


def test_unknown_content_is_refused():
    with pytest.raises(ValueError, match="unknown content"):
        TextSource().sample("paragraphs", random.Random(0))
