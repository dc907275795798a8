"""Worker registration, claims with leases, heartbeats, acknowledgements, finish, and the reaper.

A claim hands out a lease token; every later worker write must carry it. A write with any other
token is a 409 (fencing), so a worker whose run was re-queued and claimed again cannot write."""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from core.protocol import AppliedEvent, Heartbeat, WorkerHello
from server import events, steps, webhooks
from server.errors import NotFound, StaleLease
from server.models import Checkpoint, ControlEvent, EpochReport, Run, Worker, utcnow
from server.states import HELD_BY_WORKER, Status, next_status

log = logging.getLogger("sala.leases")


def register(db: Session, hello: WorkerHello, token_id: int | None) -> Worker:
    worker = Worker(name=hello.name, host=hello.host, devices=hello.devices, version=hello.version,
                    token_id=token_id)
    db.add(worker)
    db.flush()
    return worker


def list_workers(db: Session) -> list[Worker]:
    return list(db.scalars(select(Worker).order_by(Worker.id)))


def get_worker(db: Session, worker_id: int) -> Worker:
    worker = db.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id} is not registered")
    return worker


def claim(db: Session, worker: Worker, lease_seconds: float, nodes: int = 1,
          processes_per_node: int | None = None) -> Run | None:
    """Pick and claim the next queued run this worker can launch, in one statement's lock: FOR
    UPDATE SKIP LOCKED on PostgreSQL; on SQLite the caller's transaction already holds the write
    lock (BEGIN IMMEDIATE). A worker spanning M machines runs single-machine runs and M-machine
    runs (torchrun needs every node it was started with); `processes_per_node` None is a CPU worker,
    which can start any number of ranks on one machine; every machine of a multi-machine group starts
    the same number, so a multi-machine run must ask for exactly that many."""
    now = utcnow()
    worker.last_seen_at = now
    fits = Run.nodes == 1
    if processes_per_node is not None:
        fits = and_(fits, Run.processes_per_node <= processes_per_node)
    if nodes > 1:
        fits = or_(fits, and_(Run.nodes == nodes, Run.processes_per_node == (processes_per_node or 1)))
    query = select(Run).where(Run.status == Status.QUEUED.value, fits)
    run = db.scalars(
        query.order_by(Run.priority.desc(), Run.id).limit(1).with_for_update(skip_locked=True)
    ).first()
    if run is None:
        return None
    run.status = next_status("claim", run.status).value
    run.worker_id = worker.id
    run.lease_token = secrets.token_hex(16)
    run.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
    run.attempt += 1
    run.started_at = run.started_at or now
    run.control_requested_at = None
    checkpoint = resume_point(db, run)
    run.resume_checkpoint_id = checkpoint.id if checkpoint else None
    if checkpoint is not None and checkpoint.run_id == run.id:
        _supersede_after(db, run, checkpoint.epoch)
    elif checkpoint is None:
        _supersede_after(db, run, 0)
    events.record(db, run.id, "claimed", f"worker:{worker.name}", worker_id=worker.id,
                  attempt=run.attempt, resume_checkpoint_id=run.resume_checkpoint_id)
    return run


def resume_point(db: Session, run: Run) -> Checkpoint | None:
    """The newest kept checkpoint of this run, else the one a fork started from."""
    own = db.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id, Checkpoint.kept.is_(True))
                     .order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).limit(1)).first()
    if own is not None:
        return own
    return db.get(Checkpoint, run.parent_checkpoint_id) if run.parent_checkpoint_id else None


def resume_checkpoint(db: Session, run: Run) -> Checkpoint | None:
    """The checkpoint the current attempt resumes from (fixed when it was claimed)."""
    return db.get(Checkpoint, run.resume_checkpoint_id) if run.resume_checkpoint_id else None


def _supersede_after(db: Session, run: Run, epoch: int) -> None:
    """Reports of a dead attempt after the checkpoint we resume from stay for audit but leave
    the run's history, so the history has neither duplicates nor gaps."""
    stale = list(db.scalars(select(EpochReport).where(
        EpochReport.run_id == run.id, EpochReport.epoch > epoch, EpochReport.superseded.is_(False))))
    for report in stale:
        report.superseded = True
    if stale or run.epoch > epoch:
        run.epoch = epoch


def held_run(db: Session, run_id: int, lease_token: str) -> Run:
    run = db.scalars(select(Run).where(Run.id == run_id).with_for_update()).first()
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    if run.lease_token is None or not secrets.compare_digest(run.lease_token, lease_token) \
            or Status(run.status) not in HELD_BY_WORKER:
        raise StaleLease(f"lease on run {run_id} is no longer yours: the run is {run.status}"
                         + (f" (attempt {run.attempt})" if run.lease_token else ""))
    return run


def renew(run: Run, lease_seconds: float) -> None:
    run.lease_expires_at = utcnow() + dt.timedelta(seconds=lease_seconds)


def heartbeat(db: Session, run: Run, beat: Heartbeat, *, lease_seconds: float, horizon: int = 20_000,
              bucket: int = 100) -> None:
    renew(run, lease_seconds)
    if run.worker_id is not None:
        worker = db.get(Worker, run.worker_id)
        if worker is not None:
            worker.last_seen_at = utcnow()
    run.step = max(run.step, beat.step)
    if beat.lr_schedule is not None:
        run.lr_schedule = beat.lr_schedule
    steps.record(db, run.id, beat.scalars, horizon=horizon, bucket=bucket)
    acknowledge(db, run, beat.applied)


def acknowledge(db: Session, run: Run, applied: list[AppliedEvent]) -> None:
    """Mark control events applied, with the optimizer step where they took effect."""
    if not applied:
        return
    by_id = {a.id: a for a in applied}
    rows = db.scalars(select(ControlEvent).where(ControlEvent.id.in_(by_id),
                                                 ControlEvent.run_id == run.id,
                                                 ControlEvent.applied_at.is_(None)))
    now = utcnow()
    for event in rows:
        ack = by_id[event.id]
        # when the worker applied it, not when the acknowledgement arrived (no worker clock needed)
        event.applied_at = max(event.created_at, now - dt.timedelta(seconds=ack.age_s))
        event.applied_step = ack.step
        if event.kind == "checkpoint_requested":
            run.checkpoint_requested = False
        webhooks.on_applied(db, event)


def finish(db: Session, run: Run, status: str, error: str | None, actor: str) -> None:
    status = _with_pending_request(run, status)
    action = {"completed": "finish_completed", "stopped": "finish_stopped", "failed": "finish_failed",
              "paused": "release_paused", "queued": "requeue"}[status]
    run.status = next_status(action, run.status).value
    _release(run)
    if status in ("completed", "stopped", "failed"):
        run.finished_at = utcnow()
    if error:
        run.error = error[:4000]
    elif status == "failed" and not run.error:
        run.error = "failed without a reason from the worker"
    for event in events.pending_for_worker(db, run.id):
        if event.kind in ("pause_requested", "stop_requested") and status in ("paused", "stopped"):
            event.applied_at, event.applied_step = utcnow(), run.step
    events.record(db, run.id, f"run_{status}" if status != "queued" else "released", actor,
                  error=error[:500] if error else None, epoch=run.epoch, step=run.step)


def _with_pending_request(run: Run, status: str) -> str:
    """A worker that releases a run for its own reasons (SIGTERM, a rollback) still carries out a
    pause or stop a person asked for meanwhile: the run ends paused or stopped, not queued."""
    if status == "queued" and run.status in (Status.PAUSING, Status.STOPPING):
        return "paused" if run.status == Status.PAUSING else "stopped"
    return status


def _release(run: Run) -> None:
    run.lease_token = None
    run.lease_expires_at = None
    run.worker_id = None
    run.checkpoint_requested = False


def reap(db: Session, now: dt.datetime, stop_deadline_seconds: float) -> list[int]:
    """Expired leases: requeue (restarts + 1) or fail past max_restarts; a pause or stop whose
    worker vanished completes anyway; a stop ignored past the deadline is fenced and ended."""
    touched = []
    expired = db.scalars(select(Run).where(Run.status.in_([s.value for s in HELD_BY_WORKER]),
                                           Run.lease_expires_at < now).with_for_update(skip_locked=True))
    for run in expired:
        touched.append(run.id)
        if run.status == Status.STOPPING:
            _end(db, run, Status.STOPPED, "lease expired while stopping; run ended")
        elif run.status == Status.PAUSING:
            _end(db, run, Status.PAUSED, "lease expired while pausing; paused at last checkpoint")
        elif run.restarts >= run.max_restarts:
            _end(db, run, Status.FAILED,
                 f"worker lost {run.restarts + 1} times; max_restarts ({run.max_restarts}) exhausted")
        else:
            run.restarts += 1
            _end(db, run, Status.QUEUED, f"worker lease expired; re-queued (restart {run.restarts})")
    deadline = now - dt.timedelta(seconds=stop_deadline_seconds)
    ignored = db.scalars(select(Run).where(Run.status == Status.STOPPING.value,
                                           Run.control_requested_at < deadline).with_for_update(skip_locked=True))
    for run in ignored:
        touched.append(run.id)
        _end(db, run, Status.STOPPED, f"worker did not stop within {stop_deadline_seconds:g}s; fenced")
    return touched


def _end(db: Session, run: Run, status: Status, why: str) -> None:
    run.status = status.value
    _release(run)
    if status in (Status.STOPPED, Status.FAILED):
        run.finished_at = utcnow()
    if status == Status.FAILED:
        run.error = why
    log.warning("run %s: %s", run.id, why)
    events.record(db, run.id, "lease_expired" if status != Status.STOPPED else "fenced", "server",
                  status=status.value, reason=why)
