"""`sala train` and `sala predict` end to end on a tiny recipe."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.worker.tiny import TINY
from worker.data import Renderer
from core.recipe import apply_patch
from worker.train_cli import app

runner = CliRunner()


def test_train_then_predict(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(apply_patch(TINY, {"training": {"max_epochs": 2}})), encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "completed" in result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and "val_cer" in rows[-1]["metrics"]
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert checkpoints and all(p.suffix == ".zst" for p in checkpoints)

    image = tmp_path / "line.png"
    Renderer(None, 32).render("កខ", random.Random(0)).image.save(image)
    latest = str(checkpoints[-1])
    result = runner.invoke(app, ["predict", "--checkpoint", latest, str(image)])
    assert result.exit_code == 0, result.output
    path, text, confidence = result.output.rstrip("\n").split("\t")
    assert path == str(image) and 0.0 <= float(confidence) <= 1.0

    result = runner.invoke(app, ["predict", "--checkpoint", latest, "--decoder", "beam"], input=f"{image}\n")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{image}\t")

    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--no-progress",
                                 "--resume", latest])
    assert result.exit_code == 0, result.output  # already at max_epochs: completes at once


def test_bad_recipe_and_missing_checkpoint_exit_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {batch_size: 0}\n", encoding="utf-8")
    assert runner.invoke(app, ["train", str(bad), "--out", str(tmp_path / "o")]).exit_code == 1
    result = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "nope.pt"), str(bad)])
    assert result.exit_code == 2
