"""The curriculum policy: epoch history in, stage decision out.

Pure on purpose (no database, HTTP or torch) so every rule is testable with a hand-made history,
and the server and `LocalController` both call `judge` after each epoch and only store what it says.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from core.metrics import lower_is_better
from core.recipe import Recipe, RecommendationKind

Trigger = Literal["threshold", "max_epochs", "patience"]
Reason = Literal["threshold", "max_epochs", "patience", "completed"]
DEFAULT_METRIC = "val_sequence_accuracy"


class Stage(Protocol):
    """What the policy reads from a stage; `core.recipe.StageSpec` satisfies it."""

    name: str
    success_threshold: float
    min_epochs: int
    max_epochs: int
    patience: int
    metric: str | None


class Epoch(Protocol):
    """What the policy reads from an epoch report; the server's rows or `EpochRecord`."""

    epoch: int
    stage: int
    metrics: Mapping[str, float | None]


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    stage: int
    metrics: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Evidence:
    """The numbers behind a decision, stored with each stage transition."""

    metric: str
    value: float | None
    threshold: float
    lower_is_better: bool
    epochs_in_stage: int
    min_epochs: int
    max_epochs: int
    patience: int
    best: float | None
    epochs_since_best: int | None


@dataclass(frozen=True)
class Decision:
    """`stage` is where the next epoch trains; `reason` is None when nothing moves.

    `trigger` is the rule that fired even when nothing moved (a held stage) or the run completed,
    so a person can see what the policy would have done.
    """

    stage: int
    reason: Reason | None
    completed: bool
    trigger: Trigger | None
    evidence: Evidence

    @property
    def moved(self) -> bool:
        return self.reason is not None and not self.completed


def stage_metric(stage: Stage, default: str = DEFAULT_METRIC) -> str:
    return stage.metric or default


def current_visit(history: Sequence[Epoch], stage: int) -> list[Epoch]:
    """The trailing epochs spent in `stage`: after a rollback, an earlier visit does not count."""
    visit: list[Epoch] = []
    for record in reversed(history):
        if record.stage != stage:
            break
        visit.append(record)
    visit.reverse()
    return visit


def _better(a: float, b: float, lower: bool) -> bool:
    return a < b if lower else a > b


def _best(values: Sequence[float | None], lower: bool) -> tuple[float | None, int | None]:
    """Best value and how many epochs ago it was first reached (ties are not improvements)."""
    best, best_at = None, None
    for i, value in enumerate(values):
        if value is not None and (best is None or _better(value, best, lower)):
            best, best_at = value, i
    return best, (None if best_at is None else len(values) - 1 - best_at)


def evidence(stage: Stage, visit: Sequence[Epoch], metric: str = DEFAULT_METRIC) -> Evidence:
    name = stage_metric(stage, metric)
    lower = lower_is_better(name)
    values = [r.metrics.get(name) for r in visit]
    best, since = _best(values, lower)
    return Evidence(
        metric=name, value=values[-1] if values else None, threshold=stage.success_threshold,
        lower_is_better=lower, epochs_in_stage=len(visit), min_epochs=stage.min_epochs,
        max_epochs=stage.max_epochs, patience=stage.patience, best=best, epochs_since_best=since,
    )


def _meets(ev: Evidence) -> bool:
    if ev.value is None:
        return False
    return ev.value <= ev.threshold if ev.lower_is_better else ev.value >= ev.threshold


def trigger(ev: Evidence) -> Trigger | None:
    """The stage rules in priority order: a pass beats a forced move, so the reason is honest."""
    settled = ev.epochs_in_stage >= ev.min_epochs
    if settled and ev.epochs_in_stage > 0 and _meets(ev):
        return "threshold"
    if ev.epochs_in_stage >= ev.max_epochs:
        return "max_epochs"
    if settled and ev.epochs_since_best is not None and ev.epochs_since_best >= ev.patience:
        return "patience"
    return None


def decide(
    stages: Sequence[Stage],
    current: int,
    history: Sequence[Epoch],
    *,
    held: bool = False,
    metric: str = DEFAULT_METRIC,
) -> Decision:
    """Where the next epoch trains. `metric` is curriculum.metric, used where a stage names none."""
    if not 0 <= current < len(stages):
        raise ValueError(f"stage index {current} out of range 0..{len(stages) - 1}")
    ev = evidence(stages[current], current_visit(history, current), metric)
    fired = trigger(ev)
    if held or fired is None:
        return Decision(current, None, False, fired, ev)
    if current == len(stages) - 1:
        return Decision(current, "completed", True, fired, ev)
    return Decision(current + 1, fired, False, fired, ev)


# ---------------------------------------------------------------------------------------------
# Recommendations: advice with evidence; the server acts on them only where the recipe opts in.


@dataclass(frozen=True)
class Recommendation:
    kind: RecommendationKind
    message: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Action:
    """What the server does for an auto-applied recommendation; `sources` names the kinds."""

    kind: Literal["advance", "lr_scale"]
    value: float | None = None
    sources: tuple[RecommendationKind, ...] = ()


@dataclass(frozen=True)
class Thresholds:
    """Tuning for `recommend`; the defaults suit epochs of a few hundred steps."""

    plateau_epochs: int = 5
    plateau_epsilon: float = 0.005
    gap_epochs: int = 4
    gap_growth: float = 0.05
    unreachable_epochs_left: int = 3
    unreachable_margin: float = 0.1
    nonfinite_epochs: int = 3


def _plateau(stage: Stage, visit: Sequence[Epoch], metric: str, t: Thresholds) -> Recommendation | None:
    """A metric that has not moved in k epochs will not pass the threshold by waiting."""
    values = [r.metrics.get(metric) for r in visit[-t.plateau_epochs:]]
    if len(values) < t.plateau_epochs or any(v is None for v in values):
        return None
    spread = max(values) - min(values)
    if spread > t.plateau_epsilon:
        return None
    return Recommendation(
        "plateau", f"{metric} flat within {spread:.4g} for {len(values)} epochs in {stage.name}",
        {"metric": metric, "values": values, "spread": spread, "epsilon": t.plateau_epsilon},
    )


def _gap(record: Epoch, metric: str) -> float | None:
    """Train minus validation, signed so that a positive gap means overfitting."""
    base = metric.removeprefix("val_")
    train, val = record.metrics.get(f"train_{base}"), record.metrics.get(f"val_{base}")
    if train is None or val is None:
        return None
    return val - train if lower_is_better(metric) else train - val


def _overfitting(stage: Stage, visit: Sequence[Epoch], metric: str, t: Thresholds) -> Recommendation | None:
    """A gap that grows every epoch means the stage's data is being memorised, not learned."""
    gaps = [_gap(r, metric) for r in visit[-t.gap_epochs:]]
    if len(gaps) < t.gap_epochs or any(g is None for g in gaps):
        return None
    widening = all(b > a for a, b in zip(gaps, gaps[1:]))
    if not widening or gaps[-1] - gaps[0] < t.gap_growth:
        return None
    return Recommendation(
        "overfitting", f"train/validation gap on {metric} grew from {gaps[0]:.3g} to {gaps[-1]:.3g}",
        {"metric": metric, "gaps": gaps, "growth": gaps[-1] - gaps[0], "min_growth": t.gap_growth},
    )


def _unreachable(stage: Stage, visit: Sequence[Epoch], metric: str, t: Thresholds) -> Recommendation | None:
    """Far from the threshold with max_epochs close: a lower lr is the cheap thing left to try."""
    ev = evidence(stage, visit, metric)
    left = ev.max_epochs - ev.epochs_in_stage
    if ev.best is None or not 0 < left <= t.unreachable_epochs_left:
        return None
    shortfall = ev.best - ev.threshold if ev.lower_is_better else ev.threshold - ev.best
    if shortfall <= t.unreachable_margin:
        return None
    return Recommendation(
        "threshold_unreachable",
        f"best {ev.metric} {ev.best:.3g} is {shortfall:.3g} short of {ev.threshold} with {left} epochs left",
        {"metric": ev.metric, "best": ev.best, "threshold": ev.threshold, "epochs_left": left,
         "shortfall": shortfall},
    )


def _nonfinite(history: Sequence[Epoch], t: Thresholds) -> Recommendation | None:
    """Skipped non-finite steps in every recent epoch mean the lr (or fp16 scale) is too hot."""
    counts = [r.metrics.get("nonfinite_steps") or 0 for r in history[-t.nonfinite_epochs:]]
    if len(counts) < t.nonfinite_epochs or not all(c > 0 for c in counts):
        return None
    return Recommendation(
        "nonfinite_steps",
        f"non-finite steps in each of the last {len(counts)} epochs ({sum(counts):g} in all)",
        {"counts": counts, "total": sum(counts)},
    )


def recommend(
    stages: Sequence[Stage],
    current: int,
    history: Sequence[Epoch],
    *,
    metric: str = DEFAULT_METRIC,
    thresholds: Thresholds = Thresholds(),
) -> list[Recommendation]:
    """Advice for the current stage; each carries the stage and latest epoch for de-duplication."""
    stage = stages[current]
    visit = current_visit(history, current)
    name = stage_metric(stage, metric)
    found = [
        _plateau(stage, visit, name, thresholds),
        _overfitting(stage, visit, name, thresholds),
        _unreachable(stage, visit, name, thresholds),
        _nonfinite(history, thresholds),
    ]
    where = {"stage": current, "stage_name": stage.name, "epoch": history[-1].epoch if history else None}
    return [Recommendation(r.kind, r.message, {**r.evidence, **where}) for r in found if r]


# Why each kind maps to its action: a plateau or a memorised stage gains more from new content
# than from more epochs; an unreachable threshold or non-finite steps call for a smaller lr.
ACTIONS: dict[str, Action] = {
    "plateau": Action("advance"),
    "overfitting": Action("advance"),
    "threshold_unreachable": Action("lr_scale", 0.5),
    "nonfinite_steps": Action("lr_scale", 0.5),
}


def auto_actions(recommendations: Sequence[Recommendation], enabled: Collection[str]) -> list[Action]:
    """The actions for the recommendations a recipe opted in to, at most one of each action kind.

    Two lr reasons in one epoch halve the lr once, not twice: the next epoch shows whether it helped.
    """
    merged: dict[str, Action] = {}
    for rec in recommendations:
        if rec.kind not in enabled:
            continue
        action = ACTIONS[rec.kind]
        prior = merged.get(action.kind)
        sources = (prior.sources if prior else ()) + (rec.kind,)
        value = action.value
        if prior is not None and prior.value is not None and value is not None:
            value = min(prior.value, value)
        merged[action.kind] = Action(action.kind, value, sources)
    return list(merged.values())


# ---------------------------------------------------------------------------------------------
# One epoch, judged: what the server and LocalController do after every report.


@dataclass(frozen=True)
class Outcome:
    """What one reported epoch does to a run.

    `decision` is None when the epoch trained another stage than the run is in now: a move the
    trainer has not applied yet is not judged on the stage it left. `actions` are the
    recommendations the recipe lets the policy act on: each kind once per stage, only when the
    decision leaves the run where it is, and no advance in a held or in the last stage.
    """

    decision: Decision | None
    recommendations: list[Recommendation]
    actions: list[Action]


def judge(recipe: Recipe, *, stage: int, held: bool, trained: int, history: Sequence[Epoch],
          acted: Collection[tuple[str, int]] = ()) -> Outcome:
    """`stage` is where the run is, `trained` where the reported epoch trained, `history` the run's
    epochs including this one, `acted` the (recommendation kind, stage) pairs already acted on."""
    if trained != stage:
        return Outcome(None, [], [])
    stages, metric = recipe.curriculum.stages, recipe.curriculum.metric
    decision = decide(stages, stage, history, held=held, metric=metric)
    recommendations = recommend(stages, stage, history, metric=metric)
    if decision.reason is not None:
        return Outcome(decision, recommendations, [])
    fresh = [r for r in recommendations if (r.kind, stage) not in acted]
    actions = [a for a in auto_actions(fresh, recipe.auto_apply)
               if a.kind != "advance" or (not held and stage + 1 < len(stages))]
    return Outcome(decision, recommendations, actions)


def finished(max_epochs: int, epoch: int, passed_last_stage: bool) -> bool:
    """A run is done when its last stage passed or it trained `training.max_epochs` epochs."""
    return passed_last_stage or epoch >= max_epochs
