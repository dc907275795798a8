"""The audit log. Every state change writes exactly one event in the same transaction, and the
webhooks that asked for its kind get their delivery rows in that transaction too."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server import webhooks
from server.models import ControlEvent


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


def since(db: Session, after: int, limit: int = 500) -> list[ControlEvent]:
    """Events of every run after id `after`, oldest first (the event stream)."""
    return list(db.scalars(select(ControlEvent).where(ControlEvent.id > after).order_by(ControlEvent.id).limit(limit)))


def last_id(db: Session) -> int:
    return db.scalar(select(func.max(ControlEvent.id))) or 0
