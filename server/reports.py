"""What workers report: epochs (which the curriculum judges) and checkpoints (which retention prunes).

The rules are core's (`core.curriculum.judge`, `core.retention`); this module stores what they
decide, as `LocalController` does for `sala train`.
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import curriculum, protocol, retention
from server import events, runs
from server.errors import NotFound
from server.models import Checkpoint, ControlEvent, EpochReport, Run, utcnow


def record_epoch(db: Session, run: Run, report: protocol.EpochReport) -> EpochReport:
    """Store one epoch and apply what the curriculum makes of it; the same epoch twice is stored once."""
    existing = db.scalars(select(EpochReport).where(
        EpochReport.run_id == run.id, EpochReport.epoch == report.epoch,
        EpochReport.superseded.is_(False))).first()
    if existing is not None:
        return existing
    row = EpochReport(run_id=run.id, attempt=run.attempt, epoch=report.epoch, stage_index=report.stage_index,
                      step=report.step, metrics=report.metrics, lr=report.lr, duration_s=report.duration_s,
                      samples_per_s=report.samples_per_s)
    db.add(row)
    db.flush()
    run.epoch = max(run.epoch, row.epoch)
    run.step = max(run.step, row.step)
    run.latest_metrics = {**row.metrics, "epoch": row.epoch, "stage": row.stage_index}
    if report.lr.get("schedule") is not None:
        run.lr_schedule = float(report.lr["schedule"])
    _judge(db, run, row)
    return row


def _history(db: Session, run: Run) -> list[curriculum.EpochRecord]:
    rows = db.execute(select(EpochReport.epoch, EpochReport.stage_index, EpochReport.metrics).where(
        EpochReport.run_id == run.id, EpochReport.superseded.is_(False)).order_by(EpochReport.epoch))
    return [curriculum.EpochRecord(epoch=e, stage=s, metrics=m) for e, s, m in rows]


def _acted(db: Session, run: Run) -> set[tuple[str, int]]:
    """(recommendation kind, stage) pairs already auto-applied on this run."""
    rows = db.scalars(select(ControlEvent.payload).where(ControlEvent.run_id == run.id,
                                                         ControlEvent.kind == "auto_action"))
    return {(p.get("source"), p.get("stage")) for p in rows}


def _judge(db: Session, run: Run, row: EpochReport) -> None:
    if row.stage_index != run.stage_index:
        return  # trained before a stage move the worker has not applied yet: not judged (core.curriculum.judge)
    outcome = curriculum.judge(runs.recipe_of(run), stage=run.stage_index, held=run.stage_held,
                               trained=row.stage_index, history=_history(db, run), acted=_acted(db, run))
    decision = outcome.decision
    if decision is None:
        return
    seen = {r.get("kind") for r in run.recommendations or []}
    run.recommendations = [{"kind": r.kind, "message": r.message, "evidence": r.evidence}
                           for r in outcome.recommendations]
    fresh = [r for r in outcome.recommendations if r.kind not in seen]
    if fresh:  # new advice is an event of its own, so a webhook can tell a person
        events.record(db, run.id, "recommended", "curriculum", kinds=[r.kind for r in fresh],
                      messages=[r.message for r in fresh], stage=run.stage_index, epoch=row.epoch)
    if decision.completed or decision.moved:
        run.curriculum_complete = decision.completed
        runs.move_stage(db, run, decision.stage, actor="curriculum", reason=decision.reason, kind="stage_transition",
                        needs_worker=False, epoch=row.epoch, metrics=asdict(decision.evidence))
    for action in outcome.actions:
        _act(db, run, action, row.epoch)


def _act(db: Session, run: Run, action: curriculum.Action, epoch: int) -> None:
    """An auto-applied recommendation: recorded per source kind, then done as a person's request would be."""
    for source in action.sources:
        events.record(db, run.id, "auto_action", "curriculum", source=source, action=action.kind,
                      value=action.value, stage=run.stage_index, epoch=epoch)
    note = f"auto: {', '.join(action.sources)}"
    if action.kind == "lr_scale" and action.value:
        runs.reduce_lr(db, run, action.value, actor="curriculum", reason=note)
    elif action.kind == "advance":
        runs.move_stage(db, run, run.stage_index + 1, actor="curriculum", reason="auto", kind="stage_advance",
                        needs_worker=True, epoch=epoch, metrics={"auto": list(action.sources)}, note=note)


def record_checkpoint(db: Session, run: Run, report: protocol.CheckpointReport) -> tuple[Checkpoint, list[Checkpoint]]:
    """Store checkpoint metadata and apply retention; a checkpoint a fork started from is never dropped.
    The same file reported twice (a retry whose first answer was lost) is stored once: a second
    row of one file would let retention delete the file the first row still keeps."""
    again = db.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id, Checkpoint.uri == report.uri,
                                                Checkpoint.sha256 == report.sha256)).first()
    if again is not None:
        return again, []
    row = Checkpoint(run_id=run.id, attempt=run.attempt, uri=report.uri, epoch=report.epoch, step=report.step,
                     stage_index=report.stage_index, sha256=report.sha256, size=report.size,
                     metrics=report.metrics)
    db.add(row)
    db.flush()
    policy = runs.recipe_of(run).checkpoint
    kept = list(db.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id, Checkpoint.kept.is_(True))
                           .order_by(Checkpoint.step, Checkpoint.id)))
    forked_from = set(db.scalars(select(Run.parent_checkpoint_id).where(Run.parent_checkpoint_id.is_not(None))))
    doomed = [c for c in retention.select_for_deletion(kept, keep_last=policy.keep_last, keep_best=policy.keep_best,
                                                        metric=policy.best_metric)
              if c.id not in forked_from]
    now = utcnow()
    for checkpoint in doomed:
        checkpoint.kept = False
        checkpoint.deleted_at = now
    return row, doomed


def epochs(db: Session, run_id: int, *, after: int, limit: int) -> list[EpochReport]:
    """The run's history after epoch `after`: superseded reports of dead attempts are left out."""
    return list(db.scalars(select(EpochReport).where(
        EpochReport.run_id == run_id, EpochReport.superseded.is_(False), EpochReport.epoch > after)
        .order_by(EpochReport.epoch).limit(limit)))


def checkpoints(db: Session, run_id: int) -> list[Checkpoint]:
    return list(db.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.id)))


def kept_checkpoint(db: Session, run_id: int, checkpoint_id: int) -> Checkpoint:
    """A checkpoint of this run whose file retention has not deleted."""
    row = db.get(Checkpoint, checkpoint_id)
    if row is None or row.run_id != run_id:
        raise NotFound(f"checkpoint {checkpoint_id} does not belong to run {run_id}")
    if not row.kept:
        raise NotFound(f"checkpoint {checkpoint_id} was deleted by retention")
    return row
