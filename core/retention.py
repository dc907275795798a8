"""Which checkpoints to delete: all but the newest `keep_last` and the best `keep_best`.

The server applies it to a run's kept checkpoints, `LocalController` to `sala train`'s, and
`CheckpointManager` to a library user's; each then deletes the files it owns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from core.metrics import ranked


class Kept(Protocol):
    step: int
    metrics: Mapping[str, Any]


T = TypeVar("T", bound=Kept)


def select_for_deletion(items: Sequence[T], *, keep_last: int, keep_best: int, metric: str | None) -> list[T]:
    """The items outside the newest `keep_last` (by step; equal steps keep their given order) and the
    best `keep_best` by `metric`, in step order. Items without a finite value are never "best"."""
    ordered = sorted(items, key=lambda item: item.step)
    keep = {id(item) for item in ordered[-keep_last:]} if keep_last > 0 else set()
    if metric and keep_best > 0:
        keep |= {id(item) for item in ranked(ordered, metric)[:keep_best]}
    return [item for item in ordered if id(item) not in keep]
