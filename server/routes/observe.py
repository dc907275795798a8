"""Read-only views of a run: epochs, step scalars, events, checkpoints; and the workers list."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from pydantic import TypeAdapter

from core.protocol import MAX_ID, DbId
from server import events, leases, logs, reads, reports, runs, steps
from server.db import DATABASE_AWAY
from server.deps import DB, Reader, identify
from server.errors import Unauthorized
from core.api import (ERRORS, CheckpointOut, EpochColumns, EventOut, EventPage, LogOut, LogPage, Page, StepColumns,
                      WorkerOut)
from server.storage import stream_file
from server.views import checkpoint_out, epoch_columns, epoch_rows, event_out, step_columns

router = APIRouter(tags=["observe"], responses=ERRORS)

Limit = Annotated[int, Query(ge=1, le=5000)]


Format = Annotated[Literal["rows", "columns"], Query(description="rows: one object per point; columns: "
                                                               "one array per field (what charts plot)")]


@router.get("/runs/{run_id}/events", response_model=EventPage)
def list_events(run_id: DbId, request: Request, db: DB, _: Reader,
                after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0, limit: Limit = 500) -> Response:
    def build() -> EventPage:
        rows = events.list_events(db, run_id, after=after, limit=limit)
        return EventPage(items=[event_out(e) for e in rows],
                         next_cursor=str(rows[-1].id) if len(rows) == limit else None)
    return reads.run_read(request, db, run_id, build)


@router.get("/runs/{run_id}/epochs", response_model=Page | EpochColumns)
def list_epochs(run_id: DbId, request: Request, db: DB, _: Reader,
                after: Annotated[int, Query(ge=-1, le=MAX_ID)] = -1, limit: Limit = 1000,
                format: Format = "rows") -> Response:
    """The run's epoch history after epoch `after`; ETag and `304` as every poll (server/reads.py)."""
    def build() -> dict:
        run = runs.get_run(db, run_id)
        rows = reports.epochs(db, run_id, after=after, limit=limit)
        cursor = str(rows[-1].epoch) if len(rows) == limit else None
        if format == "columns":
            return epoch_columns(run, rows, cursor)
        return {"items": epoch_rows(run, rows), "next_cursor": cursor}
    return reads.run_read(request, db, run_id, build)


@router.get("/runs/{run_id}/steps", response_model=Page | StepColumns)
def list_steps(run_id: DbId, request: Request, db: DB, _: Reader,
               after: Annotated[int, Query(ge=-1, le=2**62)] = -1,
               max_points: Annotated[int, Query(ge=1, le=10_000)] = 1000, format: Format = "rows") -> Response:
    """At most `max_points` step points after step `after`, evenly spaced in steps, the newest included."""
    def build() -> dict:
        points = steps.thinned(db, run_id, after=after, max_points=max_points)
        cursor = str(points[-1]["step"]) if points else None
        return step_columns(points, cursor) if format == "columns" else {"items": points, "next_cursor": cursor}
    return reads.run_read(request, db, run_id, build)


@router.get("/runs/{run_id}/logs", response_model=LogPage)
def list_logs(run_id: DbId, db: DB, _: Reader, after: Annotated[int, Query(ge=0, le=2**62)] = 0,
              attempt: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None, limit: Limit = 1000) -> LogPage:
    """What the run's worker wrote (log records, stdout, stderr), oldest first, after line id `after`."""
    run = runs.get_run(db, run_id)
    rows = logs.lines(db, run_id, after=after, attempt=attempt, limit=limit)
    return LogPage(items=[LogOut.model_validate(r, from_attributes=True) for r in rows],
                   next_cursor=str(rows[-1].id) if len(rows) == limit else None, dropped=logs.dropped(run))


@router.get("/runs/{run_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(run_id: DbId, request: Request, db: DB, _: Reader) -> Response:
    return reads.run_read(request, db, run_id,
                     lambda: TypeAdapter(list[CheckpointOut]).dump_python(
                         [checkpoint_out(r) for r in reports.checkpoints(db, run_id)], mode="json"))



@router.get("/runs/{run_id}/checkpoints/{checkpoint_id}/file", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the checkpoint bytes"}})
def download_checkpoint(run_id: DbId, checkpoint_id: DbId, request: Request, db: DB,
                        _: Reader) -> StreamingResponse:
    row = reports.kept_checkpoint(db, run_id, checkpoint_id)
    chunks, size = stream_file(request.app.state.settings.artifacts_url, row.uri)
    headers = {"Content-Length": str(size), "X-Checksum-SHA256": row.sha256,
               "Content-Disposition": f'attachment; filename="run{run_id}-ckpt{checkpoint_id}.pt"'}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/workers", response_model=list[WorkerOut])
def list_workers(db: DB, _: Reader) -> list[WorkerOut]:
    return [WorkerOut.model_validate(w, from_attributes=True) for w in leases.list_workers(db)]


# A comment on an idle stream, so proxies and browsers keep the connection open. FastAPI pings on
# its own after 15 s of silence too, but its interval is private; this one a test can shorten.
KEEPALIVE_S = 15.0
STREAM_POLL_S = 0.5


@router.get("/events/stream", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "one SSE event per audit row"}})
async def event_stream(request: Request, _: Reader, after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
                       last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None,
                       ) -> AsyncIterable[ServerSentEvent]:
    """Server-sent events for every run change: one `event` per audit-log row (`id` is the row's),
    polled from the database so it works the same with any number of server processes. A browser
    that reconnects sends `Last-Event-ID` and resumes after it (as `?after=` does); without either
    the stream starts from now. An event whose transaction committed after a later one's is still
    sent, late (`events.Cursor`). It ends when its token is revoked and when the server shuts down,
    and outlives a database outage (it polls again once the database is back)."""
    state = request.app.state
    authorization, quiet = request.headers.get("authorization"), 0.0
    start = last_event_id if last_event_id is not None else after
    if start is None:
        start = await run_in_threadpool(_newest, state)
    cursor = events.Cursor(start)
    yield ServerSentEvent(comment="sala event stream")  # from here on, no event is missed
    while not state.stopping.is_set():
        try:
            rows = await run_in_threadpool(_poll, state, authorization, cursor)
        except Unauthorized:
            return
        except DATABASE_AWAY:
            rows = []
        for row in rows:
            yield ServerSentEvent(data=row, event=row.kind, id=str(row.id))
        quiet = 0.0 if rows else quiet + STREAM_POLL_S
        if quiet >= KEEPALIVE_S:
            yield ServerSentEvent(comment="keep-alive")
            quiet = 0.0
        await anyio.sleep(STREAM_POLL_S)


def _poll(state, authorization: str | None, cursor: events.Cursor) -> list[EventOut]:
    """The caller identified again (a revoked token ends its stream), then the events after the
    cursor. A short read of its own, not the request's: a stream lives for hours and must hold no
    connection or transaction between polls."""
    identify(state, authorization)
    with state.sessionmaker() as db:
        return [event_out(row) for row in cursor.poll(db)]


def _newest(state) -> int:
    with state.sessionmaker() as db:
        return events.last_id(db)
