"""The directive: the whole desired state of a run as its worker must see it (`core.protocol.Directive`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.protocol import Directive
from server import events, runs
from server.models import Run
from server.states import Status

ACTIONS = {Status.RUNNING: "continue", Status.PAUSING: "pause", Status.STOPPING: "stop"}


def directive(db: Session, run: Run) -> Directive:
    """A run that finished training completes, even if a pause or stop is pending: it is done."""
    status = Status(run.status)
    action = "complete" if status in ACTIONS and runs.finished_training(run) else ACTIONS.get(status, "stop")
    return Directive(action=action, stage_index=run.stage_index, stage_held=run.stage_held, lr=runs.lr_state(run),
                     checkpoint_now=run.checkpoint_requested,
                     event_ids=tuple(e.id for e in events.pending_for_worker(db, run.id)))
