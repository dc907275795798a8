"""The lr rules the server's POST /lr, LocalController.request and the trainer share."""

from __future__ import annotations

import math

import pytest

from core.lr import ROLLBACK_FACTOR, LrOverride, effective, reduce, rollback_or_fail, steer

NONE = LrOverride()


def test_scale_sets_and_does_not_compound():
    once = steer(NONE, scale=0.5)
    assert steer(once, scale=0.5) == once == LrOverride(scale=0.5)
    assert effective(1e-3, 0.8, once) == pytest.approx(1e-3 * 0.8 * 0.5)


def test_the_newest_request_decides_between_scale_and_absolute():
    absolute = steer(steer(NONE, scale=0.5), lr=3e-4)
    assert absolute == LrOverride(absolute=3e-4)  # no scale left waiting behind the absolute lr
    assert effective(1e-3, 0.8, absolute) == 3e-4
    assert steer(absolute, scale=0.25) == LrOverride(scale=0.25)
    assert steer(absolute, clear=True) == NONE


def test_a_person_scale_after_a_rollback_composes_with_it():
    rolled = reduce(NONE, ROLLBACK_FACTOR)
    assert rolled == LrOverride(auto_scale=0.5)
    scaled = steer(rolled, scale=0.5)
    assert scaled.auto_scale == 0.5 and effective(1e-3, 1.0, scaled) == pytest.approx(2.5e-4)
    assert steer(scaled, clear=True) == rolled  # clear removes the person's part only
    assert effective(1e-3, 1.0, steer(scaled, lr=1e-3)) == 1e-3  # an absolute lr is exact


def test_a_reduction_acts_on_an_absolute_lr_in_force():
    reduced = reduce(steer(NONE, lr=4e-4), 0.5)
    assert reduced == LrOverride(absolute=2e-4, auto_scale=0.5)
    assert effective(1e-3, 1.0, steer(reduced, clear=True)) == pytest.approx(5e-4)


@pytest.mark.parametrize("kwargs", [{}, {"lr": 1e-3, "scale": 0.5}, {"scale": 0.5, "clear": True}])
def test_exactly_one_request(kwargs):
    with pytest.raises(ValueError, match="exactly one of lr, scale or clear"):
        steer(NONE, **kwargs)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_values_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="positive finite"):
        steer(NONE, scale=bad)
    with pytest.raises(ValueError, match="positive finite"):
        reduce(NONE, bad)


def test_rollbacks_until_max_rollbacks_then_fail():
    assert [rollback_or_fail(n, 2) for n in range(4)] == ["rollback", "rollback", "fail", "fail"]
    assert rollback_or_fail(0, 0) == "fail"
