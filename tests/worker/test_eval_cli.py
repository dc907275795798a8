"""`sala eval` end to end: a tiny trained checkpoint scored on folders whose answer is known by construction."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sala.cli import app
from tests.worker.tiny import ScriptedController, tiny_recipe
from worker.checkpoints import load_checkpoint, serialize
from worker.data import Renderer
from worker.khmer import BLANK, encode, normalize, segment
from worker.khmer.charset import is_khmer
from worker.train_cli import Reader
from worker.trainer import Trainer

runner = CliRunner()
KHMEROS = Path("/usr/share/fonts/truetype/khmeros/KhmerOS.ttf")
TEXTS = ["ក", "កខ", "សួស្តី", "ភ្នំពេញ", "ខ្មែរ ១២៣", "ប្រទេស", "រៀន", "ទឹក", "ផ្ទះ", "ច័ន្ទ"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny recipe trained one epoch, as the trainer saved it, with KA's bias raised over the blank's.

    A model trained for the seconds a test can afford reads every line as nothing (all blank), and a
    label needs Khmer, so its labels could not equal its readings; this one reads a KA for each run
    of frames, through the real checkpoint loading, reader and decoder.
    """
    out = tmp_path_factory.mktemp("tiny")
    threads = torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = "1"  # the trainer keeps the thread count it finds (2 spin on a shared box)
    torch.set_num_threads(1)
    try:
        controller = ScriptedController()
        Trainer(tiny_recipe(training={"max_epochs": 1}), controller, out).run()
    finally:
        os.environ.pop("OMP_NUM_THREADS")
        torch.set_num_threads(threads)
    state = load_checkpoint(str(controller.checkpoints[-1].uri))
    bias = state["model"]["heads.character_recognition.proj.bias"]
    bias[BLANK] -= 50.0
    bias[encode("ក")[0]] += 50.0
    path = out / "reads-ka.pt"
    path.write_bytes(serialize(state, compress=False))
    return str(path)


def render_folder(folder: Path) -> list[tuple[Path, str]]:
    """Line images in two fonts; returns (image, font) pairs. Labels are written by the tests."""
    folder.mkdir(parents=True, exist_ok=True)
    renderers = [Renderer(None, 32), Renderer([KHMEROS], 32)]
    out = []
    for i, text in enumerate(TEXTS):
        rendered = renderers[i % 2].render(text, random.Random(i))
        rendered.image.save(folder / f"{i}.png")
        out.append((folder / f"{i}.png", rendered.font))
    return out


def other_consonant(text: str) -> str:
    return next(c for c in "ឃឈឍឞឡអ" if c not in text)


def test_eval_scores_a_folder_with_a_known_answer(tmp_path: Path, checkpoint: str) -> None:
    images = render_folder(tmp_path)
    reader = Reader(checkpoint, decoder="greedy")
    rows, expected = [], {}
    for i, (image, font) in enumerate(images):
        read = normalize(reader.read(image)[0])
        kind = i % 3 if any(map(is_khmer, read)) else 1 + i % 2  # a label needs Khmer
        if kind == 0:  # the label is the reading
            label, errors, cluster_errors = read, 0, 0
        elif kind == 1:  # the reading misses k trailing characters: k insertions
            k = 1 + i % 3
            label = (read + " " + "ក" * k).strip()
            errors, cluster_errors = len(label) - len(read), len(segment(label)) - len(segment(read))
        else:  # nothing in common: the longer length
            label = other_consonant(read) * (2 + i % 4)
            errors, cluster_errors = max(len(label), len(read)), max(len(label), len(segment(read)))
        rows.append({"image": image.name, "text": label, "font": font})
        total = expected.setdefault(font, [0, 0, 0, 0, 0, 0])
        for j, v in enumerate((errors, len(label), cluster_errors, len(segment(label)), label == read, 1)):
            total[j] += v
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")

    result = runner.invoke(app, ["eval", "--checkpoint", checkpoint, str(tmp_path), "--decoder", "greedy",
                                 "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["readers"]["sala"]
    assert set(scores["by"]["font"]) == set(expected) and len(expected) == 2
    for font, (errors, chars, cluster_errors, clusters, exact, n) in expected.items():
        got = scores["by"]["font"][font]
        assert (got["lines"], got["char_errors"], got["cluster_errors"], got["exact"]) == (n, errors, cluster_errors, exact)
        assert got["cer"] == pytest.approx(errors / chars) and got["cluster_cer"] == pytest.approx(cluster_errors / clusters)
        assert got["line_accuracy"] == pytest.approx(exact / n)
    sums = [sum(v[j] for v in expected.values()) for j in range(6)]
    assert scores["overall"]["cer"] == pytest.approx(sums[0] / sums[1])
    assert scores["overall"]["line_accuracy"] == pytest.approx(sums[4] / sums[5]) and 0 < sums[4] < sums[5]

    table = runner.invoke(app, ["eval", "--checkpoint", checkpoint, str(tmp_path), "--decoder", "greedy",
                                "--limit", "4", "--no-progress"])
    assert table.exit_code == 0 and "4 lines" in table.output and "cluster CER" in table.output


def test_bad_folders_and_checkpoints_exit_with_the_reason(tmp_path: Path, checkpoint: str) -> None:
    result = runner.invoke(app, ["eval", "--checkpoint", checkpoint, str(tmp_path / "none"), "--no-progress"])
    assert result.exit_code == 1 and "no labels.jsonl" in result.output
    render_folder(tmp_path)
    (tmp_path / "labels.jsonl").write_text('{"image": "0.png", "text": "ក"}\n{"image": "9.png"}\n', "utf-8")
    result = runner.invoke(app, ["eval", "--checkpoint", checkpoint, str(tmp_path), "--no-progress"])
    assert result.exit_code == 1 and "line 2" in result.output and "--skip-bad" in result.output
    result = runner.invoke(app, ["eval", "--checkpoint", checkpoint, str(tmp_path), "--skip-bad", "--json",
                                 "--no-progress"])
    assert result.exit_code == 0 and json.loads(result.stdout)["skipped_bad_rows"] == 1
    result = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "nope.pt"), str(tmp_path), "--skip-bad"])
    assert result.exit_code == 2 and "cannot load" in result.output


def test_tesseract_missing_is_a_clear_error(tmp_path: Path, checkpoint: str, monkeypatch) -> None:
    render_folder(tmp_path)
    (tmp_path / "labels.jsonl").write_text('{"image": "0.png", "text": "ក"}\n', "utf-8")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = runner.invoke(app, ["eval", "--checkpoint", checkpoint, str(tmp_path), "--tesseract", "--no-progress"])
    assert result.exit_code == 1 and "tesseract is not installed" in result.output


needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None
    or "khm" not in subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.split(),
    reason="needs tesseract with khm data")


@needs_tesseract
def test_tesseract_is_scored_on_the_same_lines(tmp_path: Path, checkpoint: str) -> None:
    bench = tmp_path / "bench"
    assert runner.invoke(app, ["data", "bench", "--out", str(bench), "--lines", "3", "--seed", "4"]).exit_code == 0
    readings = tmp_path / "readings.jsonl"
    result = runner.invoke(app, ["eval", "--checkpoint", checkpoint, str(bench / "clean"), "--tesseract", "--json",
                                 "--readings", str(readings), "--no-progress"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["readers"]
    rows = [json.loads(line) for line in readings.read_text("utf-8").splitlines()]
    for row in rows:  # what tesseract says on its own, line by line
        alone = subprocess.run(["tesseract", row["image"], "stdout", "-l", "khm", "--psm", "7"],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert row["tesseract"] == alone
    assert scores["tesseract"]["overall"]["lines"] == 3 and scores["tesseract"]["overall"]["cer"] < 0.5
    assert set(scores["tesseract"]["by"]["font"]) == {r["font"] for r in rows}
    assert scores["tesseract"]["overall"]["ms_per_line"] > 0
