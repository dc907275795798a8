"""The learning rate a run trains with, and what steering does to it: one set of rules for the
server's `POST /lr`, `LocalController.request` and the trainer.

    effective = schedule × stage multiplier × scale × auto_scale,   or `absolute` when one is set

- A person's request is exactly one of: `scale` (sets the scale; it does not compound, so a retried
  request is harmless), `lr` (an absolute lr that replaces the whole product until cleared) or
  `clear` (neither). The newest request decides, so a scale drops an absolute lr and vice versa.
- Automatic reductions (a rollback after non-finite losses, an auto-applied recommendation)
  multiply `auto_scale`, and an absolute lr in force, since it is what the run trains with.
  People's requests never touch `auto_scale`: a manual `{"scale": 0.5}` after a rollback halves
  the rolled-back lr again instead of silently undoing the rollback. Only an absolute `lr` sets
  an exact value whatever came before.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ROLLBACK_FACTOR = 0.5


class LrOverride(BaseModel):
    """Everything besides the schedule and the stage that sets a run's lr."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: float = Field(1.0, gt=0, description="a person's scale on the scheduled lr")
    absolute: float | None = Field(None, gt=0, description="a person's absolute lr, replacing the product")
    auto_scale: float = Field(1.0, gt=0, description="product of the automatic reductions")


def steer(current: LrOverride, *, lr: float | None = None, scale: float | None = None,
          clear: bool = False) -> LrOverride:
    """A person's request: exactly one of `lr`, `scale` or `clear`."""
    given = [name for name, v in (("lr", lr), ("scale", scale), ("clear", clear or None)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of lr, scale or clear (got {', '.join(given) or 'none'})")
    if lr is not None:
        return current.model_copy(update={"scale": 1.0, "absolute": _positive(lr, "lr")})
    if scale is not None:
        return current.model_copy(update={"scale": _positive(scale, "scale"), "absolute": None})
    return current.model_copy(update={"scale": 1.0, "absolute": None})


def reduce(current: LrOverride, factor: float) -> LrOverride:
    """An automatic reduction: the lr in force, whatever set it, times `factor`."""
    factor = _positive(factor, "factor")
    absolute = None if current.absolute is None else current.absolute * factor
    return current.model_copy(update={"auto_scale": current.auto_scale * factor, "absolute": absolute})


def effective(schedule: float, stage_multiplier: float, override: LrOverride) -> float:
    if override.absolute is not None:
        return override.absolute
    return schedule * stage_multiplier * override.scale * override.auto_scale


def rollback_or_fail(rollbacks: int, max_rollbacks: int) -> Literal["rollback", "fail"]:
    """After non-finite losses pile up: roll back (with the lr times ROLLBACK_FACTOR) until
    `training.max_rollbacks` rollbacks were spent, then fail the run."""
    return "fail" if rollbacks >= max_rollbacks else "rollback"


def _positive(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {value}")
    return value
