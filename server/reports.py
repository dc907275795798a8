"""What workers report: epochs (which drive the curriculum) and checkpoints (which drive retention)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import curriculum
from server import events
from server.models import Checkpoint, ControlEvent, EpochReport, Run, StageTransition, utcnow
from core.recipe import StageSpec, lower_is_better


def record_epoch(db: Session, run: Run, report: dict[str, Any]) -> tuple[EpochReport, bool]:
    """Store one epoch and let the curriculum decide; the same epoch twice is stored once.
    Returns the row and whether the run's curriculum is complete."""
    existing = db.scalars(select(EpochReport).where(
        EpochReport.run_id == run.id, EpochReport.epoch == report["epoch"],
        EpochReport.superseded.is_(False))).first()
    if existing is not None:
        return existing, _is_complete(run)
    row = EpochReport(run_id=run.id, attempt=run.attempt, epoch=report["epoch"],
                      stage_index=report["stage"] - 1, step=report["step"], metrics=report["metrics"],
                      lr=report.get("lr") or {}, duration_s=report.get("duration_s"),
                      samples_per_s=report.get("samples_per_s"))
    db.add(row)
    db.flush()
    run.epoch = max(run.epoch, row.epoch)
    run.step = max(run.step, row.step)
    run.latest_metrics = {**row.metrics, "epoch": row.epoch, "stage": row.stage_index + 1}
    if row.lr.get("schedule") is not None:
        run.lr_schedule = float(row.lr["schedule"])
    _apply_curriculum(db, run, row)
    return row, _is_complete(run)


def _history(db: Session, run: Run) -> list[curriculum.EpochRecord]:
    rows = db.execute(select(EpochReport.epoch, EpochReport.stage_index, EpochReport.metrics).where(
        EpochReport.run_id == run.id, EpochReport.superseded.is_(False)).order_by(EpochReport.epoch))
    return [curriculum.EpochRecord(epoch=e, stage=s, metrics=m) for e, s, m in rows]


def _apply_curriculum(db: Session, run: Run, row: EpochReport) -> None:
    if row.stage_index != run.stage_index:
        return  # the worker has not yet applied a manual move: judge the stage it trains now
    stages = [StageSpec.model_validate(s) for s in run.recipe["curriculum"]["stages"]]
    metric = run.recipe["curriculum"]["metric"]
    history = _history(db, run)
    decision = curriculum.decide(stages, run.stage_index, history, held=run.stage_held, metric=metric)
    recs = curriculum.recommend(stages, run.stage_index, history, metric=metric)
    run.recommendations = [{"kind": r.kind, "message": r.message, "evidence": r.evidence} for r in recs]
    evidence = {k: v for k, v in vars(decision.evidence).items()} if decision.evidence else {}
    if decision.completed:
        _record_transition(db, run, run.stage_index, row.epoch, "completed", evidence)
        run.latest_metrics = {**run.latest_metrics, "curriculum_complete": True}
    elif decision.moved:
        _record_transition(db, run, decision.stage, row.epoch, decision.reason, evidence)
        run.stage_index = decision.stage
    _auto_apply(db, run, recs, row.epoch)


def _record_transition(db: Session, run: Run, to: int, epoch: int, reason: str,
                       evidence: dict[str, Any]) -> None:
    db.add(StageTransition(run_id=run.id, from_stage=run.stage_index, to_stage=to, epoch=epoch,
                           reason=reason, actor="curriculum", metrics=evidence))
    events.record(db, run.id, "stage_transition", "curriculum", from_stage=run.stage_index + 1,
                  to_stage=to + 1, reason=reason, epoch=epoch)


def _auto_apply(db: Session, run: Run, recs: list[curriculum.Recommendation], epoch: int) -> None:
    """Apply the recommendations the recipe opted in to, each kind once per stage visit."""
    enabled = set(run.recipe.get("auto_apply") or [])
    if not enabled or not recs:
        return
    done = {(e.payload.get("source"), e.payload.get("stage")) for e in db.scalars(select(ControlEvent).where(
        ControlEvent.run_id == run.id, ControlEvent.kind == "auto_action"))}
    fresh = [r for r in recs if (r.kind, run.stage_index + 1) not in done]
    for action in curriculum.auto_actions(fresh, enabled):
        for source in action.sources:
            events.record(db, run.id, "auto_action", "curriculum", source=source, action=action.kind,
                          value=action.value, stage=run.stage_index + 1, epoch=epoch)
        if action.kind == "lr_scale" and action.value:
            run.lr_override_scale *= action.value
            events.record(db, run.id, "lr_scale", "curriculum", needs_worker=True,
                          scale=run.lr_override_scale, reason=f"auto: {', '.join(action.sources)}")
        elif action.kind == "advance" and run.stage_index + 1 < len(run.recipe["curriculum"]["stages"]):
            db.add(StageTransition(run_id=run.id, from_stage=run.stage_index, to_stage=run.stage_index + 1,
                                   epoch=epoch, reason="patience", actor="curriculum",
                                   metrics={"auto": list(action.sources)}))
            run.stage_index += 1
            events.record(db, run.id, "stage_advance", "curriculum", needs_worker=True,
                          to_stage=run.stage_index + 1, reason=f"auto: {', '.join(action.sources)}")


def _is_complete(run: Run) -> bool:
    return bool((run.latest_metrics or {}).get("curriculum_complete")) \
        or run.epoch >= run.recipe["training"]["max_epochs"]


def record_checkpoint(db: Session, run: Run, body: dict[str, Any]) -> tuple[Checkpoint, list[Checkpoint]]:
    """Store checkpoint metadata and apply retention: keep the last N and the best K."""
    row = Checkpoint(run_id=run.id, attempt=run.attempt, uri=body["uri"], epoch=body["epoch"],
                     step=body["step"], stage_index=body["stage"] - 1, sha256=body["sha256"],
                     size=body["size"], metrics=body.get("metrics") or {})
    db.add(row)
    db.flush()
    policy = run.recipe["checkpoint"]
    kept = list(db.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id, Checkpoint.kept.is_(True))
                           .order_by(Checkpoint.step, Checkpoint.id)))
    forked_from = set(db.scalars(select(Run.parent_checkpoint_id).where(Run.parent_checkpoint_id.is_not(None))))
    doomed = [c for c in retention(kept, policy["keep_last"], policy["keep_best"], policy["best_metric"])
              if c.id not in forked_from]
    now = utcnow()
    for checkpoint in doomed:
        checkpoint.kept = False
        checkpoint.deleted_at = now
    return row, doomed


def retention(kept: list[Checkpoint], keep_last: int, keep_best: int, metric: str) -> list[Checkpoint]:
    """The checkpoints to delete: all but the last `keep_last` and the best `keep_best` by `metric`."""
    last = set(c.id for c in kept[-keep_last:]) if keep_last > 0 else set()
    scored = [c for c in kept if isinstance(c.metrics.get(metric), (int, float))]
    scored.sort(key=lambda c: c.metrics[metric], reverse=not lower_is_better(metric))
    best = set(c.id for c in scored[:keep_best])
    return [c for c in kept if c.id not in last | best]
