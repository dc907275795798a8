"""A worker's alarms: non-finite losses roll the run back (`core.lr.rollback_or_fail`), a corrupt
checkpoint leaves the run's kept set so the next attempt resumes from the one before, a failed rank
of a distributed run restarts its group (a counted restart)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core import lr as lr_rules
from core.protocol import Alert
from server import events, runs
from server.leases import resume_point
from server.models import Checkpoint, Run, utcnow


def alert(db: Session, run: Run, message: Alert, actor: str) -> str | None:
    """Record the alarm; returns what the worker must do now (rollback | fail), or None.

    Non-finite losses piling up roll the run back to its last checkpoint with the lr times
    `core.lr.ROLLBACK_FACTOR`, `training.max_rollbacks` times; after that the run fails with the reason."""
    detail = message.detail
    events.record(db, run.id, "alert", actor, alert=message.kind, **{k: v for k, v in detail.items() if k != "kind"})
    if message.kind == "corrupt_checkpoint":
        return _drop_corrupt(db, run, detail)
    if message.kind == "rank_failed":
        return _restart_group(db, run, detail)
    if message.kind != "nonfinite":
        return None
    why = f"{detail.get('consecutive')} non-finite losses in a row at step {detail.get('step')}"
    if lr_rules.rollback_or_fail(run.rollbacks, runs.recipe_of(run).training.max_rollbacks) == "fail":
        run.error = f"non-finite losses persisted after {run.rollbacks} rollback(s) with reduced lr (last: {why})"
        events.record(db, run.id, "rollback_exhausted", "server", reason=run.error)
        return "fail"
    run.rollbacks += 1
    runs.reduce_lr(db, run, lr_rules.ROLLBACK_FACTOR, actor="server", reason=f"rollback {run.rollbacks}: {why}")
    checkpoint = resume_point(db, run)
    events.record(db, run.id, "rollback", "server", rollback=run.rollbacks, auto_scale=run.lr_auto_scale,
                  checkpoint_id=checkpoint.id if checkpoint else None, reason=why)
    return "rollback"


def _restart_group(db: Session, run: Run, detail: dict) -> str:
    """A rank of a distributed run died or a collective timed out: the whole group restarts from the
    last checkpoint in a new attempt. It counts as a restart, as a lost lease does, so a run whose
    ranks keep dying fails past `max_restarts` instead of looping."""
    if run.restarts >= run.max_restarts:
        run.error = (f"a rank failed after {run.restarts} restart(s): "
                     f"{str(detail.get('reason', 'exit code ' + str(detail.get('exit_code'))))[:500]}")
        return "fail"
    run.restarts += 1
    return "rollback"


def _drop_corrupt(db: Session, run: Run, detail: dict) -> str | None:
    """A checkpoint that failed verification leaves the run's kept set, so the next claim resumes
    from the one before it; the worker releases the run without it counting as a restart."""
    checkpoint = db.get(Checkpoint, int(detail.get("checkpoint_id") or 0))
    if checkpoint is None or checkpoint.run_id != run.id or not checkpoint.kept:
        return None  # a fork's parent checkpoint is not this run's to drop: the run fails instead
    checkpoint.kept = False
    checkpoint.deleted_at = utcnow()
    events.record(db, run.id, "checkpoint_corrupt", "server", checkpoint_id=checkpoint.id, uri=checkpoint.uri,
                  reason=str(detail.get("reason", ""))[:300])
    return "rollback"
