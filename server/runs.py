"""Run service: create, read and steer runs. Functions take a Session and never commit;
the request (or job) that calls them owns the transaction."""

from __future__ import annotations

import base64
import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session, defer

from core import lr as lr_rules
from core.curriculum import finished
from core.lr import LrOverride
from core.protocol import MAX_ID
from core.recipe import Recipe, StageSpec
from server import events
from server.errors import Conflict, InvalidInput, NotFound
from server.models import Checkpoint, ControlEvent, EpochReport, Run, RunLog, StageTransition, StepScalar, utcnow
from server.recipes import parse_recipe, patched
from server.states import TERMINAL, Status, next_status, require

LR_EVENT_KINDS = frozenset({"lr_set", "lr_scale", "lr_clear", "lr_reduce"})


@dataclass(frozen=True)
class Brief:
    """The parts of a run's recipe every view needs."""

    stages: tuple[StageSpec, ...]
    max_epochs: int


_BRIEFS: OrderedDict[tuple[int, Any], Brief] = OrderedDict()
_BRIEFS_MAX = 10_000


def recipe_of(run: Run) -> Recipe:
    """The stored recipe read through the recipe model, so every default has one definition."""
    return Recipe.model_validate(run.recipe)


def brief(run: Run) -> Brief:
    """A recipe never changes once stored, so this is cached per run and run lists (and the
    heartbeats' directives) need not load and validate whole recipes."""
    key = (run.id, run.created_at)
    found = _BRIEFS.get(key)
    if found is None:
        recipe = recipe_of(run)
        found = Brief(tuple(recipe.curriculum.stages), recipe.training.max_epochs)
        _BRIEFS[key] = found
        if len(_BRIEFS) > _BRIEFS_MAX:
            _BRIEFS.popitem(last=False)
    return found


def stage_name(run: Run, index: int | None) -> str | None:
    stages = brief(run).stages
    return stages[index].name if index is not None and 0 <= index < len(stages) else None


def finished_training(run: Run) -> bool:
    return finished(brief(run).max_epochs, run.epoch, run.curriculum_complete)


def lr_state(run: Run) -> LrOverride:
    return LrOverride(scale=run.lr_override_scale, absolute=run.lr_override_abs, auto_scale=run.lr_auto_scale)


def _set_lr_state(run: Run, state: LrOverride) -> None:
    run.lr_override_scale, run.lr_override_abs, run.lr_auto_scale = state.scale, state.absolute, state.auto_scale


def lr_parts(run: Run) -> dict[str, Any]:
    """The run's lr as `core.lr.effective` makes it, with a person's override shown as one of
    `{"scale": s}`, `{"lr": x}` or null, apart from the automatic scale."""
    state = lr_state(run)
    multiplier = brief(run).stages[run.stage_index].lr_multiplier
    schedule = run.lr_schedule if run.lr_schedule is not None else run.base_lr
    if state.absolute is not None:
        override: dict[str, float] | None = {"lr": state.absolute}
    else:
        override = {"scale": state.scale} if state.scale != 1.0 else None
    return {"schedule": run.lr_schedule, "stage_multiplier": multiplier, "override": override,
            "auto_scale": state.auto_scale, "effective": lr_rules.effective(schedule, multiplier, state)}


def get_run(db: Session, run_id: int, *, for_update: bool = False) -> Run:
    query = select(Run).where(Run.id == run_id)
    if for_update:
        query = query.with_for_update()
    run = db.scalars(query).first()
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def create_run(db: Session, *, name: str, recipe: dict[str, Any] | str, tags: list[str],
               max_restarts: int | None, priority: int, actor: str,
               parent: Run | None = None, parent_checkpoint: Checkpoint | None = None) -> Run:
    model = recipe if isinstance(recipe, Recipe) else parse_recipe(recipe)
    return _insert_run(db, name=name, recipe=model, tags=tags, max_restarts=max_restarts,
                       priority=priority, actor=actor, parent=parent, parent_checkpoint=parent_checkpoint)


def _insert_run(db: Session, *, name, recipe, tags, max_restarts, priority, actor, parent,
                parent_checkpoint) -> Run:
    data = recipe.model_dump(mode="json")
    run = Run(
        name=name, status=Status.QUEUED.value, recipe=data, tags=sorted(set(tags)),
        tag_text=tag_text(tags), priority=priority,
        max_restarts=recipe.max_restarts if max_restarts is None else max_restarts,
        base_lr=recipe.optimizer.lr, stage_index=0, attempt=0, curriculum_complete=False,
        lr_override_scale=1.0, lr_auto_scale=1.0,
        nodes=recipe.resources.nodes, processes_per_node=recipe.resources.processes_per_node,
        parent_run_id=parent.id if parent else None,
        parent_checkpoint_id=parent_checkpoint.id if parent_checkpoint else None,
        resume_checkpoint_id=parent_checkpoint.id if parent_checkpoint else None,
    )
    if parent_checkpoint is not None:
        run.stage_index = min(parent_checkpoint.stage_index, len(recipe.curriculum.stages) - 1)
    db.add(run)
    db.flush()
    db.add(StageTransition(run_id=run.id, from_stage=None, to_stage=run.stage_index, epoch=0,
                           reason="start", actor=actor, metrics={}))
    events.record(db, run.id, "run_created", actor, name=name,
                  forked_from=parent.id if parent else None,
                  checkpoint_id=parent_checkpoint.id if parent_checkpoint else None)
    return run


def list_runs(db: Session, *, statuses: list[str], tag: str | None, limit: int,
              cursor: str | None) -> tuple[list[Run], str | None]:
    query = _filtered(select(Run).options(defer(Run.recipe)), statuses=statuses, tag=tag, cursor=cursor)
    rows = list(db.scalars(query.order_by(Run.id.desc()).limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    return page, (_encode_cursor(page[-1].id) if more and page else None)


def list_versions(db: Session | Connection, *, statuses: list[str], tag: str | None, limit: int,
                  cursor: str | None) -> list[tuple[int, int]]:
    """(id, version) of the runs `list_runs` would answer with the same arguments (and the one past
    the page, which decides its cursor): two integer columns, so a poller's unchanged list is
    recognised without decoding any run's JSON."""
    query = _filtered(select(Run.id, Run.version), statuses=statuses, tag=tag, cursor=cursor)
    return [(i, v) for i, v in db.execute(query.order_by(Run.id.desc()).limit(limit + 1))]


def runs_by_id(db: Session, ids: list[int]) -> list[Run]:
    """The runs of a list page that must be encoded again, recipes left out as `list_runs` does."""
    return list(db.scalars(select(Run).options(defer(Run.recipe)).where(Run.id.in_(ids))))


def list_cursor(versions: list[tuple[int, int]], limit: int) -> str | None:
    """The next page's cursor, from `list_versions`' answer (which reads one run past the page)."""
    return _encode_cursor(versions[limit - 1][0]) if len(versions) > limit else None


def _filtered(query, *, statuses: list[str], tag: str | None, cursor: str | None):
    if statuses:
        unknown = [s for s in statuses if s not in Status.__members__.values()]
        if unknown:
            raise InvalidInput(f"unknown status {unknown[0]!r}",
                               [{"path": "status", "message": f"one of {', '.join(s.value for s in Status)}"}])
        query = query.where(Run.status.in_(statuses))
    if cursor:
        query = query.where(Run.id < _decode_cursor(cursor))
    if tag:
        query = query.where(Run.tag_text.contains(f",{tag},", autoescape=True))
    return query


def version_of(db: Session, run_id: int) -> tuple[int, dt.datetime]:
    """A run's version and creation time, read alone (one indexed row, no JSON): what a poll's
    ETag is made of. The creation time tells apart runs of two databases that share an id."""
    row = db.execute(select(Run.version, Run.created_at).where(Run.id == run_id)).first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    return row[0], row[1]


def tag_text(tags: list[str]) -> str:
    """Tags as `,a,b,` so one indexed LIKE finds a tag on SQLite and PostgreSQL alike."""
    return "," + ",".join(sorted(set(tags))) + "," if tags else ""


def _encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"run:{value}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, value = raw.split(":", 1)
        if kind != "run" or not 0 < int(value) <= MAX_ID:  # an id the database can hold
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this server issued",
                           [{"path": "cursor", "message": "invalid cursor"}]) from None


def update_run(db: Session, run: Run, actor: str, changes: dict[str, Any]) -> ControlEvent | None:
    """A run's name, tags or note, in any state; the event keeps each value before and after
    (None when nothing changed)."""
    if "tags" in changes:
        changes = {**changes, "tags": sorted(set(changes["tags"]))}
    changed = {k: {"from": getattr(run, k), "to": v} for k, v in changes.items() if getattr(run, k) != v}
    for key, change in changed.items():
        setattr(run, key, change["to"])
    if "tags" in changed:
        run.tag_text = tag_text(run.tags)
    return events.record(db, run.id, "run_updated", actor, **changed) if changed else None


def stop(db: Session, run: Run, actor: str, reason: str | None) -> ControlEvent:
    target = next_status("stop", run.status)
    held = run.status in (Status.RUNNING, Status.PAUSING)
    run.status = target.value
    if held:
        run.control_requested_at = utcnow()
        return events.record(db, run.id, "stop_requested", actor, needs_worker=True, reason=reason)
    run.finished_at = utcnow()
    return events.record(db, run.id, "stopped", actor, reason=reason)


def pause(db: Session, run: Run, actor: str, reason: str | None) -> ControlEvent:
    target = next_status("pause", run.status)
    held = run.status == Status.RUNNING
    run.status = target.value
    if held:
        run.control_requested_at = utcnow()
        return events.record(db, run.id, "pause_requested", actor, needs_worker=True, reason=reason)
    return events.record(db, run.id, "paused", actor, reason=reason)


def resume(db: Session, run: Run, actor: str) -> ControlEvent:
    run.status = next_status("resume", run.status).value
    return events.record(db, run.id, "resumed", actor)


def fork(db: Session, run: Run, actor: str, *, checkpoint_id: int | None,
         recipe_patch: dict[str, Any] | None, name: str | None) -> Run:
    checkpoint = None
    if checkpoint_id is not None:
        checkpoint = db.get(Checkpoint, checkpoint_id)
        if checkpoint is None or checkpoint.run_id != run.id:
            raise NotFound(f"checkpoint {checkpoint_id} does not belong to run {run.id}")
        if not checkpoint.kept:
            raise Conflict(f"checkpoint {checkpoint_id} was deleted by retention")
    recipe = patched(run.recipe, recipe_patch)
    child = _insert_run(db, name=name or f"{run.name} (fork)", recipe=recipe, tags=list(run.tags),
                        max_restarts=None, priority=run.priority, actor=actor, parent=run,
                        parent_checkpoint=checkpoint)
    events.record(db, run.id, "forked", actor, child_run_id=child.id, checkpoint_id=checkpoint_id)
    return child


def delete_run(db: Session, run: Run) -> list[str]:
    """Remove the run and its rows; return the checkpoint URIs whose files the caller deletes.
    Refused (409, naming them) while another run still needs its checkpoints."""
    require("delete", run.status)
    needing = dependants(db, run)
    if needing:
        raise Conflict(f"cannot delete run {run.id}: {'; '.join(needing)} still need its checkpoints; "
                       "finish or delete those runs first",
                       [{"path": "dependants", "message": why} for why in needing])
    uris = list(db.scalars(select(Checkpoint.uri).where(Checkpoint.run_id == run.id)))  # a dropped one may linger
    for model in (StepScalar, EpochReport, StageTransition, Checkpoint, ControlEvent, RunLog):
        db.execute(delete(model).where(model.run_id == run.id))
    db.delete(run)
    db.flush()
    return uris


def dependants(db: Session, run: Run) -> list[str]:
    """Unfinished runs that need this run's checkpoints: forks that start from one (until they
    have their own), and runs that distil from it (the teacher is fetched at every claim)."""
    unfinished = [s.value for s in Status if s not in TERMINAL]
    forks = db.execute(select(Run.id, Run.parent_checkpoint_id).join(
        Checkpoint, Checkpoint.id == Run.parent_checkpoint_id).where(
        Checkpoint.run_id == run.id, Run.status.in_(unfinished), Run.id != run.id))
    needing = [f"run {rid} (forked from checkpoint {cid})" for rid, cid in forks]
    for rid, recipe in db.execute(select(Run.id, Run.recipe).where(Run.status.in_(unfinished), Run.id != run.id)):
        teacher = ((recipe.get("loss") or {}).get("distillation") or {}).get("teacher_run")
        if teacher == str(run.id):
            needing.append(f"run {rid} (distils from it)")
    return needing


def resolve_stage(run: Run, to: str | int) -> int:
    """A stage as people name it: its number counted from 1 (as the API shows it), or its name."""
    stages = brief(run).stages
    if isinstance(to, int) or (isinstance(to, str) and to.isdigit()):
        index = int(to) - 1
        if not 0 <= index < len(stages):
            raise InvalidInput(f"stage {to} does not exist: this run has stages 1–{len(stages)}",
                               [{"path": "to", "message": f"between 1 and {len(stages)}"}])
        return index
    names = [s.name for s in stages]
    if to not in names:
        raise InvalidInput(f"stage {to!r} does not exist",
                           [{"path": "to", "message": f"one of {', '.join(names)}"}])
    return names.index(to)


def move_stage(db: Session, run: Run, to: int, *, actor: str, reason: str, kind: str,
               needs_worker: bool, epoch: int | None = None, metrics: dict[str, Any] | None = None,
               note: str | None = None) -> ControlEvent:
    """Every stage change (a person's, the curriculum's, an auto-applied advance, completion in
    place): one transition row and one event, stage numbers from 0 as everywhere inside."""
    epoch = run.epoch if epoch is None else epoch
    metrics = dict(run.latest_metrics or {}) if metrics is None else metrics
    db.add(StageTransition(run_id=run.id, from_stage=run.stage_index, to_stage=to, epoch=epoch,
                           reason=reason, actor=actor, metrics=metrics))
    previous, run.stage_index = run.stage_index, to
    return events.record(db, run.id, kind, actor, needs_worker=needs_worker, from_stage=previous, to_stage=to,
                         to_name=stage_name(run, to), reason=note or reason, epoch=epoch)


def set_stage(db: Session, run: Run, actor: str, to: str | int, reason: str | None,
              kind: str = "stage_set") -> ControlEvent:
    require("override", run.status)
    index = resolve_stage(run, to)
    if index == run.stage_index:
        raise Conflict(f"run is already in that stage ({stage_name(run, index)})")
    return move_stage(db, run, index, actor=actor, reason="rollback" if index < run.stage_index else "manual",
                      kind=kind, needs_worker=_worker_holds(run), note=reason)


def advance_stage(db: Session, run: Run, actor: str, reason: str | None) -> ControlEvent:
    require("override", run.status)
    if run.stage_index + 1 >= len(brief(run).stages):
        raise Conflict(f"run is already in its last stage ({stage_name(run, run.stage_index)})")
    return move_stage(db, run, run.stage_index + 1, actor=actor, reason="manual", kind="stage_advance",
                      needs_worker=_worker_holds(run), note=reason)


def hold_stage(db: Session, run: Run, actor: str, hold: bool) -> ControlEvent:
    require("override", run.status)
    run.stage_held = hold
    return events.record(db, run.id, "stage_hold", actor, needs_worker=_worker_holds(run), hold=hold)


def set_lr(db: Session, run: Run, actor: str, *, lr: float | None, scale: float | None,
           clear: bool | None, reason: str | None) -> ControlEvent:
    """A person's lr request (`core.lr.steer`); the event shows the automatic scale it leaves in force."""
    require("override", run.status)
    _set_lr_state(run, lr_rules.steer(lr_state(run), lr=lr, scale=scale, clear=bool(clear)))
    kind = "lr_set" if lr is not None else "lr_scale" if scale is not None else "lr_clear"
    return events.record(db, run.id, kind, actor, needs_worker=_worker_holds(run), lr=lr, scale=scale,
                         reason=reason, auto_scale=run.lr_auto_scale, effective=lr_parts(run)["effective"])


def reduce_lr(db: Session, run: Run, factor: float, *, actor: str, reason: str) -> ControlEvent:
    """An automatic reduction (`core.lr.reduce`): a rollback, or auto-applied advice."""
    _set_lr_state(run, lr_rules.reduce(lr_state(run), factor))
    return events.record(db, run.id, "lr_reduce", actor, needs_worker=True, factor=factor,
                         auto_scale=run.lr_auto_scale, effective=lr_parts(run)["effective"], reason=reason)


def request_checkpoint(db: Session, run: Run, actor: str) -> ControlEvent:
    require("checkpoint", run.status)
    run.checkpoint_requested = True
    return events.record(db, run.id, "checkpoint_requested", actor, needs_worker=True)


def _worker_holds(run: Run) -> bool:
    return run.status in (Status.RUNNING, Status.PAUSING, Status.STOPPING)


def transitions(db: Session, run: Run) -> list[StageTransition]:
    return list(db.scalars(select(StageTransition).where(StageTransition.run_id == run.id)
                           .order_by(StageTransition.id)))


def lr_history(db: Session, run: Run) -> list[ControlEvent]:
    return events.list_events(db, run.id, after=0, limit=1000, kinds=LR_EVENT_KINDS)

