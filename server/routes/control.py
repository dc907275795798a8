"""Steering a run: curriculum stage and learning-rate overrides, checkpoint now."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from core.protocol import DbId
from server import runs
from server.deps import DB, Operator, Reader
from server.reads import run_read
from core.api import ERRORS, Accepted, LrOut, LrRequest, ReasonBody, StageHold, StageJump, StagesOut
from server.views import event_out, run_out, stages_out

router = APIRouter(prefix="/runs/{run_id}", tags=["control"], responses=ERRORS)


@router.get("/stages", response_model=StagesOut)
def get_stages(run_id: DbId, request: Request, db: DB, _: Reader) -> Response:
    def build() -> StagesOut:
        run = runs.get_run(db, run_id)
        return stages_out(run, runs.transitions(db, run))
    return run_read(request, db, run_id, build)


@router.post("/stage", status_code=202, response_model=Accepted)
def jump_stage(run_id: DbId, body: StageJump, db: DB, who: Operator) -> Accepted:
    run = runs.get_run(db, run_id, for_update=True)
    event = runs.set_stage(db, run, who.actor, body.to, body.reason)
    return Accepted(event_id=event.id, run=run_out(run))


@router.post("/stage/advance", status_code=202, response_model=Accepted)
def advance_stage(run_id: DbId, db: DB, who: Operator, body: ReasonBody | None = None) -> Accepted:
    run = runs.get_run(db, run_id, for_update=True)
    event = runs.advance_stage(db, run, who.actor, body.reason if body else None)
    return Accepted(event_id=event.id, run=run_out(run))


@router.post("/stage/hold", response_model=Accepted)
def hold_stage(run_id: DbId, body: StageHold, db: DB, who: Operator) -> Accepted:
    run = runs.get_run(db, run_id, for_update=True)
    event = runs.hold_stage(db, run, who.actor, body.hold)
    return Accepted(event_id=event.id, run=run_out(run))


@router.get("/lr", response_model=LrOut)
def get_lr(run_id: DbId, request: Request, db: DB, _: Reader) -> Response:
    def build() -> LrOut:
        run = runs.get_run(db, run_id)
        return LrOut(**runs.lr_parts(run), base_lr=run.base_lr,
                     history=[event_out(e) for e in runs.lr_history(db, run)])
    return run_read(request, db, run_id, build)


@router.post("/lr", status_code=202, response_model=Accepted)
def override_lr(run_id: DbId, body: LrRequest, db: DB, who: Operator) -> Accepted:
    run = runs.get_run(db, run_id, for_update=True)
    event = runs.set_lr(db, run, who.actor, lr=body.lr, scale=body.scale, clear=body.clear,
                        reason=body.reason)
    return Accepted(event_id=event.id, run=run_out(run))


@router.post("/checkpoint", status_code=202, response_model=Accepted)
def checkpoint_now(run_id: DbId, db: DB, who: Operator) -> Accepted:
    run = runs.get_run(db, run_id, for_update=True)
    event = runs.request_checkpoint(db, run, who.actor)
    return Accepted(event_id=event.id, run=run_out(run))
