"""`LocalController`: the server's policy, in process, for `sala train` and library use.

It keeps what the server would keep (epoch history, stage, checkpoints, steering requests,
rollbacks) and answers the trainer with the same rules, all from `core`: the curriculum judges
every epoch (moves, completion, recommendations and the ones the recipe auto-applies), the lr
rules steer and reduce, retention picks the checkpoints to delete, non-finite losses roll back.
It writes ``metrics.jsonl`` (one line per epoch), ``checkpoints.jsonl`` (what is kept) and
``alerts.jsonl`` in its out dir, and can be rebuilt from them to resume.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from core import lr as lr_rules
from core.curriculum import EpochRecord, Recommendation, finished, judge
from core.metrics import best
from core.protocol import Action, CheckpointReport, Directive, EpochReport
from core.recipe import Recipe
from core.retention import select_for_deletion
from worker.controller import Rollback, RunFailed

log = logging.getLogger("sala.local")

METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
ALERTS_FILE = "alerts.jsonl"


class Runnable(Protocol):
    def run(self, resume: Any = None) -> str: ...


class LocalController:
    """A controller with no server. ``on_step(step, scalars)`` and ``on_epoch(report, directive)``
    let a caller draw progress; ``request(...)`` steers it like the HTTP control API would."""

    def __init__(
        self, recipe: Recipe, out_dir: str | Path, *, stage: int = 0,
        history: list[EpochRecord] | None = None, checkpoints: list[CheckpointReport] | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        on_epoch: Callable[[EpochReport, Directive], None] | None = None,
    ) -> None:
        self.recipe = recipe
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.history: list[EpochRecord] = list(history or [])
        self.checkpoints: list[CheckpointReport] = list(checkpoints or [])
        self.directive = Directive(action="continue", stage_index=stage)
        self.on_step, self.on_epoch = on_step, on_epoch
        self.last_scalars: dict[str, float] = {}
        self.acknowledged: dict[int, int] = {}
        self.alerts: list[dict[str, Any]] = []
        self.transitions: list[dict[str, Any]] = []
        self.recommendations: list[Recommendation] = []
        self.acted: set[tuple[str, int]] = set()  # (recommendation kind, stage) already auto-applied
        self.passed = False  # the last stage passed its threshold
        self.rollbacks = 0
        self.status: str | None = None
        self._next_event = 1

    @classmethod
    def resume(cls, recipe: Recipe, out_dir: str | Path, *, epoch: int, stage: int, **kwargs: Any) -> LocalController:
        """Rebuild from the files of an earlier `sala train` into ``out_dir``, up to ``epoch``."""
        out = Path(out_dir)
        history = [EpochRecord(r["epoch"], r["stage"], r["metrics"]) for r in _read_jsonl(out / METRICS_FILE)
                   if r["epoch"] <= epoch]
        kept = [CheckpointReport.model_validate(_renamed(r)) for r in _read_jsonl(out / CHECKPOINTS_FILE)]
        controller = cls(recipe, out, stage=stage, history=history, checkpoints=kept, **kwargs)
        controller._rewrite_metrics()
        return controller

    def train(self, trainer: Callable[[], Runnable], resume: Any = None) -> str:
        """Run ``trainer()`` until it ends the run. A rollback resumes a fresh one from the newest
        kept checkpoint, with the epochs after it forgotten, as the server re-queues a run."""
        while True:
            try:
                return trainer().run(resume=resume)
            except Rollback as why:
                resume = self.latest_checkpoint()
                log.warning("%s; resuming from %s", why, resume.uri if resume else "the start")
                self.rewind(resume.epoch if resume else 0)

    # -- steering, as the control API would -------------------------------------------------------
    def request(self, *, action: Action | None = None, stage: int | str | None = None,
                lr_scale: float | None = None, lr: float | None = None, clear_lr: bool = False,
                checkpoint: bool = False, hold: bool | None = None) -> int:
        """Queue a change for the trainer's next poll; returns its event id. ``stage`` is a name or a
        0-based index; the lr arguments follow `core.lr.steer` (at most one of them)."""
        d = self.directive
        changes: dict[str, Any] = {}
        if action is not None:
            changes["action"] = action
        if stage is not None:
            changes["stage_index"] = self._move(self.recipe.stage_index(stage), "manual")
        if lr_scale is not None or lr is not None or clear_lr:
            changes["lr"] = lr_rules.steer(d.lr, lr=lr, scale=lr_scale, clear=clear_lr)
        if checkpoint:
            changes["checkpoint_now"] = True
        if hold is not None:
            changes["stage_held"] = hold
        event = self._next_event
        self._next_event += 1
        self.directive = d.model_copy(update={**changes, "event_ids": (*d.event_ids, event)})
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
        self.directive = self.directive.model_copy(update={"event_ids": pending})

    def report_epoch(self, report: EpochReport) -> Directive:
        """Store the epoch and apply what the curriculum makes of it, as the server's epoch report does."""
        self.history = [r for r in self.history if r.epoch < report.epoch]
        self.history.append(EpochRecord(report.epoch, report.stage_index, dict(report.metrics)))
        self._append(METRICS_FILE, {"epoch": report.epoch, "stage": report.stage_index,
                                    "stage_name": self.recipe.curriculum.stages[report.stage_index].name,
                                    "step": report.step, "metrics": report.metrics, "lr": report.lr,
                                    "duration_s": report.duration_s, "samples_per_s": report.samples_per_s})
        self._apply_curriculum(report)
        if finished(self.recipe.training.max_epochs, report.epoch, self.passed) and self.directive.action == "continue":
            self.directive = self.directive.model_copy(update={"action": "complete"})
        if self.on_epoch is not None:
            self.on_epoch(report, self.directive)
        return self.directive

    def report_checkpoint(self, saved: CheckpointReport) -> list[str]:
        """Record it and apply keep_last / keep_best; the answer lists the URIs to delete."""
        self.checkpoints.append(saved)
        if self.directive.checkpoint_now:
            self.directive = self.directive.model_copy(update={"checkpoint_now": False})
        c = self.recipe.checkpoint
        doomed = select_for_deletion(self.checkpoints, keep_last=c.keep_last, keep_best=c.keep_best,
                                     metric=c.best_metric)
        gone = {id(s) for s in doomed}
        self.checkpoints = [s for s in self.checkpoints if id(s) not in gone]
        self._write(CHECKPOINTS_FILE, [s.model_dump() for s in self.checkpoints])
        return sorted(s.uri for s in doomed)

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        """Logged and written; non-finite losses roll back with a lower lr, and fail the run once
        `training.max_rollbacks` rollbacks were spent (`core.lr.rollback_or_fail`)."""
        log.warning("%s: %s", kind, detail)
        self.alerts.append({"kind": kind, **detail})
        self._append(ALERTS_FILE, {"kind": kind, **detail})
        if kind != "nonfinite":
            return
        if lr_rules.rollback_or_fail(self.rollbacks, self.recipe.training.max_rollbacks) == "fail":
            raise RunFailed(f"non-finite losses persisted after {self.rollbacks} rollback(s) with reduced lr")
        self.rollbacks += 1
        lr = lr_rules.reduce(self.directive.lr, lr_rules.ROLLBACK_FACTOR)
        self.directive = self.directive.model_copy(update={"lr": lr})
        raise Rollback(f"{detail.get('consecutive')} non-finite losses in a row: rollback {self.rollbacks}")

    def finish(self, status: str, error: str | None = None) -> None:
        self.status = status
        self._write("status.json", [{"status": status, "error": error}])

    # -- queries ------------------------------------------------------------------------------------
    def latest_checkpoint(self) -> CheckpointReport | None:
        return max(self.checkpoints, key=lambda s: (s.step, s.epoch), default=None)

    def best_checkpoint(self) -> CheckpointReport | None:
        return best(self.checkpoints, self.recipe.checkpoint.best_metric)

    def rewind(self, epoch: int) -> None:
        """Forget the epochs after ``epoch`` (a rollback resumes from a checkpoint taken then)."""
        self.history = [r for r in self.history if r.epoch <= epoch]
        self._rewrite_metrics()

    # -- the curriculum -------------------------------------------------------------------------------
    def _apply_curriculum(self, report: EpochReport) -> None:
        d = self.directive
        outcome = judge(self.recipe, stage=d.stage_index, held=d.stage_held, trained=report.stage_index,
                        history=self.history, acted=self.acted)
        if outcome.decision is None:
            return
        self.recommendations = outcome.recommendations
        decision, stage, lr = outcome.decision, d.stage_index, d.lr
        if decision.completed:
            self.passed = True
            self.transitions.append({"epoch": report.epoch, "from": stage, "to": stage, "reason": "completed"})
        elif decision.moved:
            stage = self._move(decision.stage, decision.reason, report.epoch)
        for action in outcome.actions:
            self.acted |= {(source, d.stage_index) for source in action.sources}
            if action.kind == "lr_scale" and action.value:
                lr = lr_rules.reduce(lr, action.value)
            elif action.kind == "advance":
                stage = self._move(stage + 1, "auto", report.epoch)
        self.directive = d.model_copy(update={"stage_index": stage, "lr": lr})

    def _move(self, to: int, reason: str, epoch: int | None = None) -> int:
        if epoch is None:
            epoch = self.history[-1].epoch if self.history else 0
        self.transitions.append({"epoch": epoch, "from": self.directive.stage_index, "to": to, "reason": reason})
        return to

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


def _renamed(row: dict[str, Any]) -> dict[str, Any]:
    """A checkpoints.jsonl row; files written before the protocol types called the stage `stage`."""
    return {("stage_index" if k == "stage" else k): v for k, v in row.items()}


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
