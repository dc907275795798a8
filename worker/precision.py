"""Mixed precision and gradient accumulation, the two pieces of a step that are easy to get subtly wrong.

The loop these support (nanoGPT-shaped)::

    acc.start_epoch(micro_batches)
    for i, batch in enumerate(batches):
        with amp.autocast():
            loss = model_loss(batch)
        if amp.check_loss(loss):                       # a non-finite loss is skipped and counted
            amp.backward(loss * acc.loss_scale(i))
        if acc.is_boundary(i):
            amp.unscale_(optimizer)                     # clip the true gradients, not the scaled ones
            norm = acc.clip(model.parameters())
            amp.step(optimizer, norm)                   # skipped on inf/nan gradients, counted
            optimizer.zero_grad(set_to_none=True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Literal

import torch

PrecisionSetting = Literal["auto", "fp32", "bf16", "fp16"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_ACCUMULATION = 8


def resolve_precision(setting: str, device: str | torch.device) -> torch.dtype:
    """``auto``: fp32 on CPU (autocast rarely pays off there), bf16 on CUDA when supported, else fp16."""
    if setting in DTYPES:
        return DTYPES[setting]
    if setting != "auto":
        raise ValueError(f"unknown precision {setting!r}; expected auto, fp32, bf16 or fp16")
    if torch.device(device).type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class PrecisionManager:
    """Autocast, loss scaling (fp16 only: bf16 has fp32's range), and accounting of skipped steps."""

    def __init__(
        self, setting: str = "auto", device: str | torch.device = "cpu",
        *, init_scale: float = 2.0**16, growth_interval: int = 2000,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = resolve_precision(setting, self.device)
        self.scaler = torch.amp.GradScaler(
            self.device.type, init_scale=init_scale, growth_interval=growth_interval,
            enabled=self.dtype is torch.float16,
        )
        self.steps = 0
        self.skipped_steps = 0
        self.nonfinite_losses = 0
        self.consecutive_nonfinite = 0
        self.scale_history: list[tuple[int, float]] = [(0, self.scale)] if self.scaler.is_enabled() else []

    @property
    def scale(self) -> float:
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not torch.float32)

    def check_loss(self, loss: torch.Tensor, everywhere: Callable[[bool], bool] = lambda ok: ok) -> bool:
        """False (and counted) for a non-finite loss, whose backward would poison the window.
        `everywhere` makes it one answer for all ranks of a distributed run (false if any rank's is)."""
        if everywhere(bool(torch.isfinite(loss.detach()).all())):
            self.consecutive_nonfinite = 0
            return True
        self.nonfinite_losses += 1
        self.consecutive_nonfinite += 1
        return False

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, grad_norm: float | None = None) -> bool:
        """Apply the optimizer step; False when it was skipped for non-finite gradients."""
        self.steps += 1
        if not self.scaler.is_enabled():
            if grad_norm is not None and not math.isfinite(grad_norm):
                self.skipped_steps += 1
                return False
            optimizer.step()
            return True
        before = self.scale
        self.scaler.step(optimizer)
        self.scaler.update()
        after = self.scale
        if after != before:
            self.scale_history.append((self.steps, after))
        applied = after >= before  # GradScaler lowers the scale exactly when it skipped the step
        self.skipped_steps += not applied
        return applied

    def skip(self) -> None:
        """Count a step that had nothing to apply (every loss in its window was non-finite)."""
        self.steps += 1
        self.skipped_steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "dtype": str(self.dtype), "scaler": self.scaler.state_dict(), "steps": self.steps,
            "skipped_steps": self.skipped_steps, "nonfinite_losses": self.nonfinite_losses,
            "consecutive_nonfinite": self.consecutive_nonfinite, "scale_history": list(self.scale_history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.steps = int(state["steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self.nonfinite_losses = int(state["nonfinite_losses"])
        self.consecutive_nonfinite = int(state["consecutive_nonfinite"])
        self.scale_history = [(int(s), float(v)) for s, v in state["scale_history"]]


class GradientAccumulator:
    """Which micro-batches end an optimizer step, and how much each one's loss weighs.

    It counts micro-batches, not optimizer steps (a counter of optimizer steps never meets its
    boundary again: Lightning's Fabric example). A short last window of an epoch is scaled by its own
    size, so every optimizer step sees the mean gradient of the micro-batches it actually got.
    """

    def __init__(self, steps: int = 1, *, clip_norm: float | None = None) -> None:
        if not 1 <= steps <= MAX_ACCUMULATION:
            raise ValueError(f"accumulation steps must be 1..{MAX_ACCUMULATION}, got {steps}")
        if clip_norm is not None and clip_norm <= 0:
            raise ValueError("clip_norm must be positive or None")
        self.steps = steps
        self.clip_norm = clip_norm
        self.micro_batches: int | None = None
        self.grad_norms: list[float] = []

    def start_epoch(self, micro_batches: int | None) -> None:
        """Announce the epoch's micro-batch count (None: unbounded, every window full)."""
        self.micro_batches = micro_batches
        self.grad_norms = []

    def window_size(self, micro_index: int) -> int:
        if self.micro_batches is None:
            return self.steps
        start = micro_index - micro_index % self.steps
        return min(self.steps, self.micro_batches - start)

    def loss_scale(self, micro_index: int) -> float:
        return 1.0 / self.window_size(micro_index)

    def is_boundary(self, micro_index: int) -> bool:
        last = self.micro_batches is not None and micro_index + 1 >= self.micro_batches
        return (micro_index + 1) % self.steps == 0 or last

    def optimizer_steps(self, micro_batches: int) -> int:
        return math.ceil(micro_batches / self.steps)

    def clip(self, parameters: Iterable[torch.Tensor]) -> float:
        """Clip to ``clip_norm`` (when set) and record the pre-clip total norm."""
        params = list(parameters)
        if self.clip_norm is None:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        else:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.clip_norm))
        self.grad_norms.append(norm)
        return norm

    @property
    def last_grad_norm(self) -> float | None:
        return self.grad_norms[-1] if self.grad_norms else None

    def mean_grad_norm(self) -> float | None:
        finite = [n for n in self.grad_norms if math.isfinite(n)]
        return sum(finite) / len(finite) if finite else None
