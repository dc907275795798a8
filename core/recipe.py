"""The training recipe: the one contract the server and the worker both validate.

Every field has a default, so `Recipe()` is the default Khmer recipe. Like all of `core`, it
does not import torch: the server validates recipes without it.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Metrics a recipe may name: the worker reports these every epoch (which way each improves:
# `core.metrics.lower_is_better`).
METRICS: tuple[str, ...] = (
    "val_sequence_accuracy",
    "val_character_accuracy",
    "val_cer",
    "val_loss",
    "val_perplexity",
    "train_sequence_accuracy",
    "train_character_accuracy",
    "train_cer",
    "train_loss",
)

# Recommendations the curriculum policy can make; a recipe opts in to applying them automatically.
RECOMMENDATION_KINDS: tuple[str, ...] = (
    "plateau",
    "overfitting",
    "threshold_unreachable",
    "nonfinite_steps",
)

TASK_TYPES: tuple[str, ...] = (
    "character_recognition",
    "confidence_prediction",
    "hierarchical_classification",
    "sequence_segmentation",
    "language_modeling",
)

Content = Literal["characters", "combinations", "complex", "words", "lines"]
TaskType = Literal[
    "character_recognition",
    "confidence_prediction",
    "hierarchical_classification",
    "sequence_segmentation",
    "language_modeling",
]
RecommendationKind = Literal["plateau", "overfitting", "threshold_unreachable", "nonfinite_steps"]


def _known_metric(name: str) -> str:
    if name not in METRICS:
        raise PydanticCustomError(
            "unknown_metric", "unknown metric '{name}'; known: {known}",
            {"name": name, "known": ", ".join(METRICS)},
        )
    return name


def _as_str(value: Any) -> Any:
    """Run ids and checkpoint ids may arrive as JSON numbers; they are names here."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _problem(message: str, at: str) -> PydanticCustomError:
    """An error that points below the validator's own location (`at` is appended to the path)."""
    return PydanticCustomError("recipe", message.replace("{", "{{").replace("}", "}}"), {"at": at})


MetricName = Annotated[str, AfterValidator(_known_metric)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
IdString = Annotated[str, BeforeValidator(_as_str), Field(min_length=1, max_length=200)]


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, so typos never pass silently; no
    number may be NaN or infinite (JSON has neither, but Python's parser reads both)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class ModelSpec(Section):
    arch: Literal["crnn"] = Field("crnn", description="recogniser: conv backbone + BiLSTM + CTC")
    image_height: int = Field(
        32, ge=16, le=256, description="pixel height lines are scaled to (a multiple of 16: four pools halve it)"
    )
    hidden_size: int = Field(128, ge=16, le=4096, description="BiLSTM hidden units per direction")
    conv_channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [32, 64, 128, 256],
        description="output channels of each of the four conv blocks (exactly 4 entries)",
    )
    lstm_layers: int = Field(2, ge=1, le=8, description="stacked BiLSTM layers")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout between recurrent layers")

    @field_validator("image_height")
    @classmethod
    def _height_pools(cls, height: int) -> int:
        """The CRNN halves the height four times and keeps what is left as features."""
        if height % 16:
            raise _problem(
                f"image_height must be a multiple of 16 (the backbone halves it four times); got {height}, "
                f"try {max(16, round(height / 16) * 16)}", "",
            )
        return height

    @field_validator("conv_channels")
    @classmethod
    def _four_blocks(cls, channels: list[int]) -> list[int]:
        if len(channels) != 4:
            raise _problem(
                f"conv_channels must list exactly 4 widths, one per conv block of the CRNN "
                f"(e.g. [32, 64, 128, 256]); got {len(channels)}", "",
            )
        return channels


class SyntheticData(Section):
    fonts: list[Name] = Field(
        default_factory=lambda: ["noto-sans-khmer", "system"], min_length=1, max_length=256,
        description="noto-sans-khmer (bundled), system (every Khmer font fontconfig lists), or paths to "
                    ".ttf/.otf files or folders; validation designs are always left out",
    )
    corpus: str | None = Field(
        None, description="UTF-8 text file (or .gz) of Khmer words/lines for word and line stages; null = the "
                          "bundled corpus (33,000 words)"
    )


class DataSpec(Section):
    synthetic: SyntheticData | None = Field(
        default_factory=SyntheticData, description="rendered training text; null = real data only"
    )
    folders: list[Name] = Field(
        default_factory=list, max_length=256, description="real data: folders of images + labels.jsonl"
    )
    workers: int = Field(2, ge=0, le=64, description="DataLoader worker processes")

    @model_validator(mode="after")
    def _has_a_source(self) -> DataSpec:
        """A run with neither synthetic nor real data would fail only once a worker starts it."""
        if self.synthetic is None and not self.folders:
            raise _problem("no training data: set data.synthetic or list data.folders", "synthetic")
        return self


class TrainingSpec(Section):
    batch_size: int = Field(64, ge=1, le=8192, description="samples per forward pass")
    steps_per_epoch: int = Field(
        200, ge=1, le=1_000_000, description="optimizer steps per epoch (synthetic data never runs out)"
    )
    max_epochs: int = Field(130, ge=1, le=100_000, description="hard limit on epochs for the whole run")
    accumulation_steps: int = Field(1, ge=1, le=8, description="micro-batches per optimizer step (1-8)")
    grad_clip_norm: float | None = Field(5.0, gt=0.0, description="clip gradient norm to this; null = off")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto | fp32 | bf16 | fp16 (fp16 uses loss scaling)"
    )
    nonfinite_patience: int = Field(
        10, ge=1, le=100_000, description="non-finite steps in a row before telling the controller"
    )
    max_rollbacks: int = Field(
        2, ge=0, le=20,
        description="after non-finite losses pile up, roll back to the last checkpoint with half the lr "
                    "this many times; then fail the run",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto | cpu | cuda")


class OptimizerSpec(Section):
    name: Literal["adamw", "adam", "sgd"] = Field("adamw", description="adamw | adam | sgd")
    lr: float = Field(2e-3, gt=0.0, le=10.0, description="base learning rate")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="L2 / decoupled weight decay")
    betas: tuple[Fraction, Fraction] = Field((0.9, 0.999), description="Adam betas (adam, adamw)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="momentum (sgd)")


class SchedulerSpec(Section):
    name: Literal["warmup_cosine", "curriculum_aware", "plateau", "gradual_warmup", "constant"] = Field(
        "warmup_cosine", description="warmup_cosine | curriculum_aware | plateau | gradual_warmup | constant"
    )
    warmup_epochs: int = Field(1, ge=0, le=10_000, description="linear warmup length")
    restart_epochs: int | None = Field(
        None, ge=1, le=100_000, description="cosine restart period (T_0); null = one cosine over the run"
    )
    min_lr_ratio: Fraction = Field(0.01, description="cosine floor as a fraction of the base lr")
    plateau_metric: MetricName = Field("val_loss", description="metric the plateau scheduler watches")
    plateau_patience: int = Field(3, ge=0, le=10_000, description="plateau: epochs without improvement")
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0, description="plateau: lr multiplier on a plateau")
    plateau_min_lr: float = Field(1e-6, ge=0.0, description="plateau: lr never goes below this")
    rewarmup_epochs: int = Field(
        1, ge=0, le=10_000, description="curriculum_aware: warmup again after each stage change"
    )


class StageSpec(Section):
    """One curriculum stage. It names its data by `content`, never by position, so a recipe may
    list any stages in any order and the worker still knows what to render."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        description="unique stage name (letters, digits, _ . -)"
    )
    content: Content = Field(description="characters | combinations | complex | words | lines")
    success_threshold: Fraction = Field(description="advance when the metric reaches this (0-1)")
    min_epochs: int = Field(1, ge=0, le=100_000, description="epochs before the stage may advance")
    max_epochs: int = Field(30, ge=1, le=100_000, description="forced move after this many epochs")
    patience: int = Field(
        5, ge=1, le=100_000, description="forced move after this many epochs without improvement"
    )
    augmentation: Fraction = Field(0.3, description="probability of augmenting a sample (0-1)")
    lr_multiplier: float = Field(1.0, gt=0.0, le=100.0, description="stage multiplier on the scheduled lr")
    replay: Fraction = Field(0.0, description="share of each batch drawn from earlier stages' content")
    metric: MetricName | None = Field(None, description="overrides curriculum.metric for this stage")

    @model_validator(mode="after")
    def _epochs_ordered(self) -> StageSpec:
        if self.min_epochs > self.max_epochs:
            raise _problem(
                f"max_epochs ({self.max_epochs}) is less than min_epochs ({self.min_epochs})", "max_epochs"
            )
        return self


def _stage(name: str, content: str, metric: str | None, *row: float) -> StageSpec:
    keys = ("success_threshold", "min_epochs", "max_epochs", "patience", "augmentation", "lr_multiplier", "replay")
    return StageSpec(name=name, content=content, metric=metric, **dict(zip(keys, row, strict=True)))


def default_stages() -> list[StageSpec]:
    """The five Khmer stages, from single characters to whole lines, judged on held-out fonts.

    Thresholds come from measured runs (docs/TRAINING.md, "Choosing the stage rules"): single
    characters and clusters are judged on exact reads; complex clusters, words and lines on CER,
    since one wrong mark in a long line says little about how well it reads. Later stages replay
    earlier content so the final model still reads it.
    """
    return [
        _stage("single_character", "characters", None, 0.60, 2, 12, 3, 0.3, 1.0, 0.0),
        _stage("simple_combinations", "combinations", "val_cer", 0.25, 2, 8, 3, 0.4, 1.0, 0.1),
        _stage("complex_combinations", "complex", "val_cer", 0.30, 2, 8, 3, 0.5, 0.9, 0.15),
        _stage("word_level", "words", "val_cer", 0.15, 2, 15, 4, 0.6, 0.8, 0.2),
        _stage("multi_word", "lines", "val_cer", 0.08, 3, 40, 6, 0.6, 0.7, 0.2),
    ]


class CurriculumSpec(Section):
    metric: MetricName = Field("val_sequence_accuracy", description="metric each stage is judged on")
    stages: list[StageSpec] = Field(
        default_factory=default_stages, min_length=1, max_length=64, description="stages, in training order"
    )

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[StageSpec]) -> list[StageSpec]:
        """Stages are addressed by name over HTTP, so a name must pick exactly one."""
        seen: set[str] = set()
        for i, stage in enumerate(stages):
            if stage.name in seen:
                raise _problem(f"duplicate stage name {stage.name!r}", f"[{i}].name")
            seen.add(stage.name)
        return stages


class TaskSpec(Section):
    type: TaskType = Field(description="task head: " + " | ".join(TASK_TYPES))
    weight: float = Field(1.0, ge=0.0, le=100.0, description="loss weight (start value when adaptive)")
    enabled: bool = Field(True, description="false keeps the entry but trains without it")


def default_tasks() -> list[TaskSpec]:
    weights = (1.0, 0.3, 0.5, 0.2, 0.2)
    return [TaskSpec(type=t, weight=w) for t, w in zip(TASK_TYPES, weights, strict=True)]


class HierarchicalLoss(Section):
    base: float = Field(1.0, ge=0.0, description="weight of the base-character level")
    modifier: float = Field(0.5, ge=0.0, description="weight of the vowel/sign level")
    combination: float = Field(0.3, ge=0.0, description="weight of the whole-cluster level")


class ConfidenceLoss(Section):
    weight: float = Field(0.2, ge=0.0, description="weight of the confidence loss")
    uncertainty_threshold: Fraction = Field(0.5, description="confidence below this counts as uncertain")


class HardExampleMining(Section):
    keep_ratio: float = Field(0.7, gt=0.0, le=1.0, description="share of hardest samples kept per batch")


class Distillation(Section):
    teacher_run: IdString = Field(description="run id whose checkpoint teaches")
    teacher_checkpoint: IdString = Field(
        "best", validation_alias=AliasChoices("teacher_checkpoint", "checkpoint"),
        description="best | latest | a checkpoint id",
    )
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="softmax temperature")
    alpha: Fraction = Field(0.3, description="share of the loss taken from the teacher")


class LossSpec(Section):
    recognition: Literal["ctc", "focal_ctc"] = Field("ctc", description="ctc | focal_ctc")
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0, description="focal CTC focusing exponent")
    hierarchical: HierarchicalLoss = Field(
        default_factory=HierarchicalLoss, description="weights of the hierarchical levels"
    )
    confidence: ConfidenceLoss = Field(default_factory=ConfidenceLoss, description="confidence head loss")
    hard_example_mining: HardExampleMining | None = Field(
        None, description="train on the hardest samples, e.g. {keep_ratio: 0.7}; null = off"
    )
    curriculum_weighting: bool = Field(True, description="weight samples by stage difficulty")
    distillation: Distillation | None = Field(None, description="learn from a teacher run; null = off")


class ValidationSpec(Section):
    samples_per_stage: int = Field(512, ge=1, le=1_000_000, description="validation samples per stage")
    every_epochs: int = Field(1, ge=1, le=10_000, description="validate every N epochs")
    overall_samples: int = Field(
        32, ge=0, le=100_000,
        description="samples per content in a fixed set over every stage's content (val_overall_*); 0 = off",
    )
    fonts: list[Name] | None = Field(
        default_factory=lambda: ["held-out"], max_length=256,
        description="fonts stage metrics are judged on, never trained on: held-out (Khmer OS Siemreap, Khmer "
                    "Busra and its variants, Noto Serif Khmer), font files or folders; null = the training fonts",
    )


class CheckpointSpec(Section):
    every_epochs: int = Field(1, ge=1, le=10_000, description="save every N epochs")
    keep_last: int = Field(3, ge=1, le=1000, description="most recent checkpoints kept")
    keep_best: int = Field(2, ge=0, le=1000, description="best checkpoints kept by best_metric")
    best_metric: MetricName = Field("val_cer", description="metric ranking checkpoints")
    compression: Literal["none", "zstd"] = Field("zstd", description="none | zstd")
    storage_url: str | None = Field(None, max_length=1000, description="fsspec URL; null = server default")


class ResourcesSpec(Section):
    """How many processes train the run together (torch.distributed, one process per GPU).

    The world size is `processes_per_node × nodes`; 1 × 1 trains in the worker's own process. Each
    rank trains `training.batch_size` samples per micro-batch on its own slice of the data, so the
    effective batch grows with the world size. A checkpoint holds no per-rank state, so a run may
    resume on another world size."""

    processes_per_node: int = Field(
        1, ge=1, le=64, description="training processes on each machine (one per GPU on CUDA)"
    )
    nodes: int = Field(1, ge=1, le=64, description="machines the run spans (sala worker --nodes on each)")

    @property
    def world_size(self) -> int:
        return self.processes_per_node * self.nodes


class Recipe(Section):
    """A whole training run. `Recipe()` is the default Khmer recipe."""

    name: Name = Field("khmer-crnn-curriculum", description="recipe name")
    seed: int = Field(1234, ge=0, le=2**32 - 1, description="seed for torch, numpy and rendering")
    model: ModelSpec = Field(default_factory=ModelSpec, description="the recogniser")
    data: DataSpec = Field(default_factory=DataSpec, description="where training samples come from")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="the training loop")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec, description="the update rule")
    scheduler: SchedulerSpec = Field(
        default_factory=SchedulerSpec, description="lr schedule, before stage multipliers and overrides"
    )
    curriculum: CurriculumSpec = Field(
        default_factory=CurriculumSpec, description="stages, easiest first, and how each is judged"
    )
    auto_apply: list[RecommendationKind] = Field(
        default_factory=list, max_length=len(RECOMMENDATION_KINDS),
        description="recommendations the server may act on by itself: " + " | ".join(RECOMMENDATION_KINDS),
    )
    tasks: list[TaskSpec] = Field(
        default_factory=default_tasks, min_length=1, max_length=len(TASK_TYPES),
        description="task heads; character_recognition is always on",
    )
    task_weighting: Literal["fixed", "adaptive", "uncertainty"] = Field(
        "uncertainty", description="fixed | adaptive | uncertainty"
    )
    loss: LossSpec = Field(default_factory=LossSpec, description="loss terms and their weights")
    validation: ValidationSpec = Field(
        default_factory=ValidationSpec, description="how each stage is validated"
    )
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec, description="when checkpoints are saved, which are kept, where"
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="processes per node and nodes (torch.distributed)"
    )
    max_restarts: int = Field(3, ge=0, le=100, description="lease losses before the run fails")

    @field_validator("tasks")
    @classmethod
    def _tasks_sane(cls, tasks: list[TaskSpec]) -> list[TaskSpec]:
        """Recognition is the point of the model; a second head of one type would share its loss key."""
        seen: set[str] = set()
        for i, task in enumerate(tasks):
            if task.type in seen:
                raise _problem(f"duplicate task type {task.type!r}", f"[{i}].type")
            seen.add(task.type)
        if not any(t.type == "character_recognition" and t.enabled for t in tasks):
            raise _problem("character_recognition must be listed and enabled", "")
        return tasks

    @field_validator("auto_apply")
    @classmethod
    def _unique_kinds(cls, kinds: list[str]) -> list[str]:
        for i, kind in enumerate(kinds):
            if kind in kinds[:i]:
                raise _problem(f"{kind!r} listed twice", f"[{i}]")
        return kinds

    def stage_index(self, stage: str | int) -> int:
        """Resolve a stage given by name or 0-based index, for library use. The HTTP API counts
        stages from 1 and resolves them itself (`server.runs.resolve_stage`)."""
        stages = self.curriculum.stages
        if isinstance(stage, bool):
            raise UnknownStageError(f"not a stage: {stage!r}")
        if isinstance(stage, int):
            if 0 <= stage < len(stages):
                return stage
            raise UnknownStageError(f"stage index {stage} out of range 0..{len(stages) - 1}")
        for i, spec in enumerate(stages):
            if spec.name == stage:
                return i
        raise UnknownStageError(f"no stage named {stage!r}; stages: {', '.join(s.name for s in stages)}")


class UnknownStageError(LookupError):
    """A stage name or index that the recipe does not define."""


# ---------------------------------------------------------------------------------------------
# Errors


class RecipeError(ValueError):
    """A recipe that cannot be used; `problems` lists every `(field_path, message)`."""

    def __init__(self, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.problems))


class RecipeParseError(RecipeError):
    """The text is not YAML/JSON or not a mapping, so no field could even be checked."""


def error_path(loc: Sequence[str | int], at: str = "") -> str:
    """`('curriculum', 'stages', 2, 'name')` → `curriculum.stages[2].name`, the form API.md uses."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if at and not at.startswith("[") and path:
        at = "." + at
    return path + at


def format_errors(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[dict[str, str]]:
    """Flatten a ValidationError into `{path, message}` items; `prefix` roots them (e.g. `recipe`)."""
    out = []
    for err in exc.errors(include_url=False):
        at = str((err.get("ctx") or {}).get("at", "")) if err["type"] == "recipe" else ""
        message = err["msg"].removeprefix("Value error, ")
        out.append({"path": error_path([*prefix, *err["loc"]], at), "message": message})
    return out


# ---------------------------------------------------------------------------------------------
# Loading and patching


class AliasRefused(yaml.composer.ComposerError):
    """A recipe used a YAML alias (`*name`)."""


class _NoAliases(yaml.SafeLoader):
    """Safe YAML without aliases: a few hundred bytes of nested aliases expand to gigabytes once
    the shared nodes are copied out (an alias bomb), and no recipe needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasRefused(None, None, f"found the alias *{event.anchor}: recipes may not use YAML "
                               "aliases (&anchor / *alias); write the value out", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """YAML as recipes may write it: safe types, no aliases (`AliasRefused`)."""
    return yaml.load(text, Loader=_NoAliases)  # noqa: S506 - a SafeLoader subclass


def _parse(text: str) -> Any:
    try:
        return json.loads(text) if text.lstrip().startswith("{") else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError):
        try:
            return load_yaml(text)
        except yaml.YAMLError as exc:
            raise RecipeParseError([("", f"not valid YAML or JSON: {exc}")]) from None


def _looks_like_path(text: str) -> bool:
    """One line ending in .yaml/.yml/.json that is not itself a mapping (`a: b.yaml`, `{...}`)."""
    one_line = "\n" not in text and ": " not in text and not text.lstrip().startswith("{")
    return one_line and Path(text).suffix in {".yaml", ".yml", ".json"}


def _read(source: str | Path) -> str:
    if isinstance(source, Path) or _looks_like_path(source):
        return Path(source).read_text(encoding="utf-8")
    return source


def parse_recipe(data: Any) -> Recipe:
    """Validate already-parsed data, turning pydantic's error into a RecipeError with paths."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RecipeParseError([("", f"a recipe is a mapping, not {type(data).__name__}")])
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError([(e["path"], e["message"]) for e in format_errors(exc)]) from None


def load_recipe(source: str | Path | Mapping[str, Any]) -> Recipe:
    """Load YAML or JSON from a Path, a path string, text, or a parsed mapping.

    Raises RecipeError (RecipeParseError when unparsable) or OSError when a file cannot be read.
    """
    if isinstance(source, Mapping):
        return parse_recipe(source)
    return parse_recipe(_parse(_read(source)))


# Named starting points for `sala recipe init --preset`. `default` is `Recipe()`, sized for CPU
# (docs/TRAINING.md, "The default model"). `large` is for a GPU: taller lines keep stacked subscripts
# and vowels apart, and a wider network pays off where a step is launch-bound rather than compute-bound.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "large": {
        "name": "khmer-crnn-large",
        "model": {"image_height": 48, "conv_channels": [64, 128, 256, 384], "hidden_size": 256, "lstm_layers": 3},
        "data": {"workers": 8},
        "training": {"batch_size": 128, "steps_per_epoch": 500, "precision": "auto", "device": "cuda"},
        "optimizer": {"lr": 1e-3},
    },
}


def preset(name: str) -> Recipe:
    """A named recipe; `KeyError` names the known ones."""
    if name not in PRESETS:
        raise KeyError(f"no preset {name!r}; presets: {', '.join(PRESETS)}")
    return load_recipe(PRESETS[name])


def apply_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `patch` into a copy of `base` for run forks.

    Mappings merge key by key; anything else (lists included) replaces. Unlike RFC 7386, a null
    sets the field to null rather than deleting it, because null is a meaningful recipe value.
    """
    merged = dict(base)
    for key, value in patch.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = apply_patch(old, value)
        else:
            merged[key] = value
    return merged


# ---------------------------------------------------------------------------------------------
# Commented YAML


def _scalar(value: Any) -> str:
    """One YAML flow value that safe_load reads back as the same Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        plain = value and value[0].isalpha() and all(c.isalnum() or c in "_-./" for c in value)
        return value if plain and yaml.safe_load(value) == value else json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_scalar(k)}: {_scalar(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_scalar(v) for v in value) + "]"


def _float(value: float) -> str:
    """PyYAML reads `1e-06` as a string (YAML 1.1 wants a dot), so write `1.0e-06`."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, 96 - len(indent))]


def _item_fields_comment(model: type[BaseModel], indent: str) -> list[str]:
    parts = [f"{name}: {field.description}" for name, field in model.model_fields.items()]
    return _comment("each item: " + "; ".join(parts), indent)


def _emit(model: BaseModel, data: Mapping[str, Any], indent: str) -> list[str]:
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        value, raw = getattr(model, name), data[name]
        lines += _comment(field.description or "", indent)
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:")
            lines += _emit(value, raw, indent + "  ")
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            lines += _item_fields_comment(type(value[0]), indent)
            lines.append(f"{indent}{name}:")
            lines += [f"{indent}  - {_scalar(item)}" for item in raw]
        else:
            lines.append(f"{indent}{name}: {_scalar(raw)}")
    return lines


def dump_commented_yaml(recipe: Recipe | None = None) -> str:
    """Hand-written emitter because pyyaml drops comments; loading the text gives an equal Recipe."""
    recipe = recipe or Recipe()
    header = [
        "# A Sala training recipe. Every key has a default: `{}` is the default Khmer recipe.",
        "# Check edits with `sala recipe validate FILE`.",
    ]
    return "\n".join(header + _emit(recipe, recipe.model_dump(mode="json"), "")) + "\n"
