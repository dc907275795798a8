"""The API people use, as types: request bodies and answers (the worker protocol's are `core.protocol`).

The server validates requests with them and declares its answers with them; the Python client
(`client`) parses the answers into them, so both read one definition. Requests forbid unknown keys
and bound every string and list; answers ignore keys they do not know, so a newer server can add
some. Stages here count from 1, as people number them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from core.protocol import DbId, Name, NoNul

Tag = Annotated[str, StringConstraints(min_length=1, max_length=50, strip_whitespace=True,
                                       pattern=r"^[^,]+$"), NoNul]
Reason = Annotated[str, StringConstraints(max_length=500), NoNul]
Note = Annotated[str, StringConstraints(max_length=20_000), NoNul]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(Request):
    name: Name
    recipe: dict[str, Any] | Annotated[str, StringConstraints(max_length=200_000)] = Field(
        default_factory=dict, description="The recipe as a JSON object, or YAML/JSON text."
    )
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    max_restarts: int | None = Field(None, ge=0, le=100)
    priority: int = Field(0, ge=-1000, le=1000)


class ReasonBody(Request):
    reason: Reason | None = None


class RunPatch(Request):
    """A run's name, tags and note, any of them; the fields not given stay as they are."""

    name: Name | None = None
    tags: list[Tag] | None = Field(None, max_length=20)
    note: Note | None = Field(None, description="markdown; null or empty clears it")

    @field_validator("note")
    @classmethod
    def _null_clears(cls, note: str | None) -> str:
        return note or ""

    @model_validator(mode="after")
    def _something(self) -> RunPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of name, tags or note")
        nulls = [k for k in ("name", "tags") if k in self.model_fields_set and getattr(self, k) is None]
        if nulls:
            raise ValueError(f"{nulls[0]} cannot be null")
        return self


class ForkBody(Request):
    checkpoint_id: DbId | None = None
    recipe_patch: dict[str, Any] | None = None
    name: Name | None = None


class StageJump(Request):
    to: str | int = Field(description="A stage name, or its number counted from 1.")
    reason: Reason | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _name_or_number(cls, value: Any) -> str | int:
        """One clear error at `to` (a plain union would report one per member, and read `true` as 1)."""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("must be a stage name or a stage number")
        if isinstance(value, str) and not 1 <= len(value) <= 100:
            raise ValueError("a stage name has 1 to 100 characters")
        if isinstance(value, int) and not 1 <= value <= 1000:
            raise ValueError("a stage number counts from 1")
        return value


class StageHold(Request):
    hold: bool


class LrRequest(Request):
    lr: float | None = Field(None, gt=0, le=10)
    scale: float | None = Field(None, gt=0, le=100)
    clear: Literal[True] | None = None
    reason: Reason | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> LrRequest:
        given = [k for k in ("lr", "scale", "clear") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of lr, scale or clear")
        return self


WebhookKind = Literal["stage_transition", "recommendation", "alert", "run_finished", "run_failed",
                      "override_applied"]
WEBHOOK_KINDS: tuple[str, ...] = WebhookKind.__args__


class WebhookCreate(Request):
    url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$")]
    events: list[WebhookKind] = Field(min_length=1, max_length=len(WEBHOOK_KINDS))
    secret: Annotated[str, StringConstraints(min_length=16, max_length=200)] = Field(
        description="Signs every delivery (HMAC-SHA256); never shown again.")
    name: Name | None = None


class TokenCreate(Request):
    name: Name
    role: Literal["viewer", "operator", "worker", "admin"]


class StageRef(BaseModel):
    index: int
    name: str


class LrParts(BaseModel):
    schedule: float | None
    stage_multiplier: float
    override: dict[str, float] | None = Field(description='a person\'s: {"scale": s}, {"lr": x} or null')
    auto_scale: float = Field(description="product of the rollbacks' and auto-applied advice's reductions")
    effective: float


class RunOut(BaseModel):
    id: int
    name: str
    status: str
    stage: StageRef
    stage_held: bool
    stage_count: int
    attempt: int
    restarts: int
    rollbacks: int
    max_restarts: int
    priority: int
    tags: list[str]
    note: str = Field("", description="a person's markdown note")
    epoch: int
    step: int
    max_epochs: int
    curriculum_complete: bool
    lr: LrParts
    worker_id: int | None
    parent_run_id: int | None
    error: str | None
    latest: dict[str, Any]
    recommendations: list[dict[str, Any]]
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    recipe: dict[str, Any] | None = None


class Page(BaseModel):
    items: list[Any]
    next_cursor: str | None


class RunPage(Page):
    items: list[RunOut]


class EventOut(BaseModel):
    id: int
    run_id: int | None
    kind: str
    payload: dict[str, Any]
    actor: str
    created_at: dt.datetime
    applied_at: dt.datetime | None
    applied_step: int | None


class EventPage(Page):
    items: list[EventOut]


class TransitionOut(BaseModel):
    from_stage: int | None
    to_stage: int
    from_name: str | None
    to_name: str
    epoch: int
    reason: str
    actor: str
    metrics: dict[str, Any]
    created_at: dt.datetime


class StagesOut(BaseModel):
    stages: list[dict[str, Any]]
    current: StageRef
    held: bool
    transitions: list[TransitionOut]
    recommendations: list[dict[str, Any]]


class LrOut(LrParts):
    base_lr: float
    history: list[EventOut]


class Accepted(BaseModel):
    event_id: int
    run: RunOut


class CheckpointOut(BaseModel):
    id: int
    run_id: int
    attempt: int
    epoch: int
    step: int
    stage: int
    uri: str
    size: int
    sha256: str
    metrics: dict[str, Any]
    kept: bool
    created_at: dt.datetime


class EpochOut(BaseModel):
    epoch: int
    attempt: int
    stage: StageRef
    step: int
    metrics: dict[str, Any]
    lr: dict[str, Any]
    duration_s: float | None
    samples_per_s: float | None
    created_at: dt.datetime


class EpochColumns(BaseModel):
    """An epoch page as one array per field (`?format=columns`), the i-th entry of each being the
    i-th epoch: what a chart plots, without the field names repeated on every row. `metrics` and
    `lr` hold one array per key any epoch of the page has (null where an epoch lacks it);
    `stage_names` names each stage number that occurs."""
    format: Literal["columns"]
    epoch: list[int]
    attempt: list[int]
    stage: list[int]
    stage_names: dict[str, str]
    step: list[int]
    metrics: dict[str, list[Any]]
    lr: dict[str, list[Any]]
    duration_s: list[float | None]
    samples_per_s: list[float | None]
    created_at: list[dt.datetime]
    next_cursor: str | None


class StepColumns(BaseModel):
    """Step points as one array per scalar (`?format=columns`): `values[k][i]` is scalar k at
    `step[i]`, null where that point lacks it (`points` counts the steps a rolled-up point averages)."""
    format: Literal["columns"]
    step: list[int]
    values: dict[str, list[Any]]
    next_cursor: str | None


class WorkerOut(BaseModel):
    id: int
    name: str
    host: str
    devices: list[Any]
    version: str
    registered_at: dt.datetime
    last_seen_at: dt.datetime


class LogOut(BaseModel):
    id: int
    attempt: int
    ts: dt.datetime = Field(description="when the worker wrote it (the worker's clock)")
    level: str
    source: str = Field(description="a logger's name, or stdout / stderr")
    message: str


class LogPage(Page):
    items: list[LogOut]
    dropped: dict[int, int] = Field(description="per attempt: the oldest lines dropped by the size cap")


class WebhookOut(BaseModel):
    id: int
    name: str
    url: str
    events: list[str]
    created_at: dt.datetime
    created_by: str


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    kind: str
    run_id: int | None
    event_id: int | None
    status: str = Field(description="pending | delivered | failed | dropped")
    attempts: int
    response_status: int | None
    error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None


class DeliveryPage(Page):
    items: list[DeliveryOut]


class WebhookRun(BaseModel):
    id: int
    name: str
    status: str
    stage: StageRef


class WebhookPayload(BaseModel):
    """What a webhook receives, signed: `X-Sala-Signature: sha256=HMAC(secret, "<timestamp>.<body>")`
    with the `X-Sala-Timestamp` header. `text` is a line for Slack (and Discord's Slack-compatible
    URL); `event` is the audit event behind the delivery, stages counted from 1."""

    delivery_id: int
    kind: str
    text: str
    run: WebhookRun | None
    event: EventOut


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; only its hash is stored.")


class ErrorItem(BaseModel):
    path: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[ErrorItem]


class ErrorBody(BaseModel):
    """Every error answer: 400 malformed, 401, 403, 404, 409 (state or stale lease), 413, 415, 422, 503."""

    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in {
        400: "malformed request", 401: "no or bad token",
        403: "the token's role may not do this, or a web page of another origin or host name",
        404: "unknown id", 409: "conflicts with the run's state, or a stale lease", 413: "body too large",
        415: "a body that is not JSON", 422: "failed validation; `details` name every field path",
        503: "the database is unreachable or out of space: retry",
    }.items()
}
