"""Retention selection and metric direction: the one definition the server, the trainer's
CheckpointManager and LocalController all use."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.metrics import best, lower_is_better, ranked
from core.recipe import METRICS
from core.retention import select_for_deletion


@dataclass
class Saved:
    step: int
    metrics: dict = field(default_factory=dict)


def test_keeps_the_last_n_and_the_best_k_in_step_order():
    history = [Saved(1, {"val_cer": 0.5}), Saved(2, {"val_cer": 0.2}), Saved(3, {"val_cer": 0.3}),
               Saved(4, {"val_cer": 0.1}), Saved(5, {"val_cer": 0.4}), Saved(6), Saved(7, {"val_cer": 0.6})]
    doomed = select_for_deletion(list(reversed(history)), keep_last=2, keep_best=2, metric="val_cer")
    assert [c.step for c in doomed] == [1, 3, 5]  # keeps 6, 7 (last) and 4, 2 (lowest cer)
    by_accuracy = select_for_deletion([Saved(1, {"val_acc": 0.9}), Saved(2, {"val_acc": 0.5}),
                                       Saved(3, {"val_acc": 0.7})], keep_last=1, keep_best=1, metric="val_acc")
    assert [c.step for c in by_accuracy] == [2]
    assert select_for_deletion(history, keep_last=0, keep_best=0, metric=None) == history


def test_keep_last_beyond_the_count_keeps_everything():
    """The worker's copy once sliced from len - keep_last, which wraps around below zero and dropped
    the first of two checkpoints with keep_last 3."""
    two = [Saved(1, {"val_cer": 0.5}), Saved(2, {"val_cer": 0.6})]
    assert select_for_deletion(two, keep_last=3, keep_best=0, metric="val_cer") == []


def test_a_nan_or_a_missing_metric_is_never_best():
    items = [Saved(1, {"val_cer": math.nan}), Saved(2, {"val_cer": 0.4}), Saved(3, {"val_cer": None}), Saved(4)]
    assert best(items, "val_cer").step == 2
    assert [c.step for c in select_for_deletion(items, keep_last=1, keep_best=1, metric="val_cer")] == [1, 3]


def test_equal_records_are_told_apart_by_identity():
    twins = [Saved(1, {"val_cer": 0.1}), Saved(1, {"val_cer": 0.1})]
    assert select_for_deletion(twins, keep_last=1, keep_best=0, metric=None) == [twins[0]]
    assert select_for_deletion(twins, keep_last=1, keep_best=0, metric=None)[0] is twins[0]


def test_metric_direction_has_one_suffix_list():
    assert [m for m in METRICS if lower_is_better(m)] == [
        "val_cer", "val_loss", "val_perplexity", "train_cer", "train_loss",
    ]
    for lower in ("val_confidence_ece", "val_confidence_brier", "val_wer", "VAL_CER"):
        assert lower_is_better(lower)
    for higher in ("val_boundary_f1", "val_sequence_accuracy", "val_base_accuracy"):
        assert not lower_is_better(higher)


def test_ranked_reads_metrics_from_mappings_too():
    rows = [{"id": 1, "metrics": {"val_sequence_accuracy": 0.2}}, {"id": 2, "metrics": {"val_sequence_accuracy": 0.9}}]
    assert [r["id"] for r in ranked(rows, "val_sequence_accuracy", metrics_of=lambda r: r["metrics"])] == [2, 1]
