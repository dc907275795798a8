"""The audit log. Every state change writes exactly one event in the same transaction, and the
webhooks that asked for its kind get their delivery rows in that transaction too."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from server import webhooks
from server.models import ControlEvent, utcnow

GAP_GRACE_S = 30.0  # how long a skipped id is waited for before it counts as rolled back
MAX_GAPS = 1000


def record(db: Session, run_id: int | None, kind: str, actor: str, needs_worker: bool = False,
           **payload: Any) -> ControlEvent:
    event = ControlEvent(run_id=run_id, kind=kind, actor=actor, needs_worker=needs_worker,
                         payload={k: v for k, v in payload.items() if v is not None})
    db.add(event)
    db.flush()
    webhooks.on_event(db, event)
    return event


def pending_for_worker(db: Session, run_id: int) -> list[ControlEvent]:
    return list(db.scalars(select(ControlEvent).where(
        ControlEvent.run_id == run_id, ControlEvent.needs_worker.is_(True),
        ControlEvent.applied_at.is_(None)).order_by(ControlEvent.id)))


def list_events(db: Session, run_id: int, after: int, limit: int,
                kinds: frozenset[str] | None = None) -> list[ControlEvent]:
    query = select(ControlEvent).where(ControlEvent.run_id == run_id, ControlEvent.id > after)
    if kinds:
        query = query.where(ControlEvent.kind.in_(kinds))
    return list(db.scalars(query.order_by(ControlEvent.id).limit(limit)))


class Cursor:
    """Where an event stream stands, and the ids it passed that may still arrive.

    An event's id is drawn when its transaction inserts it but becomes visible when that commits,
    so with concurrent writers (two server processes, or one with concurrent requests, on
    PostgreSQL) id N+1 can be read before N commits: reading `id > last` alone would skip N for
    good. The ids missing below a young row are asked for again on every poll for GAP_GRACE_S, then
    given up (a rolled-back transaction never fills its id); such an event is sent late, after
    higher ids. Gaps below old rows (deleted runs' events) are not waited for."""

    def __init__(self, after: int):
        self.after = after
        self.gaps: dict[int, float] = {}

    def poll(self, db: Session, limit: int = 500) -> list[ControlEvent]:
        now = time.monotonic()
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < GAP_GRACE_S}
        wanted = ControlEvent.id > self.after
        if self.gaps:
            wanted = or_(wanted, ControlEvent.id.in_(list(self.gaps)))
        rows = list(db.scalars(select(ControlEvent).where(wanted).order_by(ControlEvent.id).limit(limit)))
        young = utcnow() - dt.timedelta(seconds=GAP_GRACE_S)
        for row in rows:
            if self.gaps.pop(row.id, None) is not None or row.id <= self.after:
                continue
            if row.id > self.after + 1 and row.created_at >= young:
                for missing in range(max(self.after + 1, row.id - MAX_GAPS), row.id):
                    self.gaps.setdefault(missing, now)
            self.after = row.id
        if len(self.gaps) > MAX_GAPS:
            self.gaps = dict(sorted(self.gaps.items())[-MAX_GAPS:])
        return rows


def last_id(db: Session) -> int:
    return db.scalar(select(func.max(ControlEvent.id))) or 0
