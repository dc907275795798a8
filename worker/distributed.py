"""The ranks of one run, trained together with torch.distributed.

A run whose recipe asks for more than one process (`resources`) is trained by a group of ranks
that `torch.distributed.run` (torchrun) starts; `worker/ranks.py` is what each rank runs. One rank,
the leader, holds the run's lease and alone speaks HTTP: the others never see the server. What
makes the ranks one run:

- **One directive, at the same step.** Every rank asks its `RankController` between optimizer
  steps; the leader asks the real controller and broadcasts the answer, so every rank applies a
  stage jump, an lr request, a pause or a stop at the same optimizer step, and only the leader
  acknowledges it (once).
- **Same parameters.** DistributedDataParallel averages the model's gradients; the few learnable
  task weights outside it are averaged here (`average_grads`). A non-finite loss on any rank skips
  the micro-batch on every rank (`all_true`), since a rank that skipped backward alone would leave
  the others waiting in DDP's all-reduce.
- **One writer.** Validation, checkpoints and reports happen on the leader; validation's numbers
  are broadcast because the plateau scheduler needs them on every rank.

`SOLO` is the group of one process (the worker's own, or `sala train`): every method is then a
no-op, so the training loop reads the same either way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from core.protocol import CheckpointReport, Directive, EpochReport
from worker.controller import Controller, Rollback, RunFailed

log = logging.getLogger("sala.distributed")


class GroupFailed(RuntimeError):
    """A collective failed (a rank died, or it timed out): the group cannot go on; the run restarts
    from its last checkpoint in a new attempt with every rank."""


@dataclass(frozen=True)
class Group:
    """This process's place in the run's group; `leader` is the rank that speaks for the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    leader: int = 0

    @property
    def is_leader(self) -> bool:
        return self.rank == self.leader

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module the loop calls forward on: DDP around the model when there are several ranks
        (the model itself stays what is checkpointed, so a checkpoint has no `module.` prefix and
        loads into any world size)."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def no_sync(self, net: nn.Module, skip: bool) -> contextlib.AbstractContextManager[Any]:
        """Inside an accumulation window the gradients are summed locally and reduced once, at
        the window's last micro-batch."""
        if skip and self.distributed:
            return net.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    # -- collectives ------------------------------------------------------------------------------
    def broadcast(self, value: Any) -> Any:
        """The leader's `value` on every rank."""
        if not self.distributed:
            return value
        box = [value]
        with failing_as_group():
            dist.broadcast_object_list(box, src=self.leader)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world
        with failing_as_group():
            dist.all_gather_object(out, value)
        return out

    def all_true(self, flag: bool) -> bool:
        if not self.distributed:
            return flag
        value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._device())
        with failing_as_group():
            dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def average_grads(self, parameters: Iterable[torch.Tensor]) -> None:
        """Average gradients DDP does not own (the learnable task weights) across ranks."""
        if not self.distributed:
            return
        for p in parameters:
            if p.grad is not None:
                with failing_as_group():
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= self.world

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
            else torch.device("cpu")


SOLO = Group()


@contextlib.contextmanager
def failing_as_group() -> Iterator[None]:
    """A collective's error (peer gone, timeout) as GroupFailed, so the leader tells it apart from a
    bug in the run: the first restarts the group, the second fails the run."""
    try:
        yield
    except (dist.DistError, RuntimeError) as exc:
        raise GroupFailed(f"{type(exc).__name__}: {exc}") from exc


def join(timeout_s: float, device: torch.device) -> Group:
    """Join the process group torchrun prepared (its environment: RANK, WORLD_SIZE, the store);
    NCCL on CUDA, gloo on CPU. `timeout_s` bounds every collective, so a rank that hangs ends the
    attempt instead of holding the lease forever."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout_s))
    return Group(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def parameters_digest(model: nn.Module) -> str:
    """sha256 over the model's parameters, in order: equal on every rank or they diverged. (Buffers,
    BatchNorm's running statistics, are each rank's own between DDP's broadcasts from rank 0 at
    every forward; the leader's are checkpointed.)"""
    h = hashlib.sha256()
    for name, tensor in model.named_parameters():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankController:
    """The Controller protocol for one rank of a group: the leader asks `inner` (the run's
    HttpController) and broadcasts every answer; the other ranks have no `inner` and only receive.
    Every rank calls every method at the same point of the loop, so the broadcasts pair up."""

    def __init__(self, inner: Controller | None, group: Group):
        if group.is_leader and inner is None:
            raise ValueError("the leader needs the run's controller")
        self.inner, self.group = inner, group

    def poll(self, step: int, epoch: int) -> Directive:
        return self.group.broadcast(self.inner.poll(step, epoch) if self.inner else None)

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        if self.inner:
            self.inner.log_step(step, scalars)

    def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None:
        if self.inner:  # once per event, however many ranks applied it
            self.inner.acknowledge(event_ids, step)

    def report_epoch(self, report: EpochReport) -> Directive:
        return self.group.broadcast(self.inner.report_epoch(report) if self.inner else None)

    def report_checkpoint(self, saved: CheckpointReport) -> list[str]:
        return self.inner.report_checkpoint(saved) if self.inner else []  # only the leader writes them

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        """The answer (go on, roll back, fail) is the leader's, raised on every rank alike."""
        outcome: tuple[str, str] | None = None
        if self.inner:
            try:
                self.inner.alert(kind, detail)
            except Rollback as rollback:
                outcome = ("rollback", str(rollback))
            except RunFailed as failed:
                outcome = ("fail", str(failed))
        outcome = self.group.broadcast(outcome)
        if outcome is not None:
            raise (Rollback if outcome[0] == "rollback" else RunFailed)(outcome[1])

    def finish(self, status: str, error: str | None = None) -> None:
        if self.inner:
            self.inner.finish(status, error)
