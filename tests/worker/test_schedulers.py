"""The lr curves against their closed forms, stage re-warmup, plateau, overrides and resume."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from core.lr import LrOverride
from worker.schedulers import LRController, build_scheduler

BASE = 1e-3
SPE = 10


def make_optimizer(lr: float = BASE) -> torch.optim.Optimizer:
    return torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=lr)


def curve(controller: LRController, steps: int) -> list[float]:
    values = [controller.effective]
    for n in range(1, steps):
        values.append(controller.step_update(n))
    return values


def warmup_cosine_formula(t: int, warmup: int, period: int, start: float = 0.01, ratio: float = 0.01) -> float:
    if t < warmup:
        return BASE * (start + (1 - start) * t / warmup)
    eta_min = BASE * ratio
    t_cur = (t - warmup) % period
    return eta_min + (BASE - eta_min) * (1 + math.cos(math.pi * t_cur / period)) / 2


def test_warmup_cosine_with_restarts_matches_closed_form() -> None:
    opt = make_optimizer()
    lr = build_scheduler("warmup_cosine", opt, steps_per_epoch=SPE, max_epochs=40, warmup_epochs=5, restart_epochs=10)
    values = curve(lr, 300)
    for t, value in enumerate(values):
        assert value == pytest.approx(warmup_cosine_formula(t, 50, 100), rel=1e-9), t
    assert values[50] == pytest.approx(BASE) and values[150] == pytest.approx(BASE)
    assert min(values[50:]) >= BASE * 0.01 * (1 - 1e-9)
    assert opt.param_groups[0]["lr"] == pytest.approx(values[-1])


def test_one_cosine_over_the_run_when_no_restart_period() -> None:
    lr = build_scheduler("warmup_cosine", make_optimizer(), steps_per_epoch=SPE, max_epochs=20, warmup_epochs=2)
    values = curve(lr, 200)
    for t in (0, 7, 20, 55, 110, 199):
        assert values[t] == pytest.approx(warmup_cosine_formula(t, 20, 180), rel=1e-9)
    assert values[199] < BASE * 0.02


def test_constant_and_gradual_warmup() -> None:
    constant = curve(build_scheduler("constant", make_optimizer(), steps_per_epoch=SPE, max_epochs=5), 30)
    assert constant == pytest.approx([BASE] * 30)
    gradual = build_scheduler(
        "gradual_warmup", make_optimizer(), steps_per_epoch=SPE, max_epochs=5, warmup_epochs=2, warmup_start_factor=0.25,
    )
    values = curve(gradual, 40)
    for t in range(40):
        expected = BASE * (0.25 + 0.75 * t / 20) if t < 20 else BASE
        assert values[t] == pytest.approx(expected, rel=1e-9)


def test_gradual_warmup_wraps_cosine_like_warmup_cosine() -> None:
    kwargs = {"steps_per_epoch": SPE, "max_epochs": 30, "warmup_epochs": 3, "restart_epochs": 7}
    wrapped = curve(build_scheduler("gradual_warmup", make_optimizer(), after="cosine", **kwargs), 200)
    direct = curve(build_scheduler("warmup_cosine", make_optimizer(), **kwargs), 200)
    assert wrapped == pytest.approx(direct, rel=1e-12)


def test_stage_multiplier_and_curriculum_rewarmup() -> None:
    lr = build_scheduler(
        "curriculum_aware", make_optimizer(), steps_per_epoch=SPE, max_epochs=40,
        warmup_epochs=2, restart_epochs=10, rewarmup_epochs=0.5,
    )
    curve(lr, 71)  # 70 updates done: inside the first cosine
    assert lr.effective == pytest.approx(warmup_cosine_formula(70, 20, 100), rel=1e-9)
    lr.change_stage(0.8)
    values = [lr.effective] + [lr.step_update(71 + k) for k in range(200)]
    for k, value in enumerate(values):
        assert value == pytest.approx(0.8 * warmup_cosine_formula(k, 5, 100), rel=1e-9), k
    assert lr.parts()["stage_multiplier"] == 0.8


def test_stage_change_without_rewarmup_only_scales() -> None:
    lr = build_scheduler("warmup_cosine", make_optimizer(), steps_per_epoch=SPE, max_epochs=40, warmup_epochs=2)
    curve(lr, 50)
    before = lr.effective
    assert lr.change_stage(0.5) == pytest.approx(0.5 * before)
    assert lr.step_update() == pytest.approx(0.5 * warmup_cosine_formula(50, 20, 380), rel=1e-9)


def test_plateau_reduces_after_patience_and_stops_at_min_lr() -> None:
    lr = build_scheduler(
        "plateau", make_optimizer(), steps_per_epoch=SPE, max_epochs=50, warmup_epochs=1,
        monitor="val_cer", plateau_patience=2, plateau_factor=0.5, plateau_min_lr=2e-4,
    )
    lr.step_epoch(0, 0.01)  # during warmup: ignored, else every later epoch would look bad
    values = curve(lr, 11)
    assert values[5] == pytest.approx(BASE * (0.01 + 0.99 * 0.5))
    assert values[10] == pytest.approx(BASE)
    seen = []
    for epoch, cer in enumerate([0.5, 0.4, 0.4, 0.4, 0.41, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3], start=1):
        seen.append(lr.step_epoch(epoch, cer))
    assert seen[:4] == pytest.approx([BASE] * 4)
    assert seen[4:8] == pytest.approx([BASE / 2] * 4)  # the third bad epoch in a row exceeds patience 2
    assert seen[8:11] == pytest.approx([BASE / 4] * 3)
    assert seen[-1] == pytest.approx(2e-4)  # floored at min lr


def test_plateau_mode_follows_metric_direction() -> None:
    lr = build_scheduler(
        "plateau", make_optimizer(), steps_per_epoch=SPE, max_epochs=5, warmup_epochs=0,
        monitor="val_sequence_accuracy", plateau_patience=0, plateau_factor=0.1,
    )
    assert lr.step_epoch(1, 0.2) == pytest.approx(BASE)
    assert lr.step_epoch(2, 0.3) == pytest.approx(BASE)  # rising accuracy is progress
    assert lr.step_epoch(3, 0.1) == pytest.approx(BASE / 10)


def test_override_semantics_are_core_lr() -> None:
    lr = build_scheduler("constant", make_optimizer(), steps_per_epoch=SPE, max_epochs=5)
    lr.set_stage_multiplier(0.5)
    lr.steer(scale=3.0)
    assert lr.effective == pytest.approx(BASE * 1.5)
    assert lr.optimizer.param_groups[0]["lr"] == pytest.approx(BASE * 1.5)
    lr.set_override(LrOverride(scale=3.0, auto_scale=0.5))  # a directive after a rollback
    assert lr.effective == pytest.approx(BASE * 0.75)
    lr.steer(lr=0.02)
    assert lr.step_update() == 0.02
    assert lr.parts() == {
        "schedule": pytest.approx(BASE), "stage_multiplier": 0.5, "override_scale": 1.0,
        "override_absolute": 0.02, "auto_scale": 0.5, "effective": 0.02,
    }
    lr.steer(clear=True)
    assert lr.effective == pytest.approx(BASE * 0.5 * 0.5)  # the automatic scale stays
    with pytest.raises(ValueError):
        lr.steer(scale=0)
    with pytest.raises(ValueError):
        lr.step_update(0)


def test_checkpoints_of_the_two_number_override_still_load() -> None:
    lr = build_scheduler("constant", make_optimizer(), steps_per_epoch=SPE, max_epochs=5)
    state = lr.state_dict()
    del state["override"]
    lr.load_state_dict({**state, "override_scale": 0.25, "override_absolute": None})
    assert lr.override == LrOverride(scale=0.25) and lr.effective == pytest.approx(BASE * 0.25)


def test_param_groups_keep_their_ratio_and_base_survives_rebuild() -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 10 * BASE}], lr=BASE)
    lr = build_scheduler("warmup_cosine", opt, steps_per_epoch=SPE, max_epochs=10, warmup_epochs=1)
    lr.step_update(3)
    assert opt.param_groups[1]["lr"] == pytest.approx(10 * opt.param_groups[0]["lr"])
    rebuilt = build_scheduler("warmup_cosine", opt, steps_per_epoch=SPE, max_epochs=10, warmup_epochs=1)
    assert rebuilt.parts()["schedule"] == pytest.approx(BASE * 0.01)  # from initial_lr, not the current lr
    scaled = build_scheduler("constant", opt, steps_per_epoch=SPE, max_epochs=1, base_lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 1.0])
    assert scaled.effective == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["warmup_cosine", "curriculum_aware", "plateau", "gradual_warmup", "constant"])
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    kwargs = {"steps_per_epoch": SPE, "max_epochs": 30, "warmup_epochs": 2, "restart_epochs": 5,
              "plateau_patience": 1, "rewarmup_epochs": 1}
    metrics = [0.9, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7]

    def drive(controller: LRController, epochs: range) -> list[float]:
        values = []
        for epoch in epochs:
            for k in range(1, SPE + 1):
                values.append(controller.step_update(epoch * SPE + k))
            values.append(controller.step_epoch(epoch, metrics[epoch]))
            if epoch == 2:
                values.append(controller.change_stage(0.6))
            if epoch == 5:
                values.append(controller.steer(scale=0.5))
        return values

    reference = drive(build_scheduler(name, make_optimizer(), **kwargs), range(8))
    first = build_scheduler(name, make_optimizer(), **kwargs)
    head = drive(first, range(4))
    saved = first.state_dict()
    resumed = build_scheduler(name, make_optimizer(), **kwargs)
    resumed.load_state_dict(saved)
    assert resumed.effective == head[-1]
    assert head + drive(resumed, range(4, 8)) == reference
    if name == "plateau":
        assert min(reference) < BASE * 0.6 * 0.5  # the plateau actually fired
    if name == "curriculum_aware":
        assert reference[3 * (SPE + 1)] == pytest.approx(0.6 * BASE * 0.01)  # re-warmup restarted


def test_no_scheduler_warnings_and_unknown_names_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("warmup_cosine", "curriculum_aware", "plateau", "gradual_warmup", "constant"):
            lr = build_scheduler(name, make_optimizer(), steps_per_epoch=2, max_epochs=3, warmup_epochs=1)
            curve(lr, 6)
            lr.step_epoch(3, 0.5)
            lr.change_stage(0.5)
    with pytest.raises(ValueError, match="unknown scheduler"):
        build_scheduler("onecycle", make_optimizer(), steps_per_epoch=1, max_epochs=1)
    with pytest.raises(ValueError):
        build_scheduler("curriculum_aware", make_optimizer(), steps_per_epoch=1, max_epochs=1, after="plateau")
