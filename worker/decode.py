"""CTC decoding: greedy best path, and prefix beam search with optional language-model fusion.

Both take raw logits ``[T, B, C]`` (blank 0) and frame lengths ``[B]``, and return
``(sequences, scores)``: a list of class-index lists per line and a ``[B]`` tensor of
log-probability scores (greedy: the best path's; beam: the best prefix's, LM terms included).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

NEG_INF = float("-inf")


class CharLM(Protocol):
    """What beam search needs of a language model: ``LanguageModelHead`` satisfies it."""

    def step(self, token: int, state: Tensor | None) -> tuple[Tensor, Tensor]: ...


def collapse(path: Sequence[int], blank: int = 0) -> list[int]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    return [k for k, _ in itertools.groupby(path) if k != blank]


def to_lists(targets: Tensor, lengths: Tensor) -> list[list[int]]:
    """Padded targets ``[B, S]`` to one list of class indices per line."""
    return [row[:n].tolist() for row, n in zip(targets.cpu(), lengths.cpu().tolist(), strict=True)]


def exact_match(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> Tensor:
    """``[B]`` bool: was each line read exactly (the confidence head's target)."""
    return torch.tensor([list(p) == list(r) for p, r in zip(predictions, references, strict=True)])


@torch.no_grad()
def greedy_decode(logits: Tensor, lengths: Tensor, blank: int = 0) -> tuple[list[list[int]], Tensor]:
    """Best path per line, collapsed; its score is the path's summed log-probability."""
    best_log_p, best = logits.float().log_softmax(-1).max(-1)
    lengths = lengths.cpu().tolist()
    best, best_log_p = best.cpu(), best_log_p.cpu()
    sequences = [collapse(best[:n, b].tolist(), blank) for b, n in enumerate(lengths)]
    scores = torch.stack([best_log_p[:n, b].sum() for b, n in enumerate(lengths)])
    return sequences, scores


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi = max(a, b)
    return hi + math.log1p(math.exp(-abs(a - b)))


class _Fusion:
    """Caches the LM's next-token log-probabilities per prefix, so each prefix costs one LM step."""

    def __init__(self, lm: CharLM | None, weight: float, bonus: float) -> None:
        self.lm, self.weight, self.bonus = lm, weight, bonus
        self.cache: dict[tuple[int, ...], tuple[list[float], Tensor]] = {}

    def _next(self, prefix: tuple[int, ...]) -> list[float]:
        if prefix not in self.cache:
            state = self.cache[prefix[:-1]][1] if prefix else None
            log_p, state = self.lm.step(prefix[-1] if prefix else 0, state)  # type: ignore[union-attr]
            self.cache[prefix] = (log_p.tolist(), state)
        return self.cache[prefix][0]

    def extend(self, prefix: tuple[int, ...], token: int) -> float:
        if self.lm is None or not self.weight:
            return self.bonus
        return self.weight * self._next(prefix)[token] + self.bonus

    def end(self, prefix: tuple[int, ...]) -> float:
        if self.lm is None or not self.weight:
            return 0.0
        return self.weight * self._next(prefix)[0]


def _prefix_beam(
    log_p: list[list[float]], candidates: list[list[int]], beam_width: int, fusion: _Fusion, blank: int
) -> tuple[list[int], float]:
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for frame, tokens in zip(log_p, candidates, strict=True):
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (p_blank, p_char) in beams.items():
            total = _logaddexp(p_blank, p_char)
            nxt[prefix][0] = _logaddexp(nxt[prefix][0], total + frame[blank])
            for c in _with_last(tokens, prefix):
                new = (*prefix, c)
                if prefix and prefix[-1] == c:
                    nxt[prefix][1] = _logaddexp(nxt[prefix][1], p_char + frame[c])
                    via = p_blank
                else:
                    via = total
                nxt[new][1] = _logaddexp(nxt[new][1], via + frame[c] + fusion.extend(prefix, c))
        ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)
        beams = {k: (v[0], v[1]) for k, v in ranked[:beam_width]}
    final = {k: _logaddexp(*v) + fusion.end(k) for k, v in beams.items()}
    best = max(final, key=final.__getitem__)
    return list(best), final[best]


def _with_last(tokens: list[int], prefix: tuple[int, ...]) -> list[int]:
    """The frame's likely characters plus the prefix's last one, which this frame may continue or repeat
    (after a blank) even when other characters look likelier here."""
    return tokens if not prefix or prefix[-1] in tokens else [*tokens, prefix[-1]]


@torch.no_grad()
def beam_search(
    logits: Tensor,
    lengths: Tensor,
    beam_width: int = 10,
    lm: CharLM | None = None,
    lm_weight: float = 0.3,
    length_bonus: float = 0.0,
    blank: int = 0,
) -> tuple[list[list[int]], Tensor]:
    """CTC prefix beam search, ranking prefixes by the usual shallow-fusion score

        log P_ctc(y | x) + lm_weight * log P_lm(y) + length_bonus * |y|

    where P_lm includes the end of the line. The length bonus offsets the LM's and CTC's
    preference for short outputs (every character costs the LM a log-probability below 0).

    Each frame only expands its ``beam_width`` most likely characters, plus each prefix's last
    character: a character outside them rarely reaches the beam, and the pruning keeps the
    Python loop affordable on CPU.
    """
    log_p = logits.float().log_softmax(-1).cpu()
    k = min(beam_width, log_p.shape[-1] - 1)
    masked = log_p.clone()
    masked[..., blank] = NEG_INF
    top = masked.topk(k, dim=-1).indices
    sequences, scores = [], []
    for b, n in enumerate(lengths.cpu().tolist()):
        fusion = _Fusion(lm, lm_weight, length_bonus)
        seq, score = _prefix_beam(log_p[:n, b].tolist(), top[:n, b].tolist(), beam_width, fusion, blank)
        sequences.append(seq)
        scores.append(score)
    return sequences, torch.tensor(scores)
