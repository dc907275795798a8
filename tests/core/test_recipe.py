"""The recipe contract: defaults, every invalid field reported at its path, round trips."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from core.recipe import (
    Recipe,
    RecipeError,
    RecipeParseError,
    UnknownStageError,
    apply_patch,
    dump_commented_yaml,
    error_path,
    format_errors,
    load_recipe,
)

EXAMPLE = Path(__file__).parents[1] / "fixtures" / "recipe.example.yaml"


def stage(name: str, **kw) -> dict:
    return {"name": name, "content": "words", "success_threshold": 0.5, **kw}


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(RecipeError) as info:
        load_recipe(data)
    return info.value.problems


def paths(data: dict) -> list[str]:
    return [path for path, _ in problems(data)]


def test_empty_recipe_is_the_example_recipe():
    assert load_recipe(EXAMPLE) == Recipe() == Recipe.model_validate({}) == load_recipe("{}")


def test_default_recipe_trains_easiest_first_on_many_fonts_and_judges_on_held_out_ones():
    r = Recipe()
    stages = r.curriculum.stages
    assert [s.content for s in stages] == ["characters", "combinations", "complex", "words", "lines"]
    assert r.data.synthetic.fonts == ["noto-sans-khmer", "system"] and r.validation.fonts == ["held-out"]
    assert stages[0].replay == 0 and all(s.replay > 0 for s in stages[1:])  # later stages keep reading earlier content
    assert all(s.min_epochs <= s.max_epochs for s in stages)
    assert r.tasks[0].type == "character_recognition" and r.loss.distillation is None
    assert r.checkpoint.best_metric == "val_cer" and r.auto_apply == []


def test_resources_default_to_one_process_and_are_bounded():
    assert Recipe().resources.world_size == 1
    assert load_recipe({"resources": {"processes_per_node": 2, "nodes": 3}}).resources.world_size == 6
    for bad in ({"processes_per_node": 0}, {"nodes": 65}, {"gpus": 2}, {"nodes": 1.5}):
        with pytest.raises(RecipeError) as caught:
            load_recipe({"resources": bad})
        assert "resources." in str(caught.value)


def test_recipe_module_does_not_import_torch():
    code = "import sys, core.recipe; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0


INVALID = [
    ({"curriculum": {"stages": [stage("a"), stage("b"), stage("c", success_threshold=1.5)]}},
     "curriculum.stages[2].success_threshold"),
    ({"training": {"accumulation_steps": 9}}, "training.accumulation_steps"),
    ({"training": {"accumulation_steps": 0}}, "training.accumulation_steps"),
    ({"tasks": [{"type": "character_recognition"}, {"type": "ocr"}]}, "tasks[1].type"),
    ({"model": {"hiden_size": 128}}, "model.hiden_size"),
    ({"curriculum": {"stages": [stage("a"), stage("b"), stage("a")]}}, "curriculum.stages[2].name"),
    ({"curriculum": {"stages": [stage("a", min_epochs=9, max_epochs=4)]}}, "curriculum.stages[0].max_epochs"),
    ({"curriculum": {"metric": "val_accuracy"}}, "curriculum.metric"),
    ({"curriculum": {"stages": [stage("a", metric="bleu")]}}, "curriculum.stages[0].metric"),
    ({"tasks": [{"type": "confidence_prediction"}]}, "tasks"),
    ({"tasks": [{"type": "character_recognition", "enabled": False}]}, "tasks"),
    ({"tasks": [{"type": "character_recognition"}, {"type": "character_recognition"}]}, "tasks[1].type"),
    ({"optimizer": {"lr": -0.1}}, "optimizer.lr"),
    ({"training": {"precision": "fp8"}}, "training.precision"),
    ({"checkpoint": {"best_metric": "accuracy"}}, "checkpoint.best_metric"),
    ({"checkpoint": {"compression": "gzip"}}, "checkpoint.compression"),
    ({"scheduler": {"name": "cosine"}}, "scheduler.name"),
    ({"curriculum": {"stages": [stage("a", content="paragraphs")]}}, "curriculum.stages[0].content"),
    ({"curriculum": {"stages": [stage("a", lr_multiplier=0)]}}, "curriculum.stages[0].lr_multiplier"),
    ({"curriculum": {"stages": [stage("a", replay=1.2)]}}, "curriculum.stages[0].replay"),
    ({"curriculum": {"stages": []}}, "curriculum.stages"),
    ({"loss": {"distillation": {"teacher_run": "r1", "alpha": 2}}}, "loss.distillation.alpha"),
    ({"loss": {"distillation": {"temperature": 2}}}, "loss.distillation.teacher_run"),
    ({"auto_apply": ["plateau", "coffee"]}, "auto_apply[1]"),
    ({"auto_apply": ["plateau", "plateau"]}, "auto_apply[1]"),
    ({"data": {"synthetic": None}}, "data.synthetic"),
    ({"training": {"device": "tpu"}}, "training.device"),
    ({"colour": "blue"}, "colour"),
    ({"model": {"image_height": 40}}, "model.image_height"),
    ({"model": {"conv_channels": [64, 128, 256, 256, 512, 512]}}, "model.conv_channels"),
    ({"model": {"conv_channels": [32, 64, 128]}}, "model.conv_channels"),
]


@pytest.mark.parametrize(("data", "path"), INVALID, ids=[p for _, p in INVALID])
def test_invalid_recipe_reports_the_field_path(data, path):
    assert paths(data) == [path]


def test_every_problem_is_reported_not_just_the_first():
    bad = {"optimizer": {"lr": 0}, "training": {"precision": "fp8"}, "model": {"hiden_size": 1}}
    assert sorted(paths(bad)) == ["model.hiden_size", "optimizer.lr", "training.precision"]


def test_model_shape_messages_say_how_to_fix_it():
    (_, height), = problems({"model": {"image_height": 40}})
    assert "multiple of 16" in height and "40" in height
    (_, channels), = problems({"model": {"conv_channels": [8, 16]}})
    assert "exactly 4" in channels and "got 2" in channels


def test_default_model_is_the_sized_crnn():
    m = Recipe().model
    assert (m.image_height, m.conv_channels, m.hidden_size, m.lstm_layers) == (32, [32, 64, 128, 256], 128, 2)


def test_messages_say_what_is_wrong():
    (_, message), = problems({"curriculum": {"stages": [stage("x"), stage("x")]}})
    assert message == "duplicate stage name 'x'"
    (_, message), = problems({"curriculum": {"metric": "nope"}})
    assert "unknown metric 'nope'" in message and "val_cer" in message


def test_format_errors_roots_paths_under_a_prefix():
    class Body(BaseModel):
        recipe: Recipe

    with pytest.raises(ValidationError) as info:
        Body.model_validate({"recipe": {"curriculum": {"stages": [stage("a"), stage("a")]}}})
    assert format_errors(info.value) == [
        {"path": "recipe.curriculum.stages[1].name", "message": "duplicate stage name 'a'"}
    ]


def test_error_path_formats_indices():
    assert error_path(("curriculum", "stages", 2, "name")) == "curriculum.stages[2].name"
    assert error_path(("tasks",), "[1].type") == "tasks[1].type"
    assert error_path(("data",), "synthetic") == "data.synthetic"


def test_commented_yaml_round_trips_the_default():
    text = dump_commented_yaml(Recipe())
    assert load_recipe(text) == Recipe()
    assert "# micro-batches per optimizer step (1-8)\n  accumulation_steps: 1" in text


def test_commented_yaml_round_trips_a_custom_recipe():
    custom = load_recipe({
        "name": "odd: name # with 'quotes' and ខ្មែរ",
        "optimizer": {"name": "sgd", "lr": 3e-5, "betas": [0.5, 0.6]},
        "scheduler": {"restart_epochs": None, "plateau_min_lr": 1e-9},
        "data": {"synthetic": {"fonts": ["a font.ttf", "true", "123"], "corpus": "corpus/khmer.txt"},
                 "folders": ["/data/real"]},
        "curriculum": {"metric": "val_cer", "stages": [stage("only", success_threshold=0.1, metric="val_loss")]},
        "loss": {"distillation": {"teacher_run": 42, "checkpoint": "latest"}, "hard_example_mining": None},
        "validation": {"fonts": ["held-out"]},
        "auto_apply": ["plateau", "nonfinite_steps"],
    })
    text = dump_commented_yaml(custom)
    assert load_recipe(text) == custom
    assert custom.loss.distillation.teacher_run == "42"
    assert yaml.safe_load(text)["optimizer"]["lr"] == 3e-5


def test_every_line_of_the_commented_yaml_has_a_comment_above_its_key():
    lines = dump_commented_yaml().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith(("#", "- ")):
            assert lines[i - 1].lstrip().startswith("#"), line


def test_json_and_yaml_text_and_paths_load(tmp_path):
    data = {"seed": 7, "training": {"batch_size": 8}}
    (tmp_path / "r.json").write_text(json.dumps(data))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    for source in (json.dumps(data), yaml.safe_dump(data), tmp_path / "r.json", str(tmp_path / "r.yaml")):
        assert load_recipe(source).seed == 7
    assert load_recipe("data: {synthetic: {corpus: words.yaml}}").data.synthetic.corpus == "words.yaml"
    with pytest.raises(FileNotFoundError):
        load_recipe("missing.yaml")


@pytest.mark.parametrize("text", ["[1, 2]", "name: [unclosed", "just a string",
                                  "training: &t {max_epochs: 3}\nvalidation: *t\n"])
def test_unparsable_or_non_mapping_text_is_a_parse_error(text):
    with pytest.raises(RecipeParseError):
        load_recipe(text)


def test_apply_patch_deep_merges_without_mutating():
    base = Recipe().model_dump(mode="json")
    before = copy.deepcopy(base)
    patch = {"optimizer": {"lr": 1e-4}, "scheduler": {"restart_epochs": 7}, "data": {"folders": ["x"]}}
    merged = apply_patch(base, patch)
    assert base == before
    r = load_recipe(merged)
    assert r.optimizer.lr == 1e-4 and r.optimizer.name == "adamw"
    assert r.scheduler.restart_epochs == 7 and r.scheduler.warmup_epochs == Recipe().scheduler.warmup_epochs
    assert r.data.folders == ["x"] and r.data.synthetic is not None


def test_stage_index_by_name_and_index():
    r = Recipe()
    assert r.stage_index("word_level") == 3
    assert r.stage_index(0) == 0
    for bad in ("nope", 5, -1, True):
        with pytest.raises(UnknownStageError):
            r.stage_index(bad)
