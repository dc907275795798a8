import math

import pytest
import torch

from worker.decode import beam_search, collapse, exact_match, greedy_decode, to_lists
from worker.models.heads import LanguageModelHead


def frames(*rows: list[float]) -> torch.Tensor:
    """Probabilities per frame to logits ``[T, 1, C]``."""
    return torch.log(torch.tensor(rows)).unsqueeze(1)


class PreferLM:
    """A fixed LM: next-token log-probabilities independent of the prefix."""

    def __init__(self, log_probs: list[float]) -> None:
        self.log_probs = torch.tensor(log_probs)
        self.calls = 0

    def step(self, token: int, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return self.log_probs, torch.zeros(1)


def test_collapse_merges_repeats_then_drops_blank() -> None:
    assert collapse([1, 1, 0, 1, 2, 2, 0]) == [1, 1, 2]
    assert collapse([0, 0]) == []


def test_greedy_decode_and_score() -> None:
    logits = frames([0.1, 0.8, 0.1], [0.1, 0.7, 0.2], [0.6, 0.2, 0.2], [0.2, 0.2, 0.6])
    seqs, scores = greedy_decode(logits, torch.tensor([4]))
    assert seqs == [[1, 2]]
    assert scores.item() == pytest.approx(math.log(0.8 * 0.7 * 0.6 * 0.6), rel=1e-5)
    seqs, _ = greedy_decode(logits, torch.tensor([2]))
    assert seqs == [[1]]


def test_beam_sums_paths_greedy_misses() -> None:
    # best path is "--" (0.36) but "a" has 0.24 + 0.24 + 0.16 = 0.64
    logits = frames([0.6, 0.4], [0.6, 0.4])
    assert greedy_decode(logits, torch.tensor([2]))[0] == [[]]
    seqs, scores = beam_search(logits, torch.tensor([2]), beam_width=4)
    assert seqs == [[1]]
    assert scores.item() == pytest.approx(math.log(0.64), rel=1e-5)


def test_beam_keeps_repeat_separated_by_blank() -> None:
    logits = frames([0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05])
    assert beam_search(logits, torch.tensor([3]))[0] == [[1, 1]]


def test_beam_matches_greedy_on_batch_without_lm() -> None:
    torch.manual_seed(0)
    logits = torch.randn(10, 4, 6) * 20
    lengths = torch.tensor([10, 8, 5, 1])
    assert beam_search(logits, lengths, beam_width=8)[0] == greedy_decode(logits, lengths)[0]


def test_lm_fusion_changes_the_choice() -> None:
    logits = frames([0.01, 0.55, 0.44])
    assert beam_search(logits, torch.tensor([1]))[0] == [[1]]
    lm = PreferLM([math.log(0.5), -10.0, math.log(0.5)])
    seqs, scores = beam_search(logits, torch.tensor([1]), lm=lm, lm_weight=0.5)
    assert seqs == [[2]]
    assert scores.item() == pytest.approx(math.log(0.44) + 0.5 * math.log(0.5) * 2, rel=1e-5)


def test_beam_with_language_model_head() -> None:
    torch.manual_seed(0)
    lm = LanguageModelHead(5, 8, 16).eval()
    seqs, scores = beam_search(torch.randn(6, 2, 5), torch.tensor([6, 3]), lm=lm, lm_weight=0.3)
    assert len(seqs) == 2 and scores.shape == (2,)
    assert all(0 not in s for s in seqs)


def test_to_lists_and_exact_match() -> None:
    lists = to_lists(torch.tensor([[1, 2, 0], [3, 0, 0]]), torch.tensor([2, 1]))
    assert lists == [[1, 2], [3]]
    assert exact_match([[1, 2], [4]], lists).tolist() == [True, False]
