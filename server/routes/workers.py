"""The worker protocol: register, claim (long-poll), heartbeat, epoch and checkpoint reports, alerts,
finish. Bodies and answers are `core.protocol`'s types, the ones the worker builds and parses."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from core.protocol import (
    Alert,
    AlertAnswer,
    CheckpointAnswer,
    CheckpointMessage,
    Claim,
    ClaimRequest,
    DbId,
    EpochAnswer,
    EpochMessage,
    Finish,
    FinishAnswer,
    Heartbeat,
    HeartbeatAnswer,
    LogAnswer,
    LogBatch,
    Message,
    Registered,
    WorkerHello,
)
from server import leases, logs, reports, rollbacks
from server.db import transaction
from server.deps import DB, WorkerAuth
from server.directives import directive
from server.errors import Forbidden
from core.api import ERRORS
from server.storage import check_report
from server.views import claim_out

router = APIRouter(tags=["workers"], responses=ERRORS)
CLAIM_POLL_S = 0.25


@router.post("/workers", status_code=201, response_model=Registered)
def register_worker(body: WorkerHello, request: Request, db: DB, who: WorkerAuth) -> Registered:
    worker = leases.register(db, body, token_id=who.token_id)
    settings = request.app.state.settings
    return Registered(worker_id=worker.id, heartbeat_s=settings.heartbeat_seconds, lease_s=settings.lease_seconds,
                      artifacts_url=settings.artifacts_url)


@router.post("/workers/{worker_id}/claim", response_model=Claim, responses={204: {"description": "nothing queued"}})
async def claim_run(worker_id: DbId, request: Request, who: WorkerAuth, body: ClaimRequest | None = None):
    """Long-poll for a queued run. Each try opens a short transaction of its own instead of the
    request's: waiting must hold no transaction (on SQLite, no write lock) and no connection."""
    await run_in_threadpool(_check_owner, request.app, worker_id, who)
    deadline = anyio.current_time() + (body.wait_s if body else 0.0)
    while True:
        answer = await run_in_threadpool(_try_claim, request.app, worker_id, body or ClaimRequest())
        if answer is not None or anyio.current_time() >= deadline or request.app.state.stopping.is_set() \
                or await request.is_disconnected():
            return answer if answer is not None else Response(status_code=204)
        await anyio.sleep(CLAIM_POLL_S)


def _check_owner(app, worker_id: int, who) -> None:
    """A worker registered with a token claims only with that token, so the audit log is true."""
    with app.state.sessionmaker() as db:  # the claim's own short read, before it waits
        worker = leases.get_worker(db, worker_id)
    if worker.token_id is not None and worker.token_id != who.token_id and who.role != "admin":
        raise Forbidden(f"worker {worker_id} was registered with another token")


def _try_claim(app, worker_id: int, ask: ClaimRequest) -> Claim | None:
    with transaction(app.state.write_sessionmaker) as db:
        run = leases.claim(db, leases.get_worker(db, worker_id), app.state.settings.lease_seconds,
                           nodes=ask.nodes, processes_per_node=ask.processes_per_node)
        if run is None:
            return None
        return claim_out(run, leases.resume_checkpoint(db, run), directive(db, run))


def _count_nonfinite(request: Request, kind: str, message: Message) -> None:
    if message.nonfinite:
        request.app.state.metrics.nonfinite.labels(kind).inc(message.nonfinite)


@router.post("/runs/{run_id}/heartbeat", response_model=HeartbeatAnswer)
def heartbeat(run_id: DbId, body: Heartbeat, request: Request, db: DB, _: WorkerAuth) -> HeartbeatAnswer:
    settings = request.app.state.settings
    run = leases.held_run(db, run_id, body.lease_token)
    _count_nonfinite(request, "heartbeat", body)
    leases.heartbeat(db, run, body, lease_seconds=settings.lease_seconds, horizon=settings.step_horizon,
                     bucket=settings.step_rollup_bucket)
    return HeartbeatAnswer(lease_expires_at=run.lease_expires_at, directive=directive(db, run))


@router.post("/runs/{run_id}/epochs", response_model=EpochAnswer)
def report_epoch(run_id: DbId, body: EpochMessage, request: Request, db: DB, _: WorkerAuth) -> EpochAnswer:
    run = leases.held_run(db, run_id, body.lease_token)
    _count_nonfinite(request, "epoch", body)
    leases.renew(run, request.app.state.settings.lease_seconds)
    leases.acknowledge(db, run, body.applied)
    row = reports.record_epoch(db, run, body)
    return EpochAnswer(epoch=row.epoch, directive=directive(db, run))


@router.post("/runs/{run_id}/checkpoints", status_code=201, response_model=CheckpointAnswer)
def report_checkpoint(run_id: DbId, body: CheckpointMessage, request: Request, db: DB,
                      _: WorkerAuth) -> CheckpointAnswer:
    run = leases.held_run(db, run_id, body.lease_token)
    check_report(request.app.state.settings.artifacts_url, run.id, body.uri)
    _count_nonfinite(request, "checkpoint", body)
    leases.renew(run, request.app.state.settings.lease_seconds)
    row, doomed = reports.record_checkpoint(db, run, body)
    return CheckpointAnswer(checkpoint_id=row.id, delete=[c.id for c in doomed], delete_uris=[c.uri for c in doomed])


@router.post("/runs/{run_id}/logs", response_model=LogAnswer)
def ship_logs(run_id: DbId, body: LogBatch, request: Request, db: DB, _: WorkerAuth) -> LogAnswer:
    """Lines the run wrote, kept for its current attempt up to `SALA_LOG_LINES`."""
    run = leases.held_run(db, run_id, body.lease_token)
    dropped = logs.append(db, run, body, request.app.state.settings.log_lines)
    return LogAnswer(stored=len(body.lines), dropped=dropped)


@router.post("/runs/{run_id}/finish", response_model=FinishAnswer)
def finish_run(run_id: DbId, body: Finish, db: DB, who: WorkerAuth) -> FinishAnswer:
    run = leases.held_run(db, run_id, body.lease_token)
    leases.finish(db, run, body.status, body.error, who.actor)
    return FinishAnswer(run_id=run.id, status=run.status)


@router.post("/runs/{run_id}/alerts", response_model=AlertAnswer)
def raise_alert(run_id: DbId, body: Alert, request: Request, db: DB, who: WorkerAuth) -> AlertAnswer:
    """The worker's alarm; the answer says whether to roll back to the last checkpoint or fail."""
    run = leases.held_run(db, run_id, body.lease_token)
    _count_nonfinite(request, "alert", body)
    leases.renew(run, request.app.state.settings.lease_seconds)
    action = rollbacks.alert(db, run, body, who.actor)
    return AlertAnswer(action=action or "continue", reason=run.error if action == "fail" else None,
                       directive=directive(db, run))
