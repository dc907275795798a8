"""Request and response bodies of the API people use (the worker protocol's are `core.protocol`).
Requests forbid unknown keys and bound every string and list."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from core.protocol import DbId, Name, NoNul

Tag = Annotated[str, StringConstraints(min_length=1, max_length=50, strip_whitespace=True,
                                       pattern=r"^[^,]+$"), NoNul]
Reason = Annotated[str, StringConstraints(max_length=500), NoNul]


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


class WorkerOut(BaseModel):
    id: int
    name: str
    host: str
    devices: list[Any]
    version: str
    registered_at: dt.datetime
    last_seen_at: dt.datetime


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
