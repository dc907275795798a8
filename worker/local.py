"""`LocalController`: the server's curriculum policy, in process, for `sala train` and library use.

It keeps what the server would keep (epoch history, stage, checkpoints, steering requests) and
answers the trainer the same way: the curriculum decides after every epoch, retention decides
which checkpoints go. It writes ``metrics.jsonl`` (one line per epoch), ``checkpoints.jsonl``
(what is kept) and ``alerts.jsonl`` in its out dir, and can be rebuilt from them to resume.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from core.curriculum import EpochRecord, decide
from worker.checkpoints import CheckpointInfo, select_for_deletion
from worker.controller import Action, Directive, EpochSummary, SavedCheckpoint
from core.recipe import Recipe

log = logging.getLogger("sala.local")

METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
ALERTS_FILE = "alerts.jsonl"


class LocalController:
    """A controller with no server. ``on_step(step, scalars)`` and ``on_epoch(summary, directive)``
    let a caller draw progress; ``request(...)`` steers it like the HTTP control API would."""

    def __init__(
        self, recipe: Recipe, out_dir: str | Path, *, stage: int = 0,
        history: list[EpochRecord] | None = None, checkpoints: list[SavedCheckpoint] | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        on_epoch: Callable[[EpochSummary, Directive], None] | None = None,
    ) -> None:
        self.recipe = recipe
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.history: list[EpochRecord] = list(history or [])
        self.checkpoints: list[SavedCheckpoint] = list(checkpoints or [])
        self.directive = Directive(stage=stage)
        self.on_step, self.on_epoch = on_step, on_epoch
        self.last_scalars: dict[str, float] = {}
        self.acknowledged: dict[int, int] = {}
        self.alerts: list[dict[str, Any]] = []
        self.transitions: list[dict[str, Any]] = []
        self.status: str | None = None
        self._next_event = 1

    @classmethod
    def resume(cls, recipe: Recipe, out_dir: str | Path, *, epoch: int, stage: int, **kwargs: Any) -> LocalController:
        """Rebuild from the files of an earlier `sala train` into ``out_dir``, up to ``epoch``."""
        out = Path(out_dir)
        history = [EpochRecord(r["epoch"], r["stage"], r["metrics"]) for r in _read_jsonl(out / METRICS_FILE)
                   if r["epoch"] <= epoch]
        kept = [SavedCheckpoint(**r) for r in _read_jsonl(out / CHECKPOINTS_FILE)]
        controller = cls(recipe, out, stage=stage, history=history, checkpoints=kept, **kwargs)
        controller._rewrite_metrics()
        return controller

    # -- steering, as the control API would -------------------------------------------------------
    def request(self, *, action: Action | None = None, stage: int | None = None, lr_scale: float | None = None,
                lr: float | None = None, clear_lr: bool = False, checkpoint: bool = False, hold: bool | None = None) -> int:
        """Queue a change for the trainer's next poll; returns its event id."""
        d = self.directive
        changes: dict[str, Any] = {}
        if action is not None:
            changes["action"] = action
        if stage is not None:
            changes["stage"] = self.recipe.stage_index(stage)
        if clear_lr:
            changes |= {"lr_override_scale": 1.0, "lr_override_lr": None}
        if lr_scale is not None:
            changes["lr_override_scale"] = lr_scale
        if lr is not None:
            changes["lr_override_lr"] = lr
        if checkpoint:
            changes["checkpoint_now"] = True
        if hold is not None:
            changes["stage_held"] = hold
        event = self._next_event
        self._next_event += 1
        self.directive = replace(d, **changes, event_ids=(*d.event_ids, event))
        return event

    # -- the Controller protocol ------------------------------------------------------------------
    def poll(self, step: int, epoch: int) -> Directive:
        return self.directive

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        self.last_scalars = {"step": step, **scalars}
        if self.on_step is not None:
            self.on_step(step, scalars)

    def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None:
        for event in event_ids:
            self.acknowledged.setdefault(event, step)
        pending = tuple(e for e in self.directive.event_ids if e not in self.acknowledged)
        self.directive = replace(self.directive, event_ids=pending)

    def report_epoch(self, summary: EpochSummary) -> Directive:
        """Store the epoch and let the curriculum decide, as the server's epoch report does."""
        record = EpochRecord(summary.epoch, summary.stage, dict(summary.metrics))
        self.history = [r for r in self.history if r.epoch < summary.epoch] + [record]
        self._append(METRICS_FILE, {"epoch": summary.epoch, "stage": summary.stage,
                                    "stage_name": self.recipe.curriculum.stages[summary.stage].name,
                                    "step": summary.step, "metrics": summary.metrics, "lr": summary.lr,
                                    "duration_s": summary.duration_s, "samples_per_s": summary.samples_per_s})
        d = self.directive
        complete = summary.epoch >= self.recipe.training.max_epochs
        if summary.stage == d.stage:  # a manual move not yet applied is not judged on the old stage
            decision = decide(self.recipe.curriculum.stages, d.stage, self.history, held=d.stage_held,
                              metric=self.recipe.curriculum.metric)
            if decision.reason is not None:
                self.transitions.append({"epoch": summary.epoch, "from": d.stage, "to": decision.stage,
                                         "reason": decision.reason})
            complete = complete or decision.completed
            d = replace(d, stage=decision.stage)
        if complete and d.action == "continue":
            d = replace(d, action="complete")
        self.directive = d
        if self.on_epoch is not None:
            self.on_epoch(summary, d)
        return d

    def report_checkpoint(self, saved: SavedCheckpoint) -> list[str]:
        """Record it and apply keep_last / keep_best; the answer lists the URIs to delete."""
        self.checkpoints.append(saved)
        if self.directive.checkpoint_now:
            self.directive = replace(self.directive, checkpoint_now=False)
        c = self.recipe.checkpoint
        infos = [CheckpointInfo(uri=s.uri, sha256=s.sha256, size=s.size, epoch=s.epoch, step=s.step,
                                metrics=_finite(s.metrics)) for s in self.checkpoints]
        doomed = {i.uri for i in select_for_deletion(infos, keep_last=c.keep_last, keep_best=c.keep_best,
                                                     metric=c.best_metric)}
        self.checkpoints = [s for s in self.checkpoints if s.uri not in doomed]
        self._write(CHECKPOINTS_FILE, [asdict(s) for s in self.checkpoints])
        return sorted(doomed)

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        log.warning("%s: %s", kind, detail)
        self.alerts.append({"kind": kind, **detail})
        self._append(ALERTS_FILE, {"kind": kind, **detail})

    def finish(self, status: str, error: str | None = None) -> None:
        self.status = status
        self._write("status.json", [{"status": status, "error": error}])

    # -- queries ------------------------------------------------------------------------------------
    def latest_checkpoint(self) -> SavedCheckpoint | None:
        return max(self.checkpoints, key=lambda s: (s.step, s.epoch), default=None)

    def best_checkpoint(self) -> SavedCheckpoint | None:
        metric = self.recipe.checkpoint.best_metric
        scored = [s for s in self.checkpoints if _finite(s.metrics).get(metric) is not None]
        lower = metric.endswith(("cer", "loss", "perplexity"))
        return (min if lower else max)(scored, key=lambda s: s.metrics[metric], default=None)

    # -- files --------------------------------------------------------------------------------------
    def _append(self, name: str, row: dict[str, Any]) -> None:
        with (self.out_dir / name).open("a", encoding="utf-8") as f:
            f.write(json.dumps(_clean(row), allow_nan=False) + "\n")

    def _write(self, name: str, rows: list[dict[str, Any]]) -> None:
        tmp = self.out_dir / f".{name}.tmp"
        tmp.write_text("".join(json.dumps(_clean(r), allow_nan=False) + "\n" for r in rows),
                       encoding="utf-8")
        tmp.replace(self.out_dir / name)

    def _rewrite_metrics(self) -> None:
        rows = [r for r in _read_jsonl(self.out_dir / METRICS_FILE)
                if r["epoch"] in {h.epoch for h in self.history}]
        self._write(METRICS_FILE, rows)


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(v)}


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
