"""ORM rows → response bodies, and the one place where stage numbers become people's.

Inside (database, core, the worker protocol) a stage is its position in the recipe's list, from 0.
The API people use counts from 1: `stage_ref` and `numbered` add the 1, `runs.resolve_stage`
takes it off again for a request.
"""

from __future__ import annotations

from typing import Any

from core.protocol import CheckpointRef, Claim, Directive
from server import runs
from server.models import Checkpoint, ControlEvent, EpochReport, Run, StageTransition
from core.api import CheckpointOut, EpochOut, EventOut, RunOut, StageRef, StagesOut, TransitionOut

STAGE_KEYS = frozenset({"stage", "from_stage", "to_stage"})


def stage_ref(run: Run, index: int) -> StageRef:
    return StageRef(index=index + 1, name=runs.stage_name(run, index) or "")


def numbered(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored JSON payload as people read it: its stage keys counted from 1."""
    return {k: v + 1 if k in STAGE_KEYS and isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in payload.items()}


def recommendations(run: Run) -> list[dict[str, Any]]:
    return [{**r, "evidence": numbered(r.get("evidence") or {})} for r in run.recommendations or []]


def run_out(run: Run, *, with_recipe: bool = False) -> RunOut:
    return RunOut(
        id=run.id, name=run.name, status=run.status, stage=stage_ref(run, run.stage_index),
        stage_held=run.stage_held, stage_count=len(runs.brief(run).stages), attempt=run.attempt,
        restarts=run.restarts, rollbacks=run.rollbacks,
        max_restarts=run.max_restarts, priority=run.priority, tags=list(run.tags), note=run.note or "",
        epoch=run.epoch,
        step=run.step, max_epochs=runs.brief(run).max_epochs, curriculum_complete=run.curriculum_complete,
        lr=runs.lr_parts(run), worker_id=run.worker_id, parent_run_id=run.parent_run_id, error=run.error,
        latest=numbered(run.latest_metrics or {}), recommendations=recommendations(run),
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        recipe=run.recipe if with_recipe else None,
    )


def stages_out(run: Run, transitions: list[StageTransition]) -> StagesOut:
    return StagesOut(
        stages=[{"index": i + 1, **spec.model_dump()} for i, spec in enumerate(runs.brief(run).stages)],
        current=stage_ref(run, run.stage_index), held=run.stage_held,
        transitions=[transition_out(run, t) for t in transitions], recommendations=recommendations(run),
    )


def event_out(event: ControlEvent) -> EventOut:
    out = EventOut.model_validate(event, from_attributes=True)
    return out.model_copy(update={"payload": numbered(out.payload)})


def transition_out(run: Run, row: StageTransition) -> TransitionOut:
    return TransitionOut(
        from_stage=None if row.from_stage is None else row.from_stage + 1, to_stage=row.to_stage + 1,
        from_name=runs.stage_name(run, row.from_stage), to_name=runs.stage_name(run, row.to_stage) or "",
        epoch=row.epoch, reason=row.reason, actor=row.actor, metrics=numbered(row.metrics),
        created_at=row.created_at,
    )


def checkpoint_out(row: Checkpoint) -> CheckpointOut:
    return CheckpointOut(id=row.id, run_id=row.run_id, attempt=row.attempt, epoch=row.epoch,
                         step=row.step, stage=row.stage_index + 1, uri=row.uri, size=row.size,
                         sha256=row.sha256, metrics=row.metrics, kept=row.kept,
                         created_at=row.created_at)


def epoch_out(run: Run, row: EpochReport) -> EpochOut:
    return EpochOut(epoch=row.epoch, attempt=row.attempt, stage=stage_ref(run, row.stage_index),
                    step=row.step, metrics=row.metrics, lr=row.lr, duration_s=row.duration_s,
                    samples_per_s=row.samples_per_s, created_at=row.created_at)


# ---- the worker protocol: stages stay positions from 0 ------------------------------------------


def checkpoint_ref(row: Checkpoint) -> CheckpointRef:
    return CheckpointRef(id=row.id, uri=row.uri, sha256=row.sha256, epoch=row.epoch, step=row.step,
                         stage_index=row.stage_index)


def claim_out(run: Run, checkpoint: Checkpoint | None, directive: Directive) -> Claim:
    return Claim(run_id=run.id, run_name=run.name, attempt=run.attempt, lease_token=run.lease_token,
                 lease_expires_at=run.lease_expires_at, recipe=runs.recipe_of(run),
                 resume_checkpoint=checkpoint_ref(checkpoint) if checkpoint else None, directive=directive)


# ---- poll bodies as plain data (encoded by orjson, server/reads.py) ---------------------------


def epoch_rows(run: Run, rows: list[EpochReport]) -> list[dict[str, Any]]:
    """What `epoch_out` makes, as dicts: a 130-epoch history without 130 models built and dumped."""
    names = _stage_names(run)
    return [{"epoch": r.epoch, "attempt": r.attempt, "stage": {"index": r.stage_index + 1, "name": names(r.stage_index)},
             "step": r.step, "metrics": r.metrics, "lr": r.lr, "duration_s": r.duration_s,
             "samples_per_s": r.samples_per_s, "created_at": r.created_at} for r in rows]


def epoch_columns(run: Run, rows: list[EpochReport], next_cursor: str | None) -> dict[str, Any]:
    """The same epochs as `EpochColumns`: one array per field, metric and lr key."""
    names = _stage_names(run)
    return {"format": "columns", "epoch": [r.epoch for r in rows], "attempt": [r.attempt for r in rows],
            "stage": [r.stage_index + 1 for r in rows],
            "stage_names": {str(i + 1): names(i) for i in sorted({r.stage_index for r in rows})},
            "step": [r.step for r in rows], "metrics": _columns([r.metrics for r in rows]),
            "lr": _columns([r.lr for r in rows]), "duration_s": [r.duration_s for r in rows],
            "samples_per_s": [r.samples_per_s for r in rows], "created_at": [r.created_at for r in rows],
            "next_cursor": next_cursor}


def step_columns(points: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    """Step points (`{"step": s, **scalars}`) as `StepColumns`."""
    return {"format": "columns", "step": [p["step"] for p in points],
            "values": _columns([{k: v for k, v in p.items() if k != "step"} for p in points]),
            "next_cursor": next_cursor}


def _columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    keys = list(dict.fromkeys(k for record in records for k in record))
    return {k: [record.get(k) for record in records] for k in keys}


def _stage_names(run: Run):
    known: dict[int, str] = {}

    def name(index: int) -> str:
        if index not in known:
            known[index] = runs.stage_name(run, index) or ""
        return known[index]
    return name
