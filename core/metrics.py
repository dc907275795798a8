"""Which way a metric improves, and the best of several records by it.

Asked by the curriculum, checkpoint retention on both sides, the plateau schedule and the choice of
a teacher checkpoint; one suffix list, so they can no longer disagree about `val_confidence_ece`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

LOWER_IS_BETTER_SUFFIXES = ("cer", "wer", "loss", "perplexity", "ece", "brier")


def lower_is_better(metric: str) -> bool:
    """Error rates, losses and calibration errors shrink as training works; accuracies and F1 grow."""
    return metric.lower().endswith(LOWER_IS_BETTER_SUFFIXES)


def value(metrics: Mapping[str, Any], metric: str) -> float | None:
    """The metric as a finite number, or None: a NaN or a missing value ranks nowhere."""
    found = metrics.get(metric)
    if isinstance(found, bool) or not isinstance(found, (int, float)) or not math.isfinite(found):
        return None
    return float(found)


T = TypeVar("T")


def _attribute(item: Any) -> Mapping[str, Any]:
    return item.metrics


def ranked(items: Sequence[T], metric: str, metrics_of: Callable[[T], Mapping[str, Any]] = _attribute) -> list[T]:
    """The items that have the metric, best first; ties keep their order. `metrics_of` reads an
    item's metrics (its `.metrics` by default)."""
    scored = [(v, item) for item in items if (v := value(metrics_of(item), metric)) is not None]
    scored.sort(key=lambda pair: pair[0], reverse=not lower_is_better(metric))
    return [item for _, item in scored]


def best(items: Sequence[T], metric: str, metrics_of: Callable[[T], Mapping[str, Any]] = _attribute) -> T | None:
    found = ranked(items, metric, metrics_of)
    return found[0] if found else None
