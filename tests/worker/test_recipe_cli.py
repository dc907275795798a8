"""`sala recipe init | validate | show` through the real `sala` app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sala.cli import app
from core.recipe import Recipe, dump_commented_yaml, load_recipe

EXAMPLE = Path(__file__).parents[1] / "fixtures" / "recipe.example.yaml"
runner = CliRunner()


def sala(*args: str):
    return runner.invoke(app, ["recipe", *args])


def test_init_prints_the_commented_default_to_stdout():
    result = sala("init")
    assert result.exit_code == 0
    assert result.stdout == dump_commented_yaml(Recipe())
    assert load_recipe(result.stdout) == Recipe()


def test_init_writes_a_file_and_refuses_to_overwrite_it(tmp_path):
    out = tmp_path / "recipe.yaml"
    assert sala("init", "--out", str(out)).exit_code == 0
    assert load_recipe(out) == Recipe()
    out.write_text("seed: 1\n")
    refused = sala("init", "--out", str(out))
    assert refused.exit_code == 1 and "--force" in refused.stderr
    assert out.read_text() == "seed: 1\n"
    assert sala("init", "--out", str(out), "--force").exit_code == 0
    assert load_recipe(out) == Recipe()


def test_the_large_preset_is_a_bigger_taller_model_that_runs(tmp_path):
    import torch

    from worker.trainer import build_model, model_config

    result = sala("init", "--preset", "large")
    assert result.exit_code == 0
    large, default = load_recipe(result.stdout), Recipe()
    assert large.model.image_height > default.model.image_height
    models = {r.model.image_height: build_model(model_config(r)) for r in (large, default)}
    sizes = {h: sum(p.numel() for p in m.parameters()) for h, m in models.items()}
    assert sizes[large.model.image_height] > 4 * sizes[default.model.image_height]
    out = models[large.model.image_height].eval()(torch.zeros(2, 1, large.model.image_height, 96), torch.tensor([96, 64]))
    assert out["logits"].shape[:2] == (24, 2)
    unknown = sala("init", "--preset", "huge")
    assert unknown.exit_code == 1 and "presets: default, large" in unknown.stderr


def test_validate_ok_prints_a_summary():
    result = sala("validate", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK\n")
    assert "5 judged on val_sequence_accuracy" in result.stdout
    assert "200 per epoch" in result.stdout and "character_recognition" in result.stdout


def test_validate_lists_every_problem_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "training: {accumulation_steps: 12, precision: fp8}\n"
        "model: {hiden_size: 3}\n"
        "curriculum:\n  stages:\n    - {name: a, content: words, success_threshold: 2}\n"
    )
    result = sala("validate", str(bad))
    assert result.exit_code == 1
    for path in ("training.accumulation_steps", "training.precision", "model.hiden_size",
                 "curriculum.stages[0].success_threshold"):
        assert f"  {path}: " in result.stderr
    assert "4 problem(s)" in result.stderr


def test_validate_missing_file_exits_2(tmp_path):
    result = sala("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_validate_unparsable_file_exits_2(tmp_path):
    for name, text in (("broken.yaml", "a: [unclosed\n"), ("list.yaml", "- 1\n- 2\n")):
        path = tmp_path / name
        path.write_text(text)
        result = sala("validate", str(path))
        assert result.exit_code == 2, result.output
        assert name in result.stderr


def test_show_prints_the_fully_defaulted_recipe_as_json(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"seed": 9}))
    result = sala("show", str(path))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["seed"] == 9 and len(shown["curriculum"]["stages"]) == 5
    assert Recipe.model_validate(shown) == Recipe(seed=9)


def test_show_refuses_an_invalid_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optimizer: {lr: -1}\n")
    result = sala("show", str(path))
    assert result.exit_code == 1 and "optimizer.lr" in result.stderr
