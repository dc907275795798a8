"""Webhooks: who wants which events, and the outbox of deliveries written with the events.

Every audit event passes `on_event` in the transaction that records it (an acknowledged override
passes `on_applied`); the kinds a webhook asked for become delivery rows there and then, so a
request never waits on a receiver and a restart loses nothing. `server/delivery.py` sends them.
A webhook whose receiver is away keeps at most MAX_PENDING deliveries waiting; events past that
are written as `dropped` (never sent), so the delivery log shows what was missed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.api import WebhookCreate, WebhookPayload, WebhookRun
from server import views
from server.errors import NotFound
from server.models import ControlEvent, Run, Webhook, WebhookDelivery, utcnow

MAX_PENDING = 1000
MAX_ATTEMPTS = 8
MAX_BACKOFF_S = 3600.0
OVERRIDES = frozenset({"stage_set", "stage_advance", "stage_hold", "lr_set", "lr_scale", "lr_clear",
                       "checkpoint_requested"})
FINISHED = {"run_completed": "run_finished", "run_stopped": "run_finished", "stopped": "run_finished",
            "run_failed": "run_failed"}


def kind_of(event: ControlEvent) -> str | None:
    """The webhook kind an audit event is, if any (pure policy)."""
    if event.kind in ("stage_transition", "alert"):
        return event.kind
    if event.kind == "recommended":
        return "recommendation"
    if event.kind in FINISHED:
        return FINISHED[event.kind]
    if event.kind in ("lease_expired", "fenced"):
        return {"failed": "run_failed", "stopped": "run_finished"}.get(event.payload.get("status"))
    if event.kind in OVERRIDES and not event.needs_worker:
        return "override_applied"  # nothing holds the run: it is in force at once
    return None


def on_event(db: Session, event: ControlEvent) -> None:
    kind = kind_of(event)
    if kind is not None:
        _enqueue(db, event, kind)


def on_applied(db: Session, event: ControlEvent) -> None:
    """A worker acknowledged a person's (or the curriculum's) override."""
    if event.kind in OVERRIDES:
        _enqueue(db, event, "override_applied")


def _enqueue(db: Session, event: ControlEvent, kind: str) -> None:
    hooks = [w for w in db.scalars(select(Webhook).order_by(Webhook.id)) if kind in w.events]
    if not hooks:
        return
    run = db.get(Run, event.run_id) if event.run_id is not None else None
    payload = _payload(event, kind, run)
    for hook in hooks:
        waiting = db.scalar(select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")) or 0
        db.add(WebhookDelivery(webhook_id=hook.id, kind=kind, run_id=event.run_id, event_id=event.id,
                               payload=payload, status="pending" if waiting < MAX_PENDING else "dropped",
                               attempts=0))
    db.flush()


def _payload(event: ControlEvent, kind: str, run: Run | None) -> dict:
    """A snapshot at the moment of the event; the delivery id is added when it is sent."""
    out = views.event_out(event)
    about = None if run is None else WebhookRun(id=run.id, name=run.name, status=run.status,
                                                stage=views.stage_ref(run, run.stage_index))
    body = WebhookPayload(delivery_id=0, kind=kind, text=text(kind, out.kind, out.payload, about, out.applied_step),
                          run=about, event=out)
    return body.model_dump(mode="json", exclude={"delivery_id"})


def text(kind: str, event_kind: str, p: dict, run: WebhookRun | None, applied_step: int | None) -> str:
    """One line a person reads in Slack or Discord."""
    who = f"run #{run.id} “{run.name}”" if run else "Sala"
    if kind == "stage_transition":
        return (f"{who}: stage {p.get('from_stage')} → {p.get('to_stage')} {p.get('to_name') or ''} "
                f"({p.get('reason')}, epoch {p.get('epoch')})")
    if kind == "recommendation":
        return f"{who}: advice: {'; '.join(p.get('messages') or []) or ', '.join(p.get('kinds') or [])}"
    if kind == "alert":
        return f"{who}: alert {p.get('alert') or event_kind}: {p.get('reason') or _details(p)}"
    if kind in ("run_finished", "run_failed"):
        status = run.status if run else kind
        return f"{who} {status}" + (f": {p.get('error') or p.get('reason')}" if kind == "run_failed" else "")
    where = f" at step {applied_step}" if applied_step is not None else ""
    return f"{who}: {event_kind} {_details(p)} applied{where}"


def _details(p: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items() if not isinstance(v, dict | list) and v is not None)


# ---- the webhooks themselves (admin) ------------------------------------------------------------


def create(db: Session, body: WebhookCreate, actor: str) -> Webhook:
    hook = Webhook(name=body.name or body.url[:200], url=body.url, events=sorted(set(body.events)),
                   secret=body.secret, created_by=actor)
    db.add(hook)
    db.flush()
    return hook


def list_webhooks(db: Session) -> list[Webhook]:
    return list(db.scalars(select(Webhook).order_by(Webhook.id)))


def get(db: Session, webhook_id: int) -> Webhook:
    hook = db.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return hook


def remove(db: Session, hook: Webhook) -> None:
    db.delete(hook)
    db.flush()


def deliveries(db: Session, webhook_id: int, *, after: int, limit: int) -> list[WebhookDelivery]:
    return list(db.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id,
                                                         WebhookDelivery.id > after)
                           .order_by(WebhookDelivery.id).limit(limit)))


# ---- sending: what is due, and what came of it ---------------------------------------------------


def claim_due(db: Session, now: dt.datetime, hold_s: float) -> list[tuple[WebhookDelivery, Webhook]]:
    """The oldest pending delivery of each webhook, when its time has come; held for `hold_s` so
    another server process does not send it too. Later ones wait: a receiver sees them in order."""
    heads = select(func.min(WebhookDelivery.id)).where(WebhookDelivery.status == "pending") \
        .group_by(WebhookDelivery.webhook_id)
    due = list(db.scalars(select(WebhookDelivery).where(
        WebhookDelivery.id.in_(heads),
        (WebhookDelivery.next_attempt_at.is_(None)) | (WebhookDelivery.next_attempt_at <= now))
        .with_for_update(skip_locked=True)))
    for row in due:
        row.next_attempt_at = now + dt.timedelta(seconds=hold_s)
    return [(row, db.get(Webhook, row.webhook_id)) for row in due]


def record_attempt(db: Session, delivery_id: int, status: int | None, error: str | None,
                   retry_s: float) -> None:
    """A 2xx delivers it; anything else is retried after retry_s × 2^(tries-1), MAX_ATTEMPTS times."""
    row = db.get(WebhookDelivery, delivery_id)
    if row is None or row.status != "pending":
        return
    now = utcnow()
    row.attempts += 1
    row.response_status, row.error = status, error
    if status is not None and 200 <= status < 300:
        row.status, row.delivered_at, row.next_attempt_at, row.error = "delivered", now, None, None
    elif row.attempts >= MAX_ATTEMPTS:
        row.status, row.next_attempt_at = "failed", None
    else:
        row.next_attempt_at = now + dt.timedelta(seconds=min(MAX_BACKOFF_S, retry_s * 2 ** (row.attempts - 1)))
