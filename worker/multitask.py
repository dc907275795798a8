"""Task weighting: how the per-task losses become the one loss the optimiser sees.

Three strategies share one interface: ``weighting(losses: dict[str, Tensor]) -> Tensor`` and
``effective_weights() -> dict[str, float]`` for the epoch report. The learnable ones are
``nn.Module`` parameters: put ``weighting.parameters()`` in the optimiser (without weight decay)
and save ``weighting.state_dict()`` with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


class TaskWeighting(nn.Module):
    """Base class: a fixed ordered set of task names."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("at least one task is needed")
        self.tasks = tuple(tasks)

    def _stack(self, losses: Mapping[str, Tensor]) -> Tensor:
        missing = set(self.tasks) - set(losses)
        if missing:
            raise KeyError(f"losses missing for tasks {sorted(missing)}")
        return torch.stack([losses[t].float().reshape(()) for t in self.tasks])

    def effective_weights(self) -> dict[str, float]:
        raise NotImplementedError


class FixedWeighting(TaskWeighting):
    """``sum(w_i * L_i)`` with the recipe's weights; the baseline every other strategy is judged by."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__(list(weights))
        self.register_buffer("weights", torch.tensor([float(weights[t]) for t in self.tasks]))

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked = self._stack(losses)
        return (self.weights.to(stacked.device) * stacked).sum()

    def effective_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.weights.tolist(), strict=True))


class AdaptiveWeighting(TaskWeighting):
    """Learnable weights ``w = n * softmax(logits)`` (they sum to the number of tasks), GradNorm-lite.

    Minimising ``sum(w_i L_i)`` over ``w`` would just zero the largest loss, so the weights get
    their own objective instead, GradNorm's with each task's gradient norm replaced by its
    weighted loss (no extra backward passes): ``sum_i |w_i L_i - mean_j(w_j L_j) * r_i**alpha|``
    where ``r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0))`` is the task's relative inverse training
    rate. Tasks that train slower than the others gain weight. The losses are detached in that
    objective and the weights detached in the task sum, so each part only trains its own side;
    ``forward`` returns their sum (the balance term's value is in ``last_balance_loss``).
    """

    def __init__(self, tasks: Sequence[str], alpha: float = 1.5, initial: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        self.alpha = alpha
        start = torch.tensor([float(initial[t]) if initial else 1.0 for t in self.tasks])
        self.logits = nn.Parameter(torch.log(start / start.sum()))
        self.register_buffer("initial_losses", torch.full((len(self.tasks),), float("nan")))
        self.last_balance_loss = torch.zeros(())

    def weights(self) -> Tensor:
        return len(self.tasks) * torch.softmax(self.logits, 0)

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked = self._stack(losses)
        detached = stacked.detach()
        if torch.isnan(self.initial_losses).any():
            self.initial_losses.copy_(detached.clamp(min=1e-8))
        w = self.weights().to(stacked.device)
        ratio = detached / self.initial_losses
        rate = ratio / ratio.mean()
        weighted = w * detached
        target = (weighted.mean() * rate**self.alpha).detach()
        balance = (weighted - target).abs().sum()
        self.last_balance_loss = balance.detach()
        return (w.detach() * stacked).sum() + balance

    def effective_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.weights().tolist(), strict=True))


class UncertaintyWeighting(TaskWeighting):
    """Homoscedastic uncertainty weighting (Kendall et al. 2018): ``sum(exp(-s_i) L_i + s_i)``.

    ``s_i`` is a learnable log-variance per task: a task whose loss stays high (noisy) raises its
    ``s_i`` and so lowers its weight ``exp(-s_i)``, while the ``+ s_i`` term stops every weight
    from collapsing to zero. The optimum for a constant loss is ``s_i = log L_i``. ``initial``
    starts the weights at the recipe's (``s_i = -log w_i``).
    """

    def __init__(self, tasks: Sequence[str], initial: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        start = torch.tensor([float(initial[t]) if initial else 1.0 for t in self.tasks])
        self.log_vars = nn.Parameter(-torch.log(start))

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked = self._stack(losses)
        s = self.log_vars.to(stacked.device)
        return (torch.exp(-s) * stacked + s).sum()

    def effective_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, torch.exp(-self.log_vars.detach()).tolist(), strict=True))


def build_weighting(strategy: str, weights: Mapping[str, float]) -> TaskWeighting:
    """``fixed | adaptive | uncertainty`` from the recipe's task list (``{task: weight}``)."""
    if strategy == "fixed":
        return FixedWeighting(weights)
    if strategy == "adaptive":
        return AdaptiveWeighting(list(weights), initial=weights)
    if strategy == "uncertainty":
        return UncertaintyWeighting(list(weights), initial=weights)
    raise ValueError(f"unknown task weighting {strategy!r}")
