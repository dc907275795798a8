import random

import pytest

from worker.data.khmer_words import WORDS
from worker.data.text import LATIN_WORDS, REPEAT, TextSource
from worker.khmer import cluster_problem, content_of, in_charset, normalize, segment
from worker.khmer.clusters import is_consonant


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


def test_a_user_corpus_replaces_the_bundled_one(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("សួស្តី\nខ្ញុំ ស្រឡាញ់ ភាសាខ្មែរ\nhello\n\n", encoding="utf-8")
    source, rng = TextSource(corpus), random.Random(0)
    assert set(source.corpus.words + source.corpus.held_out_words) == {"សួស្តី", "ខ្ញុំ", "ស្រឡាញ់", "ភាសាខ្មែរ"}
    assert source.corpus.lines + source.corpus.held_out_lines == ["ខ្ញុំ ស្រឡាញ់ ភាសាខ្មែរ"]
    drawn = [source.sample("words", rng) for _ in range(200)]
    assert {w.removesuffix(REPEAT) for w in drawn if is_consonant(w[0])} == set(source.words)


def test_lines_mix_numbers_punctuation_and_latin_words_as_real_text_does():
    source, rng = TextSource(), random.Random(9)
    lines = [source.sample("lines", rng) for _ in range(1000)]
    joined = "".join(lines)
    assert all(" " in line and content_of(line) == "lines" for line in lines)
    assert any(ch in joined for ch in "0123456789") and any(ch in joined for ch in "០១២៣៤៥៦៧៨៩")
    for mark in ("\u17d4", "\u17d6", REPEAT, "(", "«", "“"):
        assert mark in joined, mark
    latin = [t for line in lines for t in line.split(" ") if t in LATIN_WORDS]
    assert 10 <= len(latin) <= 200  # now and then, not everywhere


def test_training_never_draws_held_out_words_and_validation_draws_only_them():
    source, rng = TextSource(), random.Random(4)
    train = {source.sample("words", rng) for _ in range(3000)}
    val = {source.sample("words", rng, "val") for _ in range(3000)}
    assert not train & set(source.corpus.held_out_words)
    held_out = set(source.corpus.held_out_words)
    assert all(w in held_out or w.removesuffix(REPEAT) in held_out for w in val if is_consonant(w[0]))


def test_unknown_content_is_refused():
    with pytest.raises(ValueError, match="unknown content"):
        TextSource().sample("paragraphs", random.Random(0))
