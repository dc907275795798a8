"""The worker protocol as types: the messages a worker sends and the answers the server gives.

The server's routes take these as bodies and declare the answers as `response_model`; the worker
builds the messages and parses the answers, so both read one definition. Messages refuse unknown
keys and bound every string and list; answers ignore keys they do not know, so a newer server
can add some. Stages on this wire are positions in `recipe.curriculum.stages`, counted from 0
and named `stage_index`, as the recipe, the database and the trainer count them; only the API
people use numbers them from 1 (server/views.py).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from core.lr import LrOverride
from core.recipe import Recipe


def no_nul(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; SQLite can. Refused on both, so both store the same."""
    if text is not None and "\x00" in text:
        raise ValueError("must not contain NUL (\\x00) characters")
    return text


NoNul = AfterValidator(no_nul)
MAX_ID = 2**31 - 1  # ids are 32-bit INTEGER columns on PostgreSQL
DbId = Annotated[int, Field(ge=1, le=MAX_ID)]
Epoch = Annotated[int, Field(ge=0, le=MAX_ID)]
Step = Annotated[int, Field(ge=0, le=2**62)]
StageIndex = Annotated[int, Field(ge=0, le=999, description="position in recipe.curriculum.stages, from 0")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True), NoNul]
LeaseToken = Annotated[str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
MetricMap = dict[Annotated[str, StringConstraints(max_length=100)], float | int | bool | str | None]
Finite = Annotated[float | None, Field(ge=0, allow_inf_nan=False)]  # a rate, a duration, an lr: never NaN or ∞
Action = Literal["continue", "pause", "stop", "complete"]
LOG_LINE_CHARS = 4000
LOG_BATCH_LINES = 1000
# A worker retries an undelivered request at least this often (its backoff's ceiling), so within a
# lease plus this long after the server could hear workers again, every live worker has renewed.
RETRY_MAX_S = 5.0


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _nonfinite: int = PrivateAttr(0)

    @property
    def nonfinite(self) -> int:
        """Metric values that came as NaN or ±Infinity and are now null: JSON has neither, Python's
        parser reads both, and PostgreSQL's JSON refuses them; null is stored alike everywhere."""
        return self._nonfinite


def null_nonfinite(values: dict[str, Any]) -> int:
    """Replace NaN and ±Infinity by None in place; how many there were."""
    bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    for key in bad:
        values[key] = None
    return len(bad)


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---- worker → server ----------------------------------------------------------------------------


class WorkerHello(Message):
    name: Name
    host: Annotated[str, StringConstraints(max_length=200), NoNul] = ""
    devices: list[dict[str, Any] | str] = Field(default_factory=list, max_length=64)
    version: Annotated[str, StringConstraints(max_length=50), NoNul] = ""


class ClaimRequest(Message):
    """What the worker can run, so it is only handed runs it can launch (`recipe.resources`)."""

    wait_s: float = Field(0, ge=0, le=60, description="Long-poll up to this many seconds.")
    nodes: int = Field(1, ge=1, le=64, description="machines this worker spans (sala worker --nodes)")
    processes_per_node: int | None = Field(
        None, ge=1, le=64,
        description="most ranks on one machine (its GPUs), and exactly the ranks each machine of a "
                    "multi-machine group starts; null: any on one machine (CPU ranks share cores), 1 per machine")


class AppliedEvent(Message):
    id: DbId
    step: Step
    age_s: float = Field(0.0, ge=0, le=86_400, description="Seconds between applying it and sending this.")


class Heartbeat(Message):
    lease_token: LeaseToken
    epoch: Epoch
    step: Step
    lr_schedule: Finite = Field(None, description="the schedule's lr now")
    scalars: list[dict[str, float | int | None]] = Field(default_factory=list, max_length=2000)
    applied: list[AppliedEvent] = Field(default_factory=list, max_length=1000)

    @field_validator("scalars")
    @classmethod
    def _every_point_has_a_step(cls, points: list[dict[str, float | int | None]]) -> list[dict]:
        for i, point in enumerate(points):
            step = point.get("step")
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= 2**62:
                raise ValueError(f"scalars[{i}] needs an integer 'step' ≥ 0")
        return points

    @model_validator(mode="after")
    def _null_nonfinite(self) -> Heartbeat:
        self._nonfinite = sum(null_nonfinite(point) for point in self.scalars)
        return self


class EpochReport(Message):
    """One finished epoch: what the trainer tells any controller, and the body of the HTTP report."""

    epoch: Annotated[int, Field(ge=1, le=MAX_ID)]
    stage_index: StageIndex = Field(description="the stage the epoch trained in")
    step: Step
    metrics: MetricMap
    lr: dict[Annotated[str, StringConstraints(max_length=100)], float | None] = Field(default_factory=dict)
    duration_s: Finite = None
    samples_per_s: Finite = None

    @model_validator(mode="after")
    def _null_nonfinite(self) -> EpochReport:
        self._nonfinite = null_nonfinite(self.metrics) + null_nonfinite(self.lr)
        return self


class EpochMessage(EpochReport):
    lease_token: LeaseToken
    applied: list[AppliedEvent] = Field(default_factory=list, max_length=1000)


class CheckpointReport(Message):
    """One saved checkpoint file, as the trainer reports it to any controller."""

    uri: Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul]
    epoch: Epoch
    step: Step
    stage_index: StageIndex
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    size: Step
    metrics: MetricMap = Field(default_factory=dict)

    @model_validator(mode="after")
    def _null_nonfinite(self) -> CheckpointReport:
        self._nonfinite = null_nonfinite(self.metrics)
        return self


class CheckpointMessage(CheckpointReport):
    lease_token: LeaseToken


class Finish(Message):
    lease_token: LeaseToken
    status: Literal["completed", "failed", "stopped", "paused", "queued"]
    error: Annotated[str, StringConstraints(max_length=20_000), NoNul] | None = None


class Alert(Message):
    lease_token: LeaseToken
    kind: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z_]+$")]
    detail: MetricMap = Field(default_factory=dict)

    @model_validator(mode="after")
    def _null_nonfinite(self) -> Alert:
        self._nonfinite = null_nonfinite(self.detail)
        return self


def nul_shown(text: str) -> str:
    """A process's output may hold NUL bytes; a log line keeps them visible rather than refusing the batch."""
    return text.replace("\x00", "\ufffd")


class LogLine(Message):
    ts: dt.datetime
    level: Annotated[str, StringConstraints(max_length=10), NoNul]
    source: Annotated[str, StringConstraints(max_length=100), NoNul]
    message: Annotated[str, StringConstraints(max_length=LOG_LINE_CHARS), AfterValidator(nul_shown)]


class LogBatch(Message):
    """Lines the run wrote (log records, stdout, stderr), oldest first; `dropped` counts the lines the
    worker's own bounded buffer let go before this batch could be sent."""

    lease_token: LeaseToken
    lines: list[LogLine] = Field(max_length=LOG_BATCH_LINES)
    dropped: Annotated[int, Field(ge=0, le=MAX_ID)] = 0


# ---- server → worker ----------------------------------------------------------------------------


class Directive(Answer):
    """The whole desired state of a run, never a diff, so a lost answer is repaired by the next.
    `event_ids` are the control events this state includes; the worker acknowledges each with the
    optimizer step at which it applied it."""

    action: Action
    stage_index: StageIndex
    stage_held: bool = False
    lr: LrOverride = LrOverride()
    checkpoint_now: bool = False
    event_ids: tuple[int, ...] = ()


class Registered(Answer):
    worker_id: int
    heartbeat_s: float
    lease_s: float
    artifacts_url: str


class CheckpointRef(Answer):
    """A kept checkpoint to resume from (`uri` and `sha256` are what the trainer loads and checks)."""

    id: int
    uri: str
    sha256: str
    epoch: int
    step: int
    stage_index: int


class Claim(Answer):
    run_id: int
    run_name: str
    attempt: int
    lease_token: str
    lease_expires_at: dt.datetime
    recipe: Recipe
    resume_checkpoint: CheckpointRef | None
    directive: Directive


class HeartbeatAnswer(Answer):
    lease_expires_at: dt.datetime
    directive: Directive


class EpochAnswer(Answer):
    epoch: int
    directive: Directive


class CheckpointAnswer(Answer):
    checkpoint_id: int
    delete: list[int] = Field(description="ids of the checkpoints retention drops")
    delete_uris: list[str] = Field(description="their files, which the worker deletes")


class FinishAnswer(Answer):
    run_id: int
    status: str


class LogAnswer(Answer):
    stored: int
    dropped: int = Field(description="lines of this attempt dropped so far, by the worker or the size cap")


class AlertAnswer(Answer):
    action: Literal["continue", "rollback", "fail"]
    reason: str | None = None
    directive: Directive
