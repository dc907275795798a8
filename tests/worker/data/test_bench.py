"""`sala data bench`: reproducible, held-out text in held-out fonts, clean and degraded, as people have them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from worker.data.bench import HEIGHT, SETS, held_out_designs, write_bench
from worker.data.fonts import MISDRAWN
from worker.data.corpus import load_corpus
from worker.data.fonts import HELD_OUT, plan
from worker.data.real import scan_folder
from worker.data.text import TextSource
from core.recipe import Recipe

runner = CliRunner()
LINES = 6


@pytest.fixture(scope="module")
def text() -> TextSource:
    return TextSource()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worker.data.cli import app

    out = tmp_path_factory.mktemp("bench")
    result = runner.invoke(app, ["bench", "--out", str(out), "--lines", str(LINES), "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


def labels(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "labels.jsonl").read_text("utf-8").splitlines()]


def test_the_same_seed_writes_the_same_files(bench: Path, tmp_path: Path, text: TextSource) -> None:
    write_bench(tmp_path / "again", lines=LINES, seed=3, text=text)
    for s in SETS:
        files = sorted(p.name for p in (bench / s).iterdir())
        assert files == sorted(p.name for p in (tmp_path / "again" / s).iterdir()) and len(files) == LINES + 1
        assert all((bench / s / f).read_bytes() == (tmp_path / "again" / s / f).read_bytes() for f in files)
    write_bench(tmp_path / "other", lines=LINES, seed=4, text=text)
    assert labels(tmp_path / "other" / "clean") != labels(bench / "clean")


def test_both_sets_share_text_and_font_and_read_back_as_real_data(bench: Path) -> None:
    clean, degraded = labels(bench / "clean"), labels(bench / "degraded")
    assert [(r["image"], r["text"], r["font"]) for r in clean] == [(r["image"], r["text"], r["font"]) for r in degraded]
    assert {r["set"] for r in clean} == {"clean"} and {r["set"] for r in degraded} == {"degraded"}
    for s in SETS:
        report = scan_folder(bench / s)
        assert len(report.rows) == LINES and not report.bad
    for row in clean:
        a, b = (np.asarray(Image.open(bench / s / row["image"])) for s in SETS)
        assert b.shape[0] == HEIGHT < a.shape[0]  # the degraded crop has margins of its own
        grey = [((x > 32) & (x < 224)).mean() for x in (a, b)]  # blur, noise, paper: far more grey
        assert grey[1] > 2 * grey[0]


def test_lines_are_dark_ink_on_light_paper_with_margins(bench: Path) -> None:
    for row in labels(bench / "clean"):
        a = np.asarray(Image.open(bench / "clean" / row["image"]))
        assert a.ndim == 2 and np.median(a) > 200 and a.min() < 100  # paper light, ink dark
        ink_rows = np.flatnonzero((a < 128).any(axis=1))
        assert ink_rows[0] > 0 and ink_rows[-1] < a.shape[0] - 1  # paper above and below the text


def test_fonts_are_the_held_out_designs_in_equal_shares_and_never_train(bench: Path) -> None:
    rows = labels(bench / "clean")
    designs = held_out_designs()
    assert Counter(r["font"] for r in rows) == {d: LINES // len(designs) for d in designs}
    faces = {f.name: f for f in plan(None, [HELD_OUT]).val}
    assert all(r["face"] in faces and faces[r["face"]].design == r["font"] for r in rows)
    assert not any(r["face"].startswith(MISDRAWN) for r in rows)
    default = Recipe()
    trained = plan(default.data.synthetic.fonts, default.validation.fonts).train
    assert not {f.design for f in trained} & set(designs)


def made_of(text: str, words: set[str], longest: int) -> bool:
    """Can every Khmer letter of `text` be covered by `words`, other characters standing alone?"""
    ok = [True] + [False] * len(text)
    for end in range(1, len(text) + 1):
        ch = text[end - 1]
        alone = ok[end - 1] and not "\u1780" <= ch <= "\u17d3"  # digits, punctuation, Latin, spaces
        ok[end] = alone or any(ok[start] and text[start:end] in words for start in range(max(0, end - longest), end))
    return ok[-1]


def test_khmer_words_are_held_out_corpus_words(tmp_path: Path, text: TextSource) -> None:
    written = write_bench(tmp_path, lines=40, seed=9, text=text)
    corpus = load_corpus()
    held_out = set(corpus.held_out_words)
    longest = max(map(len, held_out))
    assert all(made_of(line.text, held_out, longest) for line in written)
    trained = set(corpus.words)
    assert not all(made_of(line.text, trained, max(map(len, trained))) for line in written)


def test_words_variant(tmp_path: Path, text: TextSource) -> None:
    written = write_bench(tmp_path, lines=3, seed=1, content="words", text=text)
    assert all(" " not in line.text for line in written) and (tmp_path / "degraded" / written[0].name).is_file()
