"""Read-only views of a run: epochs, step scalars, events, checkpoints; and the workers list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, or_, select

from server import events, runs
from server.deps import DB, Reader
from server.errors import NotFound
from server.models import Checkpoint, EpochReport, StepScalar, Worker
from server.schemas import ERRORS, DbId, CheckpointOut, EventPage, Page
from server.storage import stream_file
from server.views import checkpoint_out, epoch_out, event_out

router = APIRouter(tags=["observe"], responses=ERRORS)

Limit = Annotated[int, Query(ge=1, le=5000)]


@router.get("/runs/{run_id}/events", response_model=EventPage)
def list_events(run_id: DbId, db: DB, _: Reader, after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                limit: Limit = 500) -> EventPage:
    runs.get_run(db, run_id)
    rows = events.list_events(db, run_id, after=after, limit=limit)
    return EventPage(items=[event_out(e) for e in rows],
                     next_cursor=str(rows[-1].id) if len(rows) == limit else None)


@router.get("/runs/{run_id}/epochs", response_model=Page)
def list_epochs(run_id: DbId, db: DB, _: Reader, after: Annotated[int, Query(ge=-1, le=2**31 - 1)] = -1,
                limit: Limit = 1000) -> Page:
    run = runs.get_run(db, run_id)
    rows = list(db.scalars(select(EpochReport).where(
        EpochReport.run_id == run_id, EpochReport.superseded.is_(False), EpochReport.epoch > after)
        .order_by(EpochReport.epoch).limit(limit)))
    items = [epoch_out(run, r).model_dump(mode="json") for r in rows]
    return Page(items=items, next_cursor=str(rows[-1].epoch) if len(rows) == limit else None)


@router.get("/runs/{run_id}/steps", response_model=Page)
def list_steps(run_id: DbId, db: DB, _: Reader, after: Annotated[int, Query(ge=-1, le=2**62)] = -1,
               max_points: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> Page:
    runs.get_run(db, run_id)
    where = (StepScalar.run_id == run_id, StepScalar.step > after)
    total = db.scalar(select(func.count()).select_from(StepScalar).where(*where)) or 0
    if total == 0:
        return Page(items=[], next_cursor=None)
    # every stride-th row and the last one, picked in SQL so only the kept rows are decoded
    stride = max(1, -(-total // max_points))
    numbered = select(StepScalar.step, StepScalar.values, func.row_number().over(
        order_by=(StepScalar.step, StepScalar.id)).label("n")).where(*where).subquery()
    picked = list(db.execute(select(numbered.c.step, numbered.c["values"])
                             .where(or_((numbered.c.n - 1) % stride == 0, numbered.c.n == total))
                             .order_by(numbered.c.n)))
    return Page(items=[{"step": s, **v} for s, v in picked], next_cursor=str(picked[-1][0]))


@router.get("/runs/{run_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(run_id: DbId, db: DB, _: Reader) -> list[CheckpointOut]:
    runs.get_run(db, run_id)
    rows = db.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.id))
    return [checkpoint_out(r) for r in rows]


@router.get("/runs/{run_id}/checkpoints/{checkpoint_id}/file", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the checkpoint bytes"}})
def download_checkpoint(run_id: DbId, checkpoint_id: DbId, request: Request, db: DB,
                        _: Reader) -> StreamingResponse:
    row = db.get(Checkpoint, checkpoint_id)
    if row is None or row.run_id != run_id:
        raise NotFound(f"checkpoint {checkpoint_id} does not belong to run {run_id}")
    if not row.kept:
        raise NotFound(f"checkpoint {checkpoint_id} was deleted by retention")
    chunks, size = stream_file(request.app.state.settings.artifacts_url, row.uri)
    headers = {"Content-Length": str(size), "X-Checksum-SHA256": row.sha256,
               "Content-Disposition": f'attachment; filename="run{run_id}-ckpt{checkpoint_id}.pt"'}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/workers")
def list_workers(db: DB, _: Reader) -> list[dict]:
    rows = db.scalars(select(Worker).order_by(Worker.id))
    return [{"id": w.id, "name": w.name, "host": w.host, "devices": w.devices, "version": w.version,
             "registered_at": w.registered_at, "last_seen_at": w.last_seen_at} for w in rows]


@router.get("/events/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "one SSE event per audit row"}})
async def event_stream(request: Request, _: Reader,
                       after: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None) -> StreamingResponse:
    """Server-sent events for every run change: one `event` per audit-log row, polled from the
    database so it works the same with any number of server processes."""
    from fastapi.concurrency import run_in_threadpool

    import anyio

    from server.models import ControlEvent

    def fetch(cursor: int | None) -> list[ControlEvent]:
        with request.app.state.sessionmaker() as db:
            if cursor is None:
                return [ControlEvent(id=db.scalar(select(func.max(ControlEvent.id))) or 0)]
            return list(db.scalars(select(ControlEvent).where(ControlEvent.id > cursor)
                                   .order_by(ControlEvent.id).limit(500)))

    async def stream():
        cursor = after
        yield ": sala event stream\n\n"
        while not await request.is_disconnected():
            rows = await run_in_threadpool(fetch, cursor)
            if cursor is None:
                cursor = rows[0].id
                continue
            for row in rows:
                cursor = row.id
                yield f"id: {row.id}\nevent: {row.kind}\ndata: {event_out(row).model_dump_json()}\n\n"
            await anyio.sleep(0.5)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
