"""A run's log lines: stored per attempt as its worker ships them, capped, and read back by cursor.

The cap (`SALA_LOG_LINES` per attempt) keeps the newest lines: when a batch overflows it, the
oldest go and `runs.log_dropped` counts them, with the lines the worker itself had to drop."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.protocol import LogBatch
from server.models import Run, RunLog


def append(db: Session, run: Run, batch: LogBatch, cap: int) -> int:
    """Store a batch for the run's current attempt; returns the lines of that attempt dropped so far."""
    db.add_all(RunLog(run_id=run.id, attempt=run.attempt, ts=line.ts, level=line.level, source=line.source,
                      message=line.message) for line in batch.lines)
    db.flush()
    of_attempt = (RunLog.run_id == run.id) & (RunLog.attempt == run.attempt)
    excess = (db.scalar(select(func.count()).select_from(RunLog).where(of_attempt)) or 0) - cap
    if excess > 0:
        last = db.scalar(select(RunLog.id).where(of_attempt).order_by(RunLog.id).offset(excess - 1).limit(1))
        db.execute(delete(RunLog).where(of_attempt, RunLog.id <= last))
    dropped = batch.dropped + max(0, excess)
    key = str(run.attempt)
    if dropped:
        run.log_dropped = {**(run.log_dropped or {}), key: (run.log_dropped or {}).get(key, 0) + dropped}
    return (run.log_dropped or {}).get(key, 0)


def lines(db: Session, run_id: int, *, after: int, attempt: int | None, limit: int) -> list[RunLog]:
    """Lines after id `after`, oldest first, of one attempt or all."""
    query = select(RunLog).where(RunLog.run_id == run_id, RunLog.id > after)
    if attempt is not None:
        query = query.where(RunLog.attempt == attempt)
    return list(db.scalars(query.order_by(RunLog.id).limit(limit)))


def dropped(run: Run) -> dict[int, int]:
    return {int(k): v for k, v in (run.log_dropped or {}).items()}
