"""What the trainer talks to: a controller that answers reports with directives.

The trainer never decides curriculum moves or obeys people directly; it reports and obeys.
`HttpController` (worker/agent.py) carries this over the worker protocol; `LocalController`
(worker/local.py) applies the server's own curriculum policy in process for `sala train`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Action = Literal["continue", "pause", "stop", "complete"]


@dataclass(frozen=True)
class Directive:
    """The whole desired state of a run, as the server sees it. `stage` is 0-based here
    (the HTTP API counts from 1); `event_ids` are the control events this state includes,
    acknowledged with the step at which the trainer applied them."""

    action: Action = "continue"
    stage: int = 0
    stage_held: bool = False
    lr_override_scale: float = 1.0
    lr_override_lr: float | None = None
    checkpoint_now: bool = False
    event_ids: tuple[int, ...] = ()

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Directive:
        lr = body.get("lr") or {}
        return cls(action=body.get("action", "continue"), stage=int(body["stage"]["index"]) - 1,
                   stage_held=bool(body.get("stage_held", False)),
                   lr_override_scale=float(lr.get("override_scale") or 1.0),
                   lr_override_lr=lr.get("override_lr"),
                   checkpoint_now=bool(body.get("checkpoint_now", False)),
                   event_ids=tuple(body.get("event_ids") or ()))


@dataclass
class EpochSummary:
    """One finished epoch as reported to the controller (`stage` 0-based)."""

    epoch: int
    stage: int
    step: int
    metrics: dict[str, float]
    lr: dict[str, float | None]
    duration_s: float
    samples_per_s: float


@dataclass
class SavedCheckpoint:
    uri: str
    epoch: int
    step: int
    stage: int
    sha256: str
    size: int
    metrics: dict[str, float] = field(default_factory=dict)


class Controller(Protocol):
    def poll(self, step: int, epoch: int) -> Directive:
        """The latest directive; cheap, called between optimizer steps."""

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        """Step scalars (loss, lr, grad norm, AMP scale, samples/s); may be batched."""

    def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None:
        """The trainer applied these control events at this optimizer step."""

    def report_epoch(self, summary: EpochSummary) -> Directive:
        """Store the epoch; the answer carries the curriculum's decision."""

    def report_checkpoint(self, saved: SavedCheckpoint) -> list[str]:
        """Record a checkpoint; the answer lists checkpoint URIs retention says to delete."""

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        """Something the server should know now (e.g. non-finite losses piling up)."""

    def finish(self, status: str, error: str | None = None) -> None:
        """completed | failed | stopped | paused | queued (released for another worker)."""
