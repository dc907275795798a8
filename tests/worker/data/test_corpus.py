import gzip
import shutil
from pathlib import Path

import pytest

from worker.data.corpus import (
    BUNDLED_CORPUS, TESSDATA_KHM, CorpusError, build_corpus, is_held_out, load_corpus, read_texts,
)
from worker.khmer import in_charset, normalize

HAVE_TESSERACT = bool(shutil.which("combine_tessdata") and shutil.which("dawg2wordlist")) and Path(TESSDATA_KHM).is_file()


def test_the_bundled_corpus_has_thirty_thousand_clean_words_and_a_held_out_part():
    corpus = load_corpus()
    words = corpus.words + corpus.held_out_words
    assert len(set(words)) >= 30_000
    assert all(w == normalize(w) and in_charset(w) and " " not in w for w in words)
    assert not set(corpus.words) & set(corpus.held_out_words)
    share = len(corpus.held_out_words) / len(words)
    assert 0.03 < share < 0.07
    assert all(is_held_out(w) for w in corpus.held_out_words)


@pytest.mark.skipif(not HAVE_TESSERACT, reason="tesseract-ocr-khm and its tools are not installed")
def test_the_bundled_corpus_is_what_sala_data_corpus_builds(tmp_path):
    out = tmp_path / "words.txt.gz"
    report = build_corpus(out, tessdata=TESSDATA_KHM)
    assert report.kept >= 30_000 and report.read > report.kept
    assert read_texts(out) == read_texts(BUNDLED_CORPUS)


def test_a_corpus_from_text_files_is_normalised_deduplicated_and_filtered(tmp_path):
    text = tmp_path / "mine.txt"
    # the second line is the first typed in another order; the third has no Khmer; the last a Cyrillic letter
    text.write_text("ស្ត្រី\nស្រ្តី\nhello world\n\nខ្ញុំ ទៅ ផ្សារ\nកЖ\n", encoding="utf-8")
    out = tmp_path / "corpus.txt"
    report = build_corpus(out, texts=[text], builtin=False)
    assert out.read_text(encoding="utf-8").splitlines() == sorted(["ស្ត្រី", "ខ្ញុំ ទៅ ផ្សារ"])
    assert report.read == 6 and report.kept == 2
    assert report.dropped == {"duplicate": 1, "no Khmer": 1, "empty": 1, "outside the alphabet": 1}


def test_gzip_corpora_are_byte_for_byte_reproducible(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("ភាសា\nខ្មែរ\n", encoding="utf-8")
    build_corpus(tmp_path / "a.txt.gz", texts=[text], builtin=False)
    build_corpus(tmp_path / "b.txt.gz", texts=[text], builtin=False)
    assert (tmp_path / "a.txt.gz").read_bytes() == (tmp_path / "b.txt.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.txt.gz").read_bytes()).decode() == "ខ្មែរ\nភាសា\n"


def test_unusable_corpora_are_refused_with_a_reason(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("hello\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no usable Khmer"):
        load_corpus(empty)
    with pytest.raises(CorpusError, match="cannot be read"):
        load_corpus(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match="is not a file"):
        build_corpus(tmp_path / "x.txt", tessdata=tmp_path / "none.traineddata")
