import math

import pytest
import torch

from worker.multitask import AdaptiveWeighting, FixedWeighting, UncertaintyWeighting, build_weighting


def test_fixed_weighting() -> None:
    w = FixedWeighting({"a": 1.0, "b": 0.5})
    assert w({"a": torch.tensor(2.0), "b": torch.tensor(4.0)}).item() == 4.0
    assert w.effective_weights() == {"a": 1.0, "b": 0.5}
    with pytest.raises(KeyError):
        w({"a": torch.tensor(1.0)})


def test_uncertainty_formula_by_hand() -> None:
    w = UncertaintyWeighting(["a", "b"], initial={"a": 1.0, "b": 0.5})
    # s = -log w: total = 1 * 2 + 0 + 0.5 * 4 + log 2
    assert w({"a": torch.tensor(2.0), "b": torch.tensor(4.0)}).item() == pytest.approx(4 + math.log(2))
    assert w.effective_weights() == pytest.approx({"a": 1.0, "b": 0.5})


def test_uncertainty_optimum_is_log_loss() -> None:
    w = UncertaintyWeighting(["a", "b"])
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        w({"a": torch.tensor(0.5), "b": torch.tensor(4.0)}).backward()
        opt.step()
    assert w.log_vars.tolist() == pytest.approx([math.log(0.5), math.log(4.0)], abs=0.02)


def test_uncertainty_learns_to_trust_the_clean_task() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    noisy = y + 2.0 * torch.randn(256)
    model = torch.nn.Linear(4, 2)
    w = UncertaintyWeighting(["clean", "noisy"])
    opt = torch.optim.Adam([*model.parameters(), *w.parameters()], lr=0.05)
    for _ in range(300):
        pred = model(x)
        losses = {"clean": ((pred[:, 0] - y) ** 2).mean(), "noisy": ((pred[:, 1] - noisy) ** 2).mean()}
        opt.zero_grad()
        w(losses).backward()
        opt.step()
    weights = w.effective_weights()
    assert weights["noisy"] < 0.5 < weights["clean"]


def test_adaptive_weights_normalised_and_favour_slow_task() -> None:
    w = AdaptiveWeighting(["fast", "slow"], initial={"fast": 1.0, "slow": 1.0})
    assert sum(w.effective_weights().values()) == pytest.approx(2.0)
    w({"fast": torch.tensor(1.0), "slow": torch.tensor(1.0)})  # records the initial losses
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        w({"fast": torch.tensor(0.2), "slow": torch.tensor(1.0)}).backward()
        opt.step()
    weights = w.effective_weights()
    assert sum(weights.values()) == pytest.approx(2.0)
    assert weights["slow"] > 1.2 > 0.8 > weights["fast"]


def test_adaptive_weights_do_not_flow_into_task_gradients() -> None:
    w = AdaptiveWeighting(["a", "b"], initial={"a": 3.0, "b": 1.0})
    loss_a = torch.tensor(1.0, requires_grad=True)
    w({"a": loss_a, "b": torch.tensor(1.0)}).backward()
    assert loss_a.grad.item() == pytest.approx(1.5)  # 2 * softmax(log 3, log 1)[0]


def test_state_dict_round_trip() -> None:
    a = build_weighting("adaptive", {"x": 1.0, "y": 2.0})
    a({"x": torch.tensor(3.0), "y": torch.tensor(1.0)})
    b = build_weighting("adaptive", {"x": 1.0, "y": 1.0})
    b.load_state_dict(a.state_dict())
    assert b.effective_weights() == pytest.approx(a.effective_weights())
    assert b.initial_losses.tolist() == [3.0, 1.0]
    u = build_weighting("uncertainty", {"x": 1.0})
    assert set(u.state_dict()) == {"log_vars"}
    with pytest.raises(ValueError):
        build_weighting("magic", {"x": 1.0})
