"""Scoring readings: code point and cluster CER, line accuracy, groups from label keys, bad folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from worker.evaluation import EvaluationError, Line, Reading, load_lines, score


def lines(*rows: tuple[str, dict[str, str]]) -> list[Line]:
    return [Line(Path(f"{i}.png"), text, groups) for i, (text, groups) in enumerate(rows)]


def test_code_point_and_cluster_errors_by_hand() -> None:
    truth = lines(("ក្រុង", {"font": "A"}), ("កខ គ", {"font": "B"}))
    # "ក្រង" drops the vowel U+17BB: 1 of 5 code points, and 1 of 2 clusters (ក្រុ -> ក្រ, ង).
    # "  កខ   គ " has its spaces collapsed and stripped, as labels do: exact.
    readings = [Reading("ក្រង", 0.010), Reading("  កខ   គ ", 0.030)]
    result = score(truth, readings)
    overall = result["overall"]
    assert overall["cer"] == pytest.approx(1 / 9) and overall["cluster_cer"] == pytest.approx(1 / 6)
    assert overall["line_accuracy"] == 0.5 and overall["ms_per_line"] == pytest.approx(20.0)
    assert result["by"]["font"]["A"]["cluster_cer"] == pytest.approx(1 / 2)
    assert result["by"]["font"]["B"]["cer"] == 0.0 and result["by"]["font"]["B"]["line_accuracy"] == 1.0


def test_readings_are_normalised_like_labels() -> None:
    truth = lines(("ក្រុង", {}))
    typed = "\u1780\u17bb\u17d2\u179a\u1784"  # the vowel typed before the subscript
    assert score(truth, [Reading(typed, 0.0)])["overall"]["line_accuracy"] == 1.0
    assert score(truth, [Reading("", 0.0)])["overall"]["cer"] == 1.0


def write_folder(folder: Path, rows: list[dict | str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(rows)):
        Image.new("L", (40, 16), 255).save(folder / f"{i}.png")
    text = "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows)
    (folder / "labels.jsonl").write_text(text + "\n", encoding="utf-8")
    return folder


def test_load_lines_keeps_group_keys_and_limits(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, [{"image": "0.png", "text": "ក  ខ", "font": "A", "set": "clean", "n": 3},
                                     {"image": "1.png", "text": "គ", "source": "scan"}])
    found, report = load_lines(folder)
    assert [(x.text, x.groups) for x in found] == [("ក ខ", {"font": "A", "set": "clean"}), ("គ", {"source": "scan"})]
    assert len(load_lines(folder, limit=1)[0]) == 1 and not report.bad


def test_bad_rows_are_an_error_naming_them_unless_skipped(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, [{"image": "0.png", "text": "ក"}, "not json", {"image": "gone.png", "text": "ខ"}])
    with pytest.raises(EvaluationError) as error:
        load_lines(folder)
    assert "line 2" in str(error.value) and "line 3: image file missing" in str(error.value)
    assert "--skip-bad" in str(error.value)
    found, report = load_lines(folder, skip_bad=True)
    assert [x.text for x in found] == ["ក"] and len(report.bad) == 2
    with pytest.raises(EvaluationError, match="no labels.jsonl"):
        load_lines(tmp_path / "nowhere")
