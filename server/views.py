"""ORM rows → response bodies."""

from __future__ import annotations

from server import runs
from server.models import Checkpoint, ControlEvent, EpochReport, Run, StageTransition
from server.schemas import CheckpointOut, EpochOut, EventOut, RunOut, StageRef, TransitionOut


def run_out(run: Run, *, with_recipe: bool = False) -> RunOut:
    return RunOut(
        id=run.id, name=run.name, status=run.status,
        stage=StageRef(index=run.stage_index + 1, name=runs.stage_name(run, run.stage_index) or ""),
        stage_held=run.stage_held, stage_count=len(runs.stages_of(run)), attempt=run.attempt,
        restarts=run.restarts, rollbacks=run.rollbacks,
        max_restarts=run.max_restarts, priority=run.priority, tags=list(run.tags), epoch=run.epoch,
        step=run.step, max_epochs=runs.brief(run)["max_epochs"], lr=runs.lr_parts(run),
        worker_id=run.worker_id, parent_run_id=run.parent_run_id, error=run.error,
        latest=dict(run.latest_metrics or {}), recommendations=list(run.recommendations or []),
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        recipe=run.recipe if with_recipe else None,
    )


def event_out(event: ControlEvent) -> EventOut:
    return EventOut.model_validate(event, from_attributes=True)


def transition_out(run: Run, row: StageTransition) -> TransitionOut:
    return TransitionOut(
        from_stage=None if row.from_stage is None else row.from_stage + 1, to_stage=row.to_stage + 1,
        from_name=runs.stage_name(run, row.from_stage), to_name=runs.stage_name(run, row.to_stage) or "",
        epoch=row.epoch, reason=row.reason, actor=row.actor, metrics=row.metrics,
        created_at=row.created_at,
    )


def checkpoint_out(row: Checkpoint) -> CheckpointOut:
    return CheckpointOut(id=row.id, run_id=row.run_id, attempt=row.attempt, epoch=row.epoch,
                         step=row.step, stage=row.stage_index + 1, uri=row.uri, size=row.size,
                         sha256=row.sha256, metrics=row.metrics, kept=row.kept,
                         created_at=row.created_at)


def epoch_out(run: Run, row: EpochReport) -> EpochOut:
    return EpochOut(epoch=row.epoch, attempt=row.attempt,
                    stage=StageRef(index=row.stage_index + 1, name=runs.stage_name(run, row.stage_index) or ""),
                    step=row.step, metrics=row.metrics, lr=row.lr, duration_s=row.duration_s,
                    samples_per_s=row.samples_per_s, created_at=row.created_at)
