"""A tiny recipe and a scriptable controller shared by the trainer, local-controller and CLI tests."""

from __future__ import annotations

from typing import Any

from core.protocol import CheckpointReport, Directive, EpochReport
from core.recipe import Recipe, apply_patch, load_recipe

TINY: dict[str, Any] = {
    "seed": 7,
    "model": {"image_height": 32, "hidden_size": 32, "conv_channels": [8, 16, 24, 32], "lstm_layers": 1,
              "dropout": 0.1},
    "data": {"workers": 0},
    "training": {"batch_size": 8, "steps_per_epoch": 6, "max_epochs": 4, "precision": "fp32", "device": "cpu"},
    "optimizer": {"lr": 0.003},
    "scheduler": {"name": "warmup_cosine", "warmup_epochs": 1, "restart_epochs": None},
    "curriculum": {"stages": [
        {"name": "chars", "content": "characters", "success_threshold": 0.99, "min_epochs": 1, "max_epochs": 2},
        {"name": "combos", "content": "combinations", "success_threshold": 0.99, "lr_multiplier": 0.5,
         "replay": 0.3},
    ]},
    "validation": {"samples_per_stage": 16, "overall_samples": 0},
    "checkpoint": {"every_epochs": 1, "keep_last": 2, "keep_best": 1, "compression": "zstd"},
}


def tiny_recipe(**patch: Any) -> Recipe:
    return load_recipe(apply_patch(TINY, patch))


class ScriptedController:
    """Answers with a fixed directive, changed by ``at_step[step]`` / ``at_epoch[epoch]`` scripts,
    and records every call so a test can see what the trainer did and when."""

    def __init__(self, at_step: dict[int, dict[str, Any]] | None = None,
                 at_epoch: dict[int, dict[str, Any]] | None = None, **directive: Any) -> None:
        self.directive = Directive(**{"action": "continue", "stage_index": 0, **directive})
        self.at_step, self.at_epoch = dict(at_step or {}), dict(at_epoch or {})
        self.trainer: Any = None
        self.steps: list[tuple[int, dict[str, float], dict[str, Any]]] = []
        self.acks: list[tuple[tuple[int, ...], int]] = []
        self.epochs: list[EpochReport] = []
        self.checkpoints: list[CheckpointReport] = []
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.delete: list[str] = []

    def poll(self, step: int, epoch: int) -> Directive:
        if step in self.at_step:
            self.directive = self.directive.model_copy(update=self.at_step.pop(step))
        return self.directive

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        seen = {}
        if self.trainer is not None:
            seen = {"content": self.trainer.train_set.content, "stage": self.trainer.stage,
                    "group_lrs": [g["lr"] for g in self.trainer.optimizer.param_groups]}
        self.steps.append((step, scalars, seen))

    def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None:
        self.acks.append((event_ids, step))

    def report_epoch(self, summary: EpochReport) -> Directive:
        self.epochs.append(summary)
        if summary.epoch in self.at_epoch:
            self.directive = self.directive.model_copy(update=self.at_epoch.pop(summary.epoch))
        return self.directive

    def report_checkpoint(self, saved: CheckpointReport) -> list[str]:
        self.checkpoints.append(saved)
        doomed, self.delete = self.delete, []
        return doomed

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        self.alerts.append((kind, detail))

    def finish(self, status: str, error: str | None = None) -> None:
        pass
