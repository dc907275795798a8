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


# Three frames over {blank, a, b}; every path and its probability (t1 * t2 * t3):
#   "a"  = --a .06 + -a- .012 + -aa .03 + a-- .084 + aa- .042 + aaa .105 = .333
#   "ab" = -ab .018 + a-b .126 + aab .063 + ab- .014 + abb .021         = .242
#   "aa" = a-a .21 (the best single path, so greedy reads "aa")
#   "ba" = .066, "b" = .063, "aba" = .035, "" = .024, "bb" = .018, "bab" = .009 (all sum to 1)
HAND = ([0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3])


def test_beam_finds_the_most_probable_labelling_computed_by_hand() -> None:
    logits = frames(*HAND)
    assert greedy_decode(logits, torch.tensor([3]))[0] == [[1, 1]]
    seqs, scores = beam_search(logits, torch.tensor([3]), beam_width=10)
    assert seqs == [[1]]
    assert scores.item() == pytest.approx(math.log(0.333), rel=1e-5)


def test_length_bonus_is_beta_per_character() -> None:
    # score = log P + beta |y|: "ab" overtakes "a" once beta > log(.333 / .242) = 0.319
    logits = frames(*HAND)
    assert beam_search(logits, torch.tensor([3]), length_bonus=0.3)[0] == [[1]]
    seqs, scores = beam_search(logits, torch.tensor([3]), length_bonus=0.5)
    assert seqs == [[1, 2]]
    assert scores.item() == pytest.approx(math.log(0.242) + 2 * 0.5, rel=1e-5)


def test_beam_continues_the_last_character_outside_the_frame_top_k() -> None:
    # beam_width 1 expands only each frame's top character; at t2 that is b (.48), not a (.42).
    # Beam after t1: (a) = .8. At t2: "a" = a- .08 + aa .336 = .416 (continuing a), "ab" = .384.
    # (Exact: "a" .458 with -a, "ab" .384.) Expanding only b would keep "ab".
    logits = frames([0.1, 0.8, 0.1], [0.1, 0.42, 0.48])
    seqs, scores = beam_search(logits, torch.tensor([2]), beam_width=1)
    assert seqs == [[1]]
    assert scores.item() == pytest.approx(math.log(0.416), rel=1e-5)


def test_beam_repeats_the_last_character_through_a_blank_outside_the_frame_top_k() -> None:
    # An LM that expects a after anything (a .8, b .1, end .1), alpha 1, beam_width 1.
    # t1: (a) = .9 * .8 = .72. t2: (a) blank .648 + continued .0432 = .6912.
    # t3 (top character b): "ab" = .6912 * .5 * .1 = .03456, "a" = .0346 + .0194 = .054,
    # "aa" = .648 (ends in blank) * .45 * .8 = .23328, the best; with the end token .023328.
    lm = PreferLM([math.log(0.1), math.log(0.8), math.log(0.1)])
    logits = frames([0.05, 0.9, 0.05], [0.9, 0.06, 0.04], [0.05, 0.45, 0.5])
    seqs, scores = beam_search(logits, torch.tensor([3]), beam_width=1, lm=lm, lm_weight=1.0)
    assert seqs == [[1, 1]]
    assert scores.item() == pytest.approx(math.log(0.023328), rel=1e-5)


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
