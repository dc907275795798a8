"""Evaluation metrics for the five tasks, on plain sequences and tensors.

Sequence metrics are corpus-level (summed errors over summed reference length), the convention
OCR results are reported in, so long lines weigh more than short ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from rapidfuzz.distance import Levenshtein
from torch import Tensor


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (unit insert, delete, substitute) over any sequences of hashables."""
    return Levenshtein.distance(a, b)


def character_error_rate(predictions: Sequence[Sequence], references: Sequence[Sequence]) -> float:
    """Summed edit distance over summed reference length; an empty corpus is 0 only if read as empty."""
    errors = sum(edit_distance(p, r) for p, r in zip(predictions, references, strict=True))
    total = sum(len(r) for r in references)
    return errors / total if total else float(errors > 0)


def sequence_accuracy(predictions: Sequence[Sequence], references: Sequence[Sequence]) -> float:
    """Share of lines read exactly."""
    pairs = list(zip(predictions, references, strict=True))
    return sum(list(p) == list(r) for p, r in pairs) / len(pairs) if pairs else 0.0


def brier_score(confidences: Tensor, correct: Tensor) -> float:
    """Mean squared gap between the confidence and the 0/1 outcome."""
    return float(((confidences.float() - correct.float()) ** 2).mean())


def expected_calibration_error(confidences: Tensor, correct: Tensor, num_bins: int = 10) -> float:
    """ECE: bin by confidence (equal width, last bin closed), then the sample-weighted mean of
    ``|accuracy - mean confidence|`` per bin."""
    conf, hit = confidences.float().flatten(), correct.float().flatten()
    bins = torch.clamp((conf * num_bins).long(), max=num_bins - 1)
    ece = 0.0
    for b in bins.unique().tolist():
        sel = bins == b
        ece += float(sel.float().mean()) * abs(float(hit[sel].mean() - conf[sel].mean()))
    return ece


def hierarchical_accuracy(
    predictions: Mapping[str, Sequence[Sequence[int]]], references: Mapping[str, Sequence[Sequence[int]]]
) -> dict[str, float]:
    """Per level (base, modifier, combination): ``{level}_accuracy`` (exact lines) and ``{level}_cer``."""
    out = {}
    for level, refs in references.items():
        out[f"{level}_accuracy"] = sequence_accuracy(predictions[level], refs)
        out[f"{level}_cer"] = character_error_rate(predictions[level], refs)
    return out


def boundary_f1(predicted: Tensor, target: Tensor, lengths: Tensor, tolerance: int = 0) -> dict[str, float]:
    """Precision, recall and F1 of per-frame boundaries ``[T, B]`` over valid frames.

    A predicted boundary counts if a true one lies within ``tolerance`` frames, and a true one is
    found if a prediction does, since CTC frames only roughly align with pixels.
    """
    mask = torch.arange(predicted.shape[0], device=lengths.device)[:, None] < lengths[None, :]
    pred, true = predicted.bool() & mask, target.bool() & mask
    precision = _covered(pred, true, tolerance)
    recall = _covered(true, pred, tolerance)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _covered(points: Tensor, reference: Tensor, tolerance: int) -> float:
    """Share of ``points`` with a ``reference`` point within ``tolerance`` frames (1 when no points)."""
    near = F.max_pool1d(reference.float().T[:, None, :], 2 * tolerance + 1, 1, tolerance)[:, 0, :].T.bool()
    n = int(points.sum())
    return float((points & near).sum()) / n if n else 1.0


def perplexity(nll_sum: float, num_tokens: int) -> float:
    """``exp`` of the mean next-token negative log-likelihood (natural log)."""
    return math.exp(nll_sum / num_tokens) if num_tokens else float("nan")
