"""The directive: the whole desired state of a run as the worker must see it, never a diff,
so a lost answer is repaired by the next one."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from server import events, runs
from server.models import Run
from server.states import Status

ACTIONS = {Status.RUNNING: "continue", Status.PAUSING: "pause", Status.STOPPING: "stop"}


def directive(db: Session, run: Run, *, complete: bool = False) -> dict[str, Any]:
    action = "complete" if complete else ACTIONS.get(Status(run.status), "stop")
    if action == "continue" and run.epoch >= run.recipe["training"]["max_epochs"]:
        action = "complete"
    spec = runs.stages_of(run)[run.stage_index]
    return {
        "action": action,
        "stage": {"index": run.stage_index + 1, "name": spec["name"], "spec": spec},
        "stage_held": run.stage_held,
        "lr": {**runs.lr_parts(run), "override_scale": run.lr_override_scale,
               "override_lr": run.lr_override_abs},
        "checkpoint_now": run.checkpoint_requested,
        "event_ids": [e.id for e in events.pending_for_worker(db, run.id)],
    }
