"""Run lifecycle: create, list, read, stop, pause, resume, fork, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.background import BackgroundTask

from core.protocol import DbId, NoNul
from server import reads, runs
from server.deps import DB, Operator, Reader
from core.api import ERRORS, Accepted, ForkBody, ReasonBody, RunCreate, RunOut, RunPage, RunPatch
from server.storage import delete_files
from server.views import run_out

router = APIRouter(prefix="/runs", tags=["runs"], responses=ERRORS)


@router.post("", status_code=201, response_model=RunOut)
def create_run(body: RunCreate, db: DB, who: Operator) -> RunOut:
    run = runs.create_run(db, name=body.name, recipe=body.recipe, tags=body.tags,
                          max_restarts=body.max_restarts, priority=body.priority, actor=who.actor)
    return run_out(run, with_recipe=True)


@router.get("", response_model=RunPage)
def list_runs(request: Request, db: DB, _: Reader, status: Annotated[str | None, Query(max_length=200)] = None,
              tag: Annotated[str | None, Query(max_length=50), NoNul] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              cursor: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    """Newest first. The ETag is made of the page's run ids and versions (two integer columns read),
    so an unchanged list is a `304` without any run's JSON decoded; a changed one re-encodes only
    the runs that changed (server/reads.py `run_items`)."""
    statuses = [s for s in (status or "").split(",") if s]
    key = reads.query_key(request)
    versions = runs.list_versions(db, statuses=statuses, tag=tag, limit=limit, cursor=cursor)
    etag = reads.list_etag(key, versions)

    def build() -> bytes:
        items = reads.run_items(request, versions[:limit], lambda ids: [run_out(r) for r in runs.runs_by_id(db, ids)])
        return reads.page(items, runs.list_cursor(versions, limit))
    return reads.respond(request, ("runs", etag, key), etag, build)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: DbId, request: Request, db: DB, _: Reader) -> Response:
    return reads.run_read(request, db, run_id, lambda: run_out(runs.get_run(db, run_id), with_recipe=True))


@router.patch("/{run_id}", response_model=RunOut)
def update_run(run_id: DbId, body: RunPatch, db: DB, who: Operator) -> RunOut:
    """Name, tags and markdown note, in any state; recorded as a `run_updated` event."""
    run = runs.get_run(db, run_id, for_update=True)
    runs.update_run(db, run, who.actor, body.model_dump(exclude_unset=True))
    return run_out(run, with_recipe=True)


@router.post("/{run_id}/stop", status_code=202, response_model=Accepted)
def stop_run(run_id: DbId, db: DB, who: Operator, body: ReasonBody | None = None) -> Accepted:
    run = runs.get_run(db, run_id, for_update=True)
    event = runs.stop(db, run, who.actor, body.reason if body else None)
    return Accepted(event_id=event.id, run=run_out(run))


@router.post("/{run_id}/pause", status_code=202, response_model=Accepted)
def pause_run(run_id: DbId, db: DB, who: Operator, body: ReasonBody | None = None) -> Accepted:
    run = runs.get_run(db, run_id, for_update=True)
    event = runs.pause(db, run, who.actor, body.reason if body else None)
    return Accepted(event_id=event.id, run=run_out(run))


@router.post("/{run_id}/resume", status_code=202, response_model=Accepted)
def resume_run(run_id: DbId, db: DB, who: Operator) -> Accepted:
    run = runs.get_run(db, run_id, for_update=True)
    event = runs.resume(db, run, who.actor)
    return Accepted(event_id=event.id, run=run_out(run))


@router.post("/{run_id}/fork", status_code=201, response_model=RunOut)
def fork_run(run_id: DbId, db: DB, who: Operator, body: ForkBody | None = None) -> RunOut:
    body = body or ForkBody()
    parent = runs.get_run(db, run_id)
    child = runs.fork(db, parent, who.actor, checkpoint_id=body.checkpoint_id,
                      recipe_patch=body.recipe_patch, name=body.name)
    return run_out(child, with_recipe=True)


@router.delete("/{run_id}", status_code=204)
def delete_run(run_id: DbId, request: Request, db: DB, _: Operator) -> Response:
    run = runs.get_run(db, run_id, for_update=True)
    uris = runs.delete_run(db, run)
    # files go only after the rows are committed: the task runs once the response is sent
    task = BackgroundTask(delete_files, request.app.state.settings.artifacts_url, run_id, uris)
    return Response(status_code=204, background=task)
