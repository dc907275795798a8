"""Precision resolution, loss scaling on CPU, non-finite accounting, and exact gradient accumulation."""

from __future__ import annotations

import math

import pytest
import torch

from worker.precision import GradientAccumulator, PrecisionManager, resolve_precision


def test_resolve_precision() -> None:
    assert resolve_precision("auto", "cpu") is torch.float32
    assert resolve_precision("bf16", "cpu") is torch.bfloat16
    assert resolve_precision("fp16", torch.device("cpu")) is torch.float16
    assert resolve_precision("fp32", "cuda") is torch.float32
    with pytest.raises(ValueError):
        resolve_precision("fp8", "cpu")


def test_scaler_enabled_only_for_fp16() -> None:
    assert not PrecisionManager("fp32").scaler.is_enabled()
    assert not PrecisionManager("bf16").scaler.is_enabled()
    fp16 = PrecisionManager("fp16", init_scale=1024.0)
    assert fp16.scaler.is_enabled() and fp16.scale == 1024.0 and fp16.scale_history == [(0, 1024.0)]
    with PrecisionManager("bf16").autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16


def tiny_model() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 1)


def fp16_step(amp: PrecisionManager, model: torch.nn.Module, opt: torch.optim.Optimizer, poison: bool) -> bool:
    with amp.autocast():
        loss = model(torch.ones(2, 4)).float().pow(2).mean()
    amp.backward(loss)
    if poison:
        model.weight.grad[0, 0] = math.inf
    amp.unscale_(opt)
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
    applied = amp.step(opt, norm)
    opt.zero_grad(set_to_none=True)
    return applied


def test_fp16_on_cpu_skips_inf_gradients_and_records_scale() -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    amp = PrecisionManager("fp16", "cpu", init_scale=256.0, growth_interval=2)
    weight = model.weight.detach().clone()
    assert fp16_step(amp, model, opt, poison=True) is False
    assert torch.equal(model.weight, weight)  # the skipped step did not move the weights
    assert amp.skipped_steps == 1 and amp.scale == 128.0
    assert fp16_step(amp, model, opt, poison=False) and fp16_step(amp, model, opt, poison=False)
    assert not torch.equal(model.weight, weight)
    assert amp.scale == 256.0  # grew back after growth_interval clean steps
    assert amp.scale_history == [(0, 256.0), (1, 128.0), (3, 256.0)]

    resumed = PrecisionManager("fp16", "cpu", init_scale=1.0, growth_interval=2)
    resumed.load_state_dict(amp.state_dict())
    assert resumed.scale == 256.0 and resumed.skipped_steps == 1
    assert resumed.scaler.state_dict() == amp.scaler.state_dict()
    assert resumed.scale_history == amp.scale_history


def test_fp32_skips_nonfinite_grad_norm() -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    amp = PrecisionManager("fp32")
    weight = model.weight.detach().clone()
    assert amp.step(opt, math.nan) is False
    assert torch.equal(model.weight, weight) and amp.skipped_steps == 1 and amp.steps == 1


def test_nonfinite_losses_counted_in_a_row_and_in_all() -> None:
    amp = PrecisionManager("fp32")
    assert amp.check_loss(torch.tensor(1.0))
    assert not amp.check_loss(torch.tensor(math.inf))
    assert not amp.check_loss(torch.tensor([1.0, math.nan]))
    assert amp.consecutive_nonfinite == 2
    assert amp.check_loss(torch.tensor(0.5))
    assert amp.nonfinite_losses == 2 and amp.consecutive_nonfinite == 0
    state = amp.state_dict()
    other = PrecisionManager("fp32")
    other.load_state_dict(state)
    assert other.nonfinite_losses == 2


def test_injected_inf_loss_skips_backward_in_the_loop() -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    amp, acc = PrecisionManager("fp32"), GradientAccumulator(2, clip_norm=10.0)
    acc.start_epoch(4)
    for i in range(4):
        loss = model(torch.ones(1, 4)).sum() * (math.inf if i == 1 else 1.0)
        if amp.check_loss(loss):
            amp.backward(loss * acc.loss_scale(i))
        if acc.is_boundary(i):
            amp.unscale_(opt)
            assert amp.step(opt, acc.clip(model.parameters()))
            opt.zero_grad(set_to_none=True)
    assert amp.nonfinite_losses == 1 and amp.skipped_steps == 0
    assert all(math.isfinite(n) for n in acc.grad_norms) and torch.isfinite(model.weight).all()


def test_window_bookkeeping_counts_micro_batches() -> None:
    acc = GradientAccumulator(3)
    acc.start_epoch(7)
    assert [acc.is_boundary(i) for i in range(7)] == [False, False, True, False, False, True, True]
    assert [acc.window_size(i) for i in range(7)] == [3, 3, 3, 3, 3, 3, 1]
    assert acc.optimizer_steps(7) == 3
    acc.start_epoch(None)
    assert [i for i in range(100) if acc.is_boundary(i)][-2:] == [95, 98]
    with pytest.raises(ValueError):
        GradientAccumulator(9)


def grads_of(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("steps", [1, 3, 4])
def test_accumulation_equals_one_big_batch_including_partial_window(steps: int) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(10 * 2, 4), torch.randn(10 * 2, 1)
    micro = list(zip(x.split(2), y.split(2), strict=True))  # 10 micro-batches of 2 samples
    model = tiny_model()
    acc = GradientAccumulator(steps)
    acc.start_epoch(len(micro))
    windows: list[list[torch.Tensor]] = []
    for i, (xb, yb) in enumerate(micro):
        (torch.nn.functional.mse_loss(model(xb), yb) * acc.loss_scale(i)).backward()
        if acc.is_boundary(i):
            windows.append(grads_of(model))
            model.zero_grad(set_to_none=True)
    assert len(windows) == math.ceil(10 / steps)
    for w, got in enumerate(windows):
        start, stop = w * steps * 2, min((w + 1) * steps, 10) * 2
        torch.nn.functional.mse_loss(model(x[start:stop]), y[start:stop]).backward()
        for a, b in zip(got, grads_of(model), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        model.zero_grad(set_to_none=True)


def test_clipping_bounds_the_norm_and_records_the_raw_one() -> None:
    model = tiny_model()
    (model(torch.full((1, 4), 100.0)).sum()).backward()
    raw = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])))
    acc = GradientAccumulator(1, clip_norm=1.0)
    assert acc.clip(model.parameters()) == pytest.approx(raw)
    clipped = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])))
    assert raw > 100 and clipped == pytest.approx(1.0, rel=1e-4)
    unclipped = GradientAccumulator(1)
    assert unclipped.clip(model.parameters()) == pytest.approx(clipped, rel=1e-4)
    assert acc.last_grad_norm == pytest.approx(raw) and unclipped.mean_grad_norm() == pytest.approx(clipped, rel=1e-4)
