"""What the trainer talks to: a controller that answers reports with directives.

The trainer never decides curriculum moves or obeys people directly; it reports and obeys.
`HttpController` (worker/agent.py) carries this over the worker protocol; `LocalController`
(worker/local.py) applies the same policy (`core`) in process for `sala train`. The messages are
the protocol's own types (`core.protocol`), so what the trainer says is what goes on the wire.
"""

from __future__ import annotations

from typing import Any, Protocol

from core.protocol import CheckpointReport, Directive, EpochReport


class Rollback(Exception):
    """Abandon this attempt and resume from the last checkpoint (non-finite losses piled up, or the
    checkpoint to resume from is corrupt); the directive already carries the lower lr."""


class RunFailed(Exception):
    """The controller ended the run (e.g. non-finite losses survived every rollback)."""


class Controller(Protocol):
    def poll(self, step: int, epoch: int) -> Directive:
        """The latest directive; cheap, called between optimizer steps."""

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        """Step scalars (loss, lr, grad norm, AMP scale, samples/s); may be batched."""

    def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None:
        """The trainer applied these control events at this optimizer step."""

    def report_epoch(self, report: EpochReport) -> Directive:
        """Store the epoch; the answer carries the curriculum's decision."""

    def report_checkpoint(self, saved: CheckpointReport) -> list[str]:
        """Record a checkpoint; the answer lists checkpoint URIs retention says to delete."""

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        """Something the controller should know now. For "nonfinite" it may raise Rollback or RunFailed."""

    def finish(self, status: str, error: str | None = None) -> None:
        """completed | failed | stopped | paused | queued (released for another worker)."""
