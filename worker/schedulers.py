"""Learning-rate schedules, and the controller that composes them with curriculum and human steering.

The effective lr is `core.lr.effective(schedule(step), stage multiplier, override)`: the rules for
scale, absolute lr, clear and automatic reductions are core's, the same the server applies. Schedules are torch's own ``lr_scheduler`` pieces, stepped once
per optimizer step (like timm's ``step_update``) so the lr moves smoothly inside an epoch; only
the plateau one also listens to ``step_epoch`` with a validation metric.

Torch schedulers read and rewrite ``group["lr"]`` (the chainable form), so each runs on a private
one-group "shadow" optimizer; the controller multiplies its value on top and writes the result into
the real optimizer, so steering never corrupts the schedule and vice versa.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingWarmRestarts,
    LambdaLR,
    LinearLR,
    LRScheduler,
    ReduceLROnPlateau,
    SequentialLR,
)

from core import lr as lr_rules
from core.lr import LrOverride
from core.metrics import lower_is_better

SCHEDULER_NAMES = ("warmup_cosine", "curriculum_aware", "plateau", "gradual_warmup", "constant")
AFTER_NAMES = ("cosine", "constant", "plateau")

Builder = Callable[[Optimizer, int], LRScheduler]
"""Builds a fresh torch scheduler on the shadow optimizer, given its warmup length in steps."""


class Schedule(Protocol):
    base_lr: float

    def value(self) -> float: ...
    def step_update(self) -> None: ...
    def step_epoch(self, metric: float | None) -> None: ...
    def on_stage_change(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _shadow_optimizer(base_lr: float) -> Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(0))], lr=base_lr)


def _one(_: int) -> float:
    """A module-level lambda so LambdaLR's state stays picklable; closed form keeps the lr at base."""
    return 1.0


def constant_inner(optimizer: Optimizer) -> LRScheduler:
    return LambdaLR(optimizer, _one)


def cosine_inner(period_steps: int, eta_min: float) -> Callable[[Optimizer], LRScheduler]:
    return lambda optimizer: CosineAnnealingWarmRestarts(optimizer, T_0=period_steps, eta_min=eta_min)


def with_warmup(inner: Callable[[Optimizer], LRScheduler], start_factor: float) -> Builder:
    """LinearLR then ``inner`` via SequentialLR; no warmup builds ``inner`` alone."""

    def build(optimizer: Optimizer, warmup_steps: int) -> LRScheduler:
        if warmup_steps <= 0:
            return inner(optimizer)
        warmup = LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_steps)
        return SequentialLR(optimizer, [warmup, inner(optimizer)], milestones=[warmup_steps])

    return build


class TorchSchedule:
    """A torch scheduler stepped per optimizer step.

    With ``restart_on_stage`` a stage change rebuilds it from scratch with ``rewarmup_steps`` of
    warmup: that is the curriculum-aware schedule (a new stage gets a short warmup and a fresh cosine).
    """

    def __init__(
        self, base_lr: float, build: Builder, warmup_steps: int,
        *, restart_on_stage: bool = False, rewarmup_steps: int = 0,
    ) -> None:
        self.base_lr = base_lr
        self.restart_on_stage = restart_on_stage
        self.rewarmup_steps = rewarmup_steps
        self._build = build
        self._optimizer = _shadow_optimizer(base_lr)
        self._start(warmup_steps)

    def _start(self, warmup_steps: int) -> None:
        for group in self._optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.base_lr
        self.warmup_steps = warmup_steps
        self.scheduler = self._build(self._optimizer, warmup_steps)
        self._optimizer.step()  # marks the shadow as stepped; silences torch's call-order warning

    def value(self) -> float:
        return float(self._optimizer.param_groups[0]["lr"])

    def step_update(self) -> None:
        self.scheduler.step()

    def step_epoch(self, metric: float | None) -> None:
        return None

    def on_stage_change(self) -> None:
        if self.restart_on_stage:
            self._start(self.rewarmup_steps)

    def state_dict(self) -> dict[str, Any]:
        return {"warmup_steps": self.warmup_steps, "scheduler": self.scheduler.state_dict(), "lr": self.value()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._start(int(state["warmup_steps"]))
        self.scheduler.load_state_dict(state["scheduler"])
        self._optimizer.param_groups[0]["lr"] = float(state["lr"])


class PlateauSchedule:
    """Linear warmup per step, then ReduceLROnPlateau per epoch on a monitored metric.

    A wrapper because SequentialLR refuses ReduceLROnPlateau (pytorch issue 68978). Metrics that
    arrive during warmup are ignored so a still-rising lr cannot count as a plateau.
    """

    def __init__(
        self, base_lr: float, warmup_steps: int, *, start_factor: float, mode: str,
        factor: float, patience: int, min_lr: float, threshold: float = 1e-4,
    ) -> None:
        self.base_lr = base_lr
        self.warmup_steps = warmup_steps
        self.updates = 0
        self._optimizer = _shadow_optimizer(base_lr)
        self.warmup = LinearLR(self._optimizer, start_factor, total_iters=warmup_steps) if warmup_steps > 0 else None
        self._optimizer.step()
        self.plateau = ReduceLROnPlateau(
            self._optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr, threshold=threshold,  # type: ignore[arg-type]
        )

    def value(self) -> float:
        return float(self._optimizer.param_groups[0]["lr"])

    def step_update(self) -> None:
        self.updates += 1
        if self.warmup is not None and self.updates <= self.warmup_steps:
            self.warmup.step()

    def step_epoch(self, metric: float | None) -> None:
        if metric is not None and math.isfinite(metric) and self.updates >= self.warmup_steps:
            self.plateau.step(metric)

    def on_stage_change(self) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "updates": self.updates, "lr": self.value(), "plateau": self.plateau.state_dict(),
            "warmup": self.warmup.state_dict() if self.warmup is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        if self.warmup is not None and state["warmup"] is not None:
            self.warmup.load_state_dict(state["warmup"])
        self.plateau.load_state_dict(state["plateau"])
        self._optimizer.param_groups[0]["lr"] = float(state["lr"])


class LRController:
    """Owns the numbers behind the lr (schedule, stage multiplier, override) and writes the effective
    lr into the optimizer.

    Param groups keep their base-lr ratios to the first group (e.g. a head at 10x), so every
    number here is in units of the first group's lr.
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule, *, name: str = "custom") -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.name = name
        bases = _base_lrs(optimizer)
        self.ratios = [base / bases[0] if bases[0] > 0 else 1.0 for base in bases]
        self.stage_multiplier = 1.0
        self.override = LrOverride()
        self.num_updates = 0
        self.epoch = 0
        self._apply()

    @property
    def effective(self) -> float:
        return lr_rules.effective(self.schedule.value(), self.stage_multiplier, self.override)

    def parts(self) -> dict[str, float | None]:
        """All numbers for the epoch report, so the dashboard can draw bands and overrides."""
        return {
            "schedule": self.schedule.value(),
            "stage_multiplier": self.stage_multiplier,
            "override_scale": self.override.scale,
            "override_absolute": self.override.absolute,
            "auto_scale": self.override.auto_scale,
            "effective": self.effective,
        }

    def step_update(self, num_updates: int | None = None) -> float:
        """Advance to ``num_updates`` optimizer steps done (default: one more); idempotent on a count."""
        target = self.num_updates + 1 if num_updates is None else num_updates
        if target < self.num_updates:
            raise ValueError(f"schedule cannot go back from {self.num_updates} to {target} updates")
        while self.num_updates < target:
            self.schedule.step_update()
            self.num_updates += 1
        return self._apply()

    def step_epoch(self, epoch: int, metric: float | None = None) -> float:
        """End of ``epoch``: plateau schedules consume ``metric``; the others ignore it."""
        self.epoch = epoch
        self.schedule.step_epoch(metric)
        return self._apply()

    def set_stage_multiplier(self, multiplier: float) -> float:
        """Set the multiplier without a stage change (e.g. restoring the stage at start)."""
        self.stage_multiplier = _positive(multiplier, "stage multiplier")
        return self._apply()

    def change_stage(self, multiplier: float) -> float:
        """A new curriculum stage: its multiplier, and the curriculum-aware re-warmup when configured."""
        self.stage_multiplier = _positive(multiplier, "stage multiplier")
        self.schedule.on_stage_change()
        return self._apply()

    def set_override(self, override: LrOverride) -> float:
        """Adopt a controller's whole override state (the directive's)."""
        self.override = override
        return self._apply()

    def steer(self, *, lr: float | None = None, scale: float | None = None, clear: bool = False) -> float:
        """A person's request, with the control API's meaning (`core.lr.steer`)."""
        return self.set_override(lr_rules.steer(self.override, lr=lr, scale=scale, clear=clear))

    def _apply(self) -> float:
        lr = self.effective
        for group, ratio in zip(self.optimizer.param_groups, self.ratios, strict=True):
            group["lr"] = lr * ratio
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "schedule": self.schedule.state_dict(), "ratios": list(self.ratios),
            "stage_multiplier": self.stage_multiplier, "override": self.override.model_dump(),
            "num_updates": self.num_updates, "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["name"] != self.name:
            raise ValueError(f"state is for scheduler {state['name']!r}, this one is {self.name!r}")
        self.schedule.load_state_dict(state["schedule"])
        self.ratios = [float(r) for r in state["ratios"]]
        self.stage_multiplier = float(state["stage_multiplier"])
        self.override = _override(state)
        self.num_updates = int(state["num_updates"])
        self.epoch = int(state["epoch"])
        self._apply()


def _override(state: dict[str, Any]) -> LrOverride:
    """The override of a state dict; checkpoints written before `core.lr` kept two plain numbers."""
    if "override" in state:
        return LrOverride.model_validate(state["override"])
    return LrOverride(scale=float(state["override_scale"]), absolute=state["override_absolute"])


def _positive(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {value}")
    return value


def build_scheduler(
    name: str,
    optimizer: Optimizer,
    *,
    steps_per_epoch: int,
    max_epochs: int,
    base_lr: float | None = None,
    warmup_epochs: float = 5,
    warmup_start_factor: float = 0.01,
    restart_epochs: float | None = None,
    min_lr_ratio: float = 0.01,
    monitor: str = "val_cer",
    plateau_patience: int = 3,
    plateau_factor: float = 0.5,
    plateau_min_lr: float = 1e-6,
    plateau_threshold: float = 1e-4,
    rewarmup_epochs: float = 1,
    after: str | None = None,
) -> LRController:
    """The recipe's scheduler as an LRController over ``optimizer``.

    ``base_lr`` (default: the first group's ``initial_lr``, else its lr) rescales all groups, keeping
    their ratios; the bases are recorded as ``initial_lr`` so a rebuilt run finds the same ones.
    ``restart_epochs`` is the cosine period T_0; None means one cosine over the post-warmup run.
    ``after`` names what gradual_warmup wraps (default constant) or what curriculum_aware restarts
    (default cosine): one of cosine | constant | plateau (plateau only for gradual_warmup).
    """
    if name not in SCHEDULER_NAMES:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULER_NAMES)}")
    if steps_per_epoch < 1 or max_epochs < 1:
        raise ValueError("steps_per_epoch and max_epochs must be at least 1")
    if after is not None and after not in AFTER_NAMES:
        raise ValueError(f"unknown after {after!r}; expected one of {', '.join(AFTER_NAMES)}")
    if warmup_epochs < 0 or not 0 < warmup_start_factor <= 1:
        raise ValueError("warmup_epochs must be >= 0 and warmup_start_factor in (0, 1]")
    lr = _set_base_lrs(optimizer, None if base_lr is None else _positive(base_lr, "base_lr"))
    warmup = round(warmup_epochs * steps_per_epoch)
    period = round(restart_epochs * steps_per_epoch) if restart_epochs else max_epochs * steps_per_epoch - warmup
    cosine = cosine_inner(max(1, period), lr * min_lr_ratio)
    schedule: Schedule
    if name == "constant":
        schedule = TorchSchedule(lr, with_warmup(constant_inner, warmup_start_factor), 0)
    elif name == "warmup_cosine":
        schedule = TorchSchedule(lr, with_warmup(cosine, warmup_start_factor), warmup)
    elif name == "plateau" or (name == "gradual_warmup" and after == "plateau"):
        schedule = PlateauSchedule(
            lr, warmup, start_factor=warmup_start_factor, mode="min" if lower_is_better(monitor) else "max",
            factor=plateau_factor, patience=plateau_patience, min_lr=plateau_min_lr, threshold=plateau_threshold,
        )
    else:
        default_after = "cosine" if name == "curriculum_aware" else "constant"
        inner = {"cosine": cosine, "constant": constant_inner}.get(after or default_after)
        if inner is None:
            raise ValueError(f"{name} cannot wrap {after!r}")
        schedule = TorchSchedule(
            lr, with_warmup(inner, warmup_start_factor), warmup,
            restart_on_stage=name == "curriculum_aware", rewarmup_steps=round(rewarmup_epochs * steps_per_epoch),
        )
    return LRController(optimizer, schedule, name=name)


def _base_lrs(optimizer: Optimizer) -> list[float]:
    """Each group's lr before any schedule touched it; ``initial_lr`` survives optimizer state_dicts."""
    return [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]


def _set_base_lrs(optimizer: Optimizer, base_lr: float | None) -> float:
    """Record the groups' base lrs (rescaled so the first is ``base_lr`` when given); returns the first."""
    bases = _base_lrs(optimizer)
    if base_lr is not None:
        bases = [base_lr * base / bases[0] if bases[0] > 0 else base_lr for base in bases]
    for group, base in zip(optimizer.param_groups, bases, strict=True):
        group["initial_lr"] = group["lr"] = base
    return bases[0]
