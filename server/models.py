"""Typed ORM models. The database holds metadata only; checkpoint bytes live in the artifact store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    inspect,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.orm.util import identity_key

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Ids people and streams hold (a run, a checkpoint a fork starts from, an event cursor) must never
# name another row after a delete: SQLite reuses the highest rowid without AUTOINCREMENT;
# PostgreSQL's sequences never do.
NEVER_REUSED = {"sqlite_autoincrement": True}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    """A training run. Stages are positions in its recipe's stage list, from 0, in every column and
    stored payload (`stage_index`, `latest_metrics["stage"]`, event payloads); the API shows them
    counted from 1 (server/views.py)."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    recipe: Mapped[dict[str, Any]]
    tags: Mapped[list[Any]] = mapped_column(default=list)
    tag_text: Mapped[str] = mapped_column(String(1100), default="")
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    priority: Mapped[int] = mapped_column(default=0)
    max_restarts: Mapped[int] = mapped_column(default=3)
    attempt: Mapped[int] = mapped_column(default=0)
    restarts: Mapped[int] = mapped_column(default=0)
    rollbacks: Mapped[int] = mapped_column(default=0, server_default="0")
    # recipe.resources, as columns so a claim can pick a run the worker can launch in its one query
    nodes: Mapped[int] = mapped_column(default=1, server_default="1")
    processes_per_node: Mapped[int] = mapped_column(default=1, server_default="1")

    stage_index: Mapped[int] = mapped_column(default=0)
    stage_held: Mapped[bool] = mapped_column(Boolean, default=False)
    curriculum_complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    epoch: Mapped[int] = mapped_column(default=0)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped in the same transaction as every change to the run or its histories (see
    # `_bump_run_versions` below): polls compare it with their ETag and key cached bodies by it.
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    base_lr: Mapped[float] = mapped_column(Float)
    lr_schedule: Mapped[float | None] = mapped_column(Float)
    lr_override_scale: Mapped[float] = mapped_column(Float, default=1.0)
    lr_override_abs: Mapped[float | None] = mapped_column(Float)
    lr_auto_scale: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")

    checkpoint_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    latest_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    recommendations: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    log_dropped: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None]
    resume_checkpoint_id: Mapped[int | None] = mapped_column(Integer)
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    parent_checkpoint_id: Mapped[int | None] = mapped_column(Integer)

    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    control_requested_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_runs_status_priority", "status", "priority", "id"), NEVER_REUSED)


class StageTransition(Base):
    __tablename__ = "stage_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    from_stage: Mapped[int | None]
    to_stage: Mapped[int]
    epoch: Mapped[int]
    reason: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(100))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EpochReport(Base):
    __tablename__ = "epoch_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    epoch: Mapped[int]
    stage_index: Mapped[int]
    step: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]]
    lr: Mapped[dict[str, Any]]
    duration_s: Mapped[float | None] = mapped_column(Float)
    samples_per_s: Mapped[float | None] = mapped_column(Float)
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("run_id", "attempt", "epoch", name="uq_epoch_reports_run_attempt_epoch"),
        Index("ix_epoch_reports_run_epoch", "run_id", "epoch"),
    )


class StepScalar(Base):
    __tablename__ = "step_scalars"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(BigInteger)
    values: Mapped[dict[str, Any]]
    bucket: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_step_scalars_run_step", "run_id", "step"),
                      Index("ix_step_scalars_run_bucket_step", "run_id", "bucket", "step"))


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int]
    uri: Mapped[str] = mapped_column(Text)
    epoch: Mapped[int]
    step: Mapped[int] = mapped_column(BigInteger)
    stage_index: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    kept: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = NEVER_REUSED


class ControlEvent(Base):
    """The audit log: every request that changed a run, and when the worker applied it."""

    __tablename__ = "control_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(100))
    needs_worker: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[dt.datetime | None]
    applied_step: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_control_events_run_id_id", "run_id", "id"), NEVER_REUSED)


class RunLog(Base):
    """A line a run's worker wrote (a log record, stdout or stderr), kept per attempt up to a cap."""

    __tablename__ = "run_logs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    ts: Mapped[dt.datetime]
    level: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_run_logs_run_attempt_id", "run_id", "attempt", "id"),
                      Index("ix_run_logs_run_id_id", "run_id", "id"))


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]]
    secret: Mapped[str] = mapped_column(String(200))  # kept as given: it signs every delivery
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook: written in the transaction that made the event (an outbox), so a
    restart loses none, and sent in id order per webhook by the server's delivery task."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("control_events.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    response_status: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
                      Index("ix_webhook_deliveries_status_webhook_id", "status", "webhook_id"))


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(200), default="")
    devices: Mapped[list[Any]] = mapped_column(default=list)
    version: Mapped[str] = mapped_column(String(50), default="")
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    registered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


# ---- run versions ---------------------------------------------------------------------------------

# Rows a run's read endpoints show besides the run itself: a change to any bumps the run's version.
RUN_HISTORIES = (StageTransition, EpochReport, StepScalar, Checkpoint, ControlEvent, RunLog)
# Columns no read shows: a heartbeat that only renews its lease leaves cached bodies valid.
UNSEEN_RUN_COLUMNS = frozenset({"lease_expires_at", "updated_at", "version"})
_UNLOADED = "sala_bump_run_ids"


@event.listens_for(Session, "before_flush")
def _bump_run_versions(session: Session, _context, _instances) -> None:
    """The one place a run's version changes: every flush that adds, changes or deletes a run's row
    or a row of its histories bumps it, so no service function can forget to. The bump is SQL
    (`version = version + 1`), not a value read earlier, so two transactions changing one run
    concurrently never write the same version for two different states. Runs not loaded in the
    session are bumped by one UPDATE after the flush, instead of being loaded here."""
    bumped: set[int] = set()
    unloaded: set[int] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Run):
            if obj in session.dirty and obj not in session.deleted and _shown_change(obj):
                obj.version = Run.version + 1
                bumped.add(obj.id)
        elif isinstance(obj, RUN_HISTORIES) and obj.run_id is not None:
            if obj in session.dirty and not session.is_modified(obj, include_collections=False):
                continue
            unloaded.add(obj.run_id)
    for run_id in unloaded - bumped:
        run = session.identity_map.get(identity_key(Run, run_id))
        if run is not None and run not in session.deleted and run not in session.new:
            run.version = Run.version + 1
        else:
            session.info.setdefault(_UNLOADED, set()).add(run_id)


def _shown_change(run: Run) -> bool:
    state = inspect(run)
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in UNSEEN_RUN_COLUMNS)


@event.listens_for(Session, "after_flush")
def _bump_unloaded_runs(session: Session, _context) -> None:
    run_ids = session.info.pop(_UNLOADED, None)
    if run_ids:
        table = Run.__table__
        session.connection().execute(update(table).where(table.c.id.in_(sorted(run_ids)))
                                     .values(version=table.c.version + 1))
