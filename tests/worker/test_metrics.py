import math
import random

import pytest
import torch

from worker.metrics import (
    boundary_f1,
    brier_score,
    character_error_rate,
    edit_distance,
    expected_calibration_error,
    hierarchical_accuracy,
    perplexity,
    sequence_accuracy,
)


def reference_edit_distance(a, b) -> int:
    """The textbook dynamic programme, one row of the table at a time."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance(["ក្រ", "ុ", "ង"], ["ក្រ", "ង"]) == 1  # clusters are units


def test_edit_distance_agrees_with_the_reference_on_random_sequences() -> None:
    rng = random.Random(5)
    for _ in range(500):
        a = [rng.randrange(1, 6) for _ in range(rng.randrange(0, 30))]
        b = [rng.randrange(1, 6) for _ in range(rng.randrange(0, 30))]
        assert edit_distance(a, b) == reference_edit_distance(a, b)
        text_a, text_b = "".join(chr(0x1780 + x) for x in a), "".join(chr(0x1780 + x) for x in b)
        assert edit_distance(text_a, text_b) == reference_edit_distance(a, b)


def test_cer_is_corpus_level() -> None:
    # 1 error over 4 reference characters, not the mean of per-line rates (0.5 + 0) / 2
    assert character_error_rate([[1], [1, 2, 3]], [[1, 2], [1, 2]]) == pytest.approx(2 / 4)
    assert character_error_rate(["ab", "cd"], ["ab", "ce"]) == 0.25
    assert character_error_rate([[]], [[]]) == 0.0


def test_sequence_accuracy() -> None:
    assert sequence_accuracy([[1], [2, 3], []], [[1], [2], []]) == pytest.approx(2 / 3)


def test_brier_and_ece_by_hand() -> None:
    conf = torch.tensor([0.9, 0.9, 0.2, 0.2])
    hit = torch.tensor([1, 0, 0, 0])
    assert brier_score(conf, hit) == pytest.approx((0.01 + 0.81 + 0.04 + 0.04) / 4)
    # bin 0.9: accuracy 0.5, confidence 0.9; bin 0.2: accuracy 0, confidence 0.2
    assert expected_calibration_error(conf, hit) == pytest.approx(0.5 * 0.4 + 0.5 * 0.2)
    assert expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([1, 0])) == 0.0


def test_hierarchical_accuracy_per_level() -> None:
    out = hierarchical_accuracy(
        {"base": [[1, 2], [3]], "modifier": [[1], []]}, {"base": [[1, 2], [3]], "modifier": [[2], []]}
    )
    assert out == {"base_accuracy": 1.0, "base_cer": 0.0, "modifier_accuracy": 0.5, "modifier_cer": 1.0}


def test_boundary_f1_exact_and_tolerant() -> None:
    target = torch.tensor([[1], [0], [0], [1], [0], [1]])
    pred = torch.tensor([[1], [0], [1], [0], [0], [1]])
    exact = boundary_f1(pred, target, torch.tensor([6]))
    assert exact["precision"] == pytest.approx(2 / 3) and exact["recall"] == pytest.approx(2 / 3)
    assert exact["f1"] == pytest.approx(2 / 3)
    assert boundary_f1(pred, target, torch.tensor([6]), tolerance=1)["f1"] == 1.0
    # the last true boundary is past the line's length and must not count
    assert boundary_f1(pred, target, torch.tensor([5]))["recall"] == pytest.approx(1 / 2)


def test_perplexity() -> None:
    assert perplexity(4 * math.log(3), 4) == pytest.approx(3.0)
    assert math.isnan(perplexity(0.0, 0))
