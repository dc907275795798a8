"""The worker protocol: register, claim (long-poll), heartbeat, epoch and checkpoint reports, finish."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from server import leases, reports
from server.deps import DB, WorkerAuth
from server.errors import Forbidden
from server.directives import directive
from server.storage import check_uri
from server.schemas import ERRORS, AlertBody, DbId, CheckpointBody, ClaimBody, EpochBody, FinishBody, HeartbeatBody, WorkerRegister
from server.views import checkpoint_out, run_out

router = APIRouter(tags=["workers"], responses=ERRORS)
CLAIM_POLL_S = 0.25


@router.post("/workers", status_code=201)
def register_worker(body: WorkerRegister, request: Request, db: DB, who: WorkerAuth) -> dict:
    worker = leases.register(db, name=body.name, host=body.host, devices=body.devices,
                             version=body.version, token_id=who.token_id)
    settings = request.app.state.settings
    return {"worker_id": worker.id, "heartbeat_s": settings.heartbeat_seconds,
            "lease_s": settings.lease_seconds, "artifacts_url": settings.artifacts_url}


@router.post("/workers/{worker_id}/claim", responses={204: {"description": "nothing queued"}})
async def claim_run(worker_id: DbId, request: Request, who: WorkerAuth, body: ClaimBody | None = None):
    """Long-poll without holding a transaction (or SQLite's write lock) while waiting."""
    await run_in_threadpool(_check_owner, request.app, worker_id, who)
    wait_s = body.wait_s if body else 0.0
    deadline = anyio.current_time() + wait_s
    while True:
        answer = await run_in_threadpool(_try_claim, request.app, worker_id)
        if answer is not None or anyio.current_time() >= deadline or await request.is_disconnected():
            return answer if answer is not None else Response(status_code=204)
        await anyio.sleep(CLAIM_POLL_S)


def _check_owner(app, worker_id: int, who) -> None:
    """A worker registered with a token claims only with that token, so the audit log is true."""
    with app.state.sessionmaker() as db:
        worker = leases.get_worker(db, worker_id)
    if worker.token_id is not None and worker.token_id != who.token_id and who.role != "admin":
        raise Forbidden(f"worker {worker_id} was registered with another token")


def _try_claim(app, worker_id: int) -> dict | None:
    with app.state.write_sessionmaker() as db, db.begin():
        worker = leases.get_worker(db, worker_id)
        run = leases.claim(db, worker, app.state.settings.lease_seconds)
        if run is None:
            return None
        checkpoint = db.get(leases.Checkpoint, run.resume_checkpoint_id) if run.resume_checkpoint_id else None
        return {"run": run_out(run).model_dump(mode="json"), "recipe": run.recipe,
                "lease_token": run.lease_token, "attempt": run.attempt,
                "lease_expires_at": run.lease_expires_at.isoformat(),
                "resume_checkpoint": checkpoint_out(checkpoint).model_dump(mode="json") if checkpoint else None,
                "directive": directive(db, run)}


@router.post("/runs/{run_id}/heartbeat")
def heartbeat(run_id: DbId, body: HeartbeatBody, request: Request, db: DB, _: WorkerAuth) -> dict:
    run = leases.held_run(db, run_id, body.lease_token)
    leases.heartbeat(db, run, epoch=body.epoch, step=body.step, scalars=body.scalars,
                     applied=[a.model_dump() for a in body.applied], lr_schedule=body.lr_schedule,
                     lease_seconds=request.app.state.settings.lease_seconds,
                     horizon=request.app.state.settings.step_horizon,
                     bucket=request.app.state.settings.step_rollup_bucket)
    return {"lease_expires_at": run.lease_expires_at, "directive": directive(db, run)}


@router.post("/runs/{run_id}/epochs")
def report_epoch(run_id: DbId, body: EpochBody, request: Request, db: DB, _: WorkerAuth) -> dict:
    run = leases.held_run(db, run_id, body.lease_token)
    leases.renew(run, request.app.state.settings.lease_seconds)
    leases.acknowledge(db, run, [a.model_dump() for a in body.applied])
    row, complete = reports.record_epoch(db, run, body.model_dump(exclude={"lease_token", "applied"}))
    return {"epoch": row.epoch, "directive": directive(db, run, complete=complete)}


@router.post("/runs/{run_id}/checkpoints", status_code=201)
def report_checkpoint(run_id: DbId, body: CheckpointBody, request: Request, db: DB, _: WorkerAuth) -> dict:
    run = leases.held_run(db, run_id, body.lease_token)
    check_uri(body.uri)
    leases.renew(run, request.app.state.settings.lease_seconds)
    row, doomed = reports.record_checkpoint(db, run, body.model_dump(exclude={"lease_token"}))
    return {"checkpoint_id": row.id, "delete": [c.id for c in doomed],
            "delete_uris": [c.uri for c in doomed]}


@router.post("/runs/{run_id}/finish")
def finish_run(run_id: DbId, body: FinishBody, db: DB, who: WorkerAuth) -> dict:
    run = leases.held_run(db, run_id, body.lease_token)
    leases.finish(db, run, body.status, body.error, who.actor)
    return {"run": run_out(run).model_dump(mode="json")}


@router.post("/runs/{run_id}/alerts")
def raise_alert(run_id: DbId, body: AlertBody, request: Request, db: DB, who: WorkerAuth) -> dict:
    """The worker's alarm; the answer says whether to roll back to the last checkpoint or fail."""
    run = leases.held_run(db, run_id, body.lease_token)
    leases.renew(run, request.app.state.settings.lease_seconds)
    action = leases.alert(db, run, body.kind, body.detail, who.actor)
    return {"action": action or "continue", "reason": run.error if action == "fail" else None,
            "directive": directive(db, run)}
