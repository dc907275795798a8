"""The pure curriculum policy: each rule with a crafted history, and where it must not fire."""

from __future__ import annotations

import pytest

from core.curriculum import (
    Action,
    EpochRecord,
    Outcome,
    Recommendation,
    auto_actions,
    decide,
    finished,
    judge,
    recommend,
)
from core.recipe import Recipe, StageSpec

ACC = "val_sequence_accuracy"


def spec(name: str = "s", **kw) -> StageSpec:
    base = {"name": name, "content": "words", "success_threshold": 0.8, "min_epochs": 3,
            "max_epochs": 10, "patience": 4}
    return StageSpec(**{**base, **kw})


TWO = [spec("first"), spec("second")]


def history(values, stage: int = 0, start: int = 1, metric: str = ACC, **extra) -> list[EpochRecord]:
    """One record per value; `extra` maps metric name → list of values for the same epochs."""
    return [
        EpochRecord(start + i, stage, {metric: v, **{k: vs[i] for k, vs in extra.items()}})
        for i, v in enumerate(values)
    ]


# -- decide -----------------------------------------------------------------------------------


def test_threshold_before_min_epochs_does_not_move():
    d = decide(TWO, 0, history([0.95, 0.96]))
    assert (d.stage, d.reason, d.completed) == (0, None, False)
    assert d.evidence.value == 0.96 and d.evidence.epochs_in_stage == 2


def test_threshold_after_min_epochs_advances():
    d = decide(TWO, 0, history([0.5, 0.7, 0.81]))
    assert (d.stage, d.reason, d.moved) == (1, "threshold", True)
    assert d.evidence.value == 0.81 and d.evidence.threshold == 0.8


def test_below_threshold_after_min_epochs_stays():
    d = decide(TWO, 0, history([0.5, 0.6, 0.79]))
    assert (d.stage, d.reason) == (0, None)


def test_max_epochs_forces_a_move():
    values = [0.1 + 0.01 * i for i in range(10)]
    assert decide(TWO, 0, history(values[:9])).reason is None
    d = decide(TWO, 0, history(values))
    assert (d.stage, d.reason) == (1, "max_epochs")
    assert d.evidence.epochs_in_stage == 10


def test_patience_forces_a_move_after_epochs_without_improvement():
    flat = [0.5, 0.6, 0.6, 0.55, 0.59]
    assert decide(TWO, 0, history(flat)).reason is None
    d = decide(TWO, 0, history([*flat, 0.6]))
    assert (d.stage, d.reason) == (1, "patience")
    assert d.evidence.best == 0.6 and d.evidence.epochs_since_best == 4


def test_patience_waits_for_min_epochs():
    stages = [spec("a", min_epochs=6, patience=2), spec("b")]
    assert decide(stages, 0, history([0.5, 0.4, 0.4, 0.4, 0.4])).reason is None
    assert decide(stages, 0, history([0.5, 0.4, 0.4, 0.4, 0.4, 0.4])).reason == "patience"


def test_held_stage_never_moves_but_reports():
    d = decide(TWO, 0, history([0.5, 0.7, 0.9]), held=True)
    assert (d.stage, d.reason, d.completed) == (0, None, False)
    assert d.trigger == "threshold" and d.evidence.value == 0.9


def test_last_stage_passing_completes_the_run():
    records = history([0.9, 0.9, 0.9]) + history([0.5, 0.7, 0.85], stage=1, start=4)
    d = decide(TWO, 1, records)
    assert (d.stage, d.reason, d.completed, d.trigger) == (1, "completed", True, "threshold")
    assert not d.moved


def test_last_stage_at_max_epochs_completes_the_run():
    d = decide(TWO, 1, history([0.1] * 10, stage=1))
    assert (d.completed, d.reason, d.trigger) == (True, "completed", "max_epochs")


def test_lower_is_better_metric_passes_below_threshold():
    stages = [spec("a", metric="val_cer", success_threshold=0.1), spec("b")]
    assert decide(stages, 0, history([0.5, 0.3, 0.2], metric="val_cer")).reason is None
    d = decide(stages, 0, history([0.5, 0.3, 0.09], metric="val_cer"))
    assert d.reason == "threshold" and d.evidence.lower_is_better


def test_lower_is_better_improvement_resets_patience():
    stages = [spec("a", metric="val_loss", success_threshold=0.05, patience=2), spec("b")]
    falling = [0.9, 0.8, 0.7, 0.6]
    assert decide(stages, 0, history(falling, metric="val_loss")).reason is None
    d = decide(stages, 0, history([*falling, 0.65, 0.61], metric="val_loss"))
    assert d.reason == "patience" and d.evidence.best == 0.6


def test_curriculum_metric_applies_where_the_stage_names_none():
    d = decide(TWO, 0, history([0.2, 0.1, 0.05], metric="val_cer"), metric="val_cer")
    assert d.reason == "threshold" and d.evidence.metric == "val_cer"


def test_only_the_current_visit_counts_after_a_rollback():
    records = history([0.1] * 8) + history([0.5], stage=1, start=9) + history([0.2, 0.3], start=10)
    d = decide(TWO, 0, records)
    assert d.evidence.epochs_in_stage == 2 and d.reason is None


def test_missing_metric_never_passes_but_max_epochs_still_applies():
    empty = [EpochRecord(i, 0, {}) for i in range(1, 10)]
    assert decide(TWO, 0, empty).reason is None
    assert decide(TWO, 0, [*empty, EpochRecord(10, 0, {})]).reason == "max_epochs"


def test_no_history_in_stage_is_no_move():
    d = decide(TWO, 1, history([0.9] * 3))
    assert d.reason is None and d.evidence.epochs_in_stage == 0 and d.evidence.value is None


def test_recipe_stages_drive_the_policy():
    stages = Recipe().curriculum.stages
    d = decide(stages, 0, history([0.5, 0.8, 0.91]))
    assert (d.stage, d.reason) == (1, "threshold")


def test_out_of_range_stage_is_an_error():
    with pytest.raises(ValueError):
        decide(TWO, 2, [])


# -- recommend ----------------------------------------------------------------------------------


def kinds(stages, current, records) -> list[str]:
    return [r.kind for r in recommend(stages, current, records)]


def test_plateau_is_recommended_when_flat_for_k_epochs():
    (rec,) = recommend(TWO, 0, history([0.3, 0.5, 0.501, 0.502, 0.5, 0.503]))
    assert rec.kind == "plateau"
    assert rec.evidence["values"] == [0.5, 0.501, 0.502, 0.5, 0.503] and rec.evidence["stage"] == 0
    assert rec.evidence["epoch"] == 6


def test_no_plateau_while_improving_or_too_few_epochs():
    assert kinds(TWO, 0, history([0.3, 0.4, 0.5, 0.6, 0.7])) == []
    assert kinds(TWO, 0, history([0.5, 0.5, 0.5, 0.5])) == []


def test_overfitting_when_the_train_val_gap_widens():
    val = [0.50, 0.51, 0.52, 0.53]
    train = [0.55, 0.60, 0.66, 0.72]
    recs = recommend(TWO, 0, history(val, train_sequence_accuracy=train))
    assert [r.kind for r in recs] == ["overfitting"]
    assert recs[0].evidence["growth"] == pytest.approx(0.14)


def test_overfitting_uses_loss_orientation_for_loss_metrics():
    stages = [spec("a", metric="val_loss", success_threshold=0.0), spec("b")]
    val_loss = [1.0, 1.1, 1.2, 1.3]
    train_loss = [0.9, 0.8, 0.7, 0.6]
    assert "overfitting" in kinds(stages, 0, history(val_loss, metric="val_loss", train_loss=train_loss))


def test_no_overfitting_when_the_gap_is_steady_or_shrinking():
    val = [0.50, 0.55, 0.60, 0.65]
    assert kinds(TWO, 0, history(val, train_sequence_accuracy=[0.6, 0.65, 0.7, 0.75])) == []
    assert kinds(TWO, 0, history(val, train_sequence_accuracy=[0.9, 0.9, 0.9, 0.9])) == []


def test_threshold_unreachable_near_max_epochs():
    values = [0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55]
    recs = recommend(TWO, 0, history(values))
    assert [r.kind for r in recs] == ["threshold_unreachable"]
    assert recs[0].evidence["epochs_left"] == 2 and recs[0].evidence["best"] == 0.55


def test_threshold_not_unreachable_when_close_or_early():
    close = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75]
    assert kinds(TWO, 0, history(close)) == []
    early = [0.1, 0.2, 0.3, 0.4]
    assert kinds(TWO, 0, history(early)) == []


def test_nonfinite_steps_piling_up():
    rising = [0.1, 0.2, 0.3]
    recs = recommend(TWO, 0, history(rising, nonfinite_steps=[2, 5, 1]))
    assert [r.kind for r in recs] == ["nonfinite_steps"] and recs[0].evidence["total"] == 8


def test_no_nonfinite_recommendation_when_an_epoch_was_clean():
    assert kinds(TWO, 0, history([0.1, 0.2, 0.3], nonfinite_steps=[2, 0, 1])) == []
    assert kinds(TWO, 0, history([0.1, 0.2], nonfinite_steps=[2, 3])) == []


# -- auto_actions -------------------------------------------------------------------------------


def rec(kind: str) -> Recommendation:
    return Recommendation(kind, "", {})


def test_auto_actions_only_for_enabled_kinds():
    recs = [rec("plateau"), rec("threshold_unreachable")]
    assert auto_actions(recs, []) == []
    assert auto_actions(recs, ["plateau"]) == [Action("advance", None, ("plateau",))]


def test_auto_actions_halve_the_lr_once_for_two_reasons():
    recs = [rec("threshold_unreachable"), rec("nonfinite_steps"), rec("overfitting")]
    enabled = {"threshold_unreachable", "nonfinite_steps", "overfitting"}
    assert auto_actions(recs, enabled) == [
        Action("lr_scale", 0.5, ("threshold_unreachable", "nonfinite_steps")),
        Action("advance", None, ("overfitting",)),
    ]


def test_recipe_auto_apply_list_feeds_auto_actions():
    recipe = Recipe(auto_apply=["nonfinite_steps"])
    assert auto_actions([rec("nonfinite_steps"), rec("plateau")], recipe.auto_apply) == [
        Action("lr_scale", 0.5, ("nonfinite_steps",))
    ]


# -- judge: what the server and LocalController do after each epoch ------------------------------


def recipe_with(auto_apply=(), **stage) -> Recipe:
    stages = [dict(name=n, content=c, success_threshold=0.99, min_epochs=1, max_epochs=20, patience=20, **stage)
              for n, c in (("first", "characters"), ("second", "combinations"))]
    return Recipe.model_validate({"curriculum": {"stages": stages}, "auto_apply": list(auto_apply)})


FLAT = history([0.3] * 5)  # a plateau in stage 0


def test_judge_skips_an_epoch_of_another_stage():
    outcome = judge(recipe_with(["plateau"]), stage=1, held=False, trained=0, history=FLAT)
    assert outcome == Outcome(None, [], [])


def test_judge_acts_on_opted_in_advice_once_per_stage():
    recipe = recipe_with(["plateau"])
    outcome = judge(recipe, stage=0, held=False, trained=0, history=FLAT)
    assert outcome.decision.reason is None and [r.kind for r in outcome.recommendations] == ["plateau"]
    assert outcome.actions == [Action("advance", None, ("plateau",))]
    assert judge(recipe, stage=0, held=False, trained=0, history=FLAT, acted={("plateau", 0)}).actions == []
    assert judge(recipe_with(), stage=0, held=False, trained=0, history=FLAT).actions == []


def test_judge_never_auto_advances_a_held_or_the_last_stage():
    recipe = recipe_with(["plateau"])
    assert judge(recipe, stage=0, held=True, trained=0, history=FLAT).actions == []
    last = history([0.3] * 5, stage=1)
    assert judge(recipe, stage=1, held=False, trained=1, history=last).actions == []


def test_judge_does_not_act_when_the_policy_moved_the_run():
    passed = history([0.995] * 5)  # flat (a plateau) and past the threshold
    outcome = judge(recipe_with(["plateau"]), stage=0, held=False, trained=0, history=passed)
    assert outcome.decision.moved and [r.kind for r in outcome.recommendations] == ["plateau"]
    assert outcome.actions == []


def test_finished_by_the_last_stage_or_max_epochs():
    assert finished(10, 3, True) and finished(10, 10, False) and not finished(10, 9, False)
