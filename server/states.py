"""The run state machine, in one place. Every request that would change a run's status asks
`require(...)` first; a request that makes no sense for the state is a 409 saying why."""

from __future__ import annotations

from enum import StrEnum

from server.errors import Conflict


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.STOPPED})
HELD_BY_WORKER = frozenset({Status.RUNNING, Status.PAUSING, Status.STOPPING})

# action → {current status: next status}; a status missing from an action's map is a conflict.
TRANSITIONS: dict[str, dict[Status, Status]] = {
    "stop": {
        Status.QUEUED: Status.STOPPED,
        Status.PAUSED: Status.STOPPED,
        Status.RUNNING: Status.STOPPING,
        Status.PAUSING: Status.STOPPING,
    },
    "pause": {Status.QUEUED: Status.PAUSED, Status.RUNNING: Status.PAUSING},
    "resume": {Status.PAUSED: Status.QUEUED},
    "claim": {Status.QUEUED: Status.RUNNING},
    "release_paused": {Status.PAUSING: Status.PAUSED, Status.RUNNING: Status.PAUSED},
    "finish_completed": {Status.RUNNING: Status.COMPLETED, Status.PAUSING: Status.COMPLETED,
                         Status.STOPPING: Status.COMPLETED},
    "finish_stopped": {Status.RUNNING: Status.STOPPED, Status.PAUSING: Status.STOPPED,
                       Status.STOPPING: Status.STOPPED},
    "finish_failed": {s: Status.FAILED for s in HELD_BY_WORKER},
    "requeue": {s: Status.QUEUED for s in HELD_BY_WORKER},
}

# actions that do not change the status but need a run in one of these states
ALLOWED_IN: dict[str, frozenset[Status]] = {
    "override": frozenset({Status.QUEUED, Status.RUNNING, Status.PAUSING, Status.PAUSED}),
    "checkpoint": frozenset({Status.RUNNING}),
    "delete": frozenset({Status.QUEUED, Status.PAUSED}) | TERMINAL,
}

_WHY = {
    ("resume", Status.RUNNING): "it is already running",
    ("resume", Status.QUEUED): "it is already queued",
    ("resume", Status.PAUSING): "it is still pausing; resume once it is paused",
    ("pause", Status.PAUSED): "it is already paused",
    ("pause", Status.PAUSING): "it is already pausing",
    ("stop", Status.STOPPING): "it is already stopping",
    ("checkpoint", Status.QUEUED): "no worker is training it yet",
    ("checkpoint", Status.PAUSED): "it is paused; its pause checkpoint is already saved",
    ("delete", Status.RUNNING): "it is running; stop it first",
}


def next_status(action: str, current: str) -> Status:
    status = Status(current)
    target = TRANSITIONS[action].get(status)
    if target is None:
        raise Conflict(_message(action, status))
    return target


def require(action: str, current: str) -> None:
    status = Status(current)
    if status not in ALLOWED_IN[action]:
        raise Conflict(_message(action, status))


def _message(action: str, status: Status) -> str:
    why = _WHY.get((action, status))
    if why is None:
        why = "it has finished" if status in TERMINAL else f"it is {status.value}"
    return f"cannot {action.replace('_', ' ')} this run: {why}"
