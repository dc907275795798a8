import math

import pytest
import torch

from worker.losses import (
    ConfidenceAwareLoss,
    CurriculumLoss,
    DistillationLoss,
    FocalCTCLoss,
    HierarchicalLoss,
    OnlineHardExampleMining,
    confidence_loss,
    language_model_loss,
    segmentation_loss,
)
from worker.models.heads import LanguageModelHead


def test_focal_gamma_zero_is_ctc() -> None:
    torch.manual_seed(0)
    logits = torch.randn(12, 3, 6)
    targets = torch.tensor([[1, 2, 3], [4, 4, 0], [5, 0, 0]])
    lengths, target_lengths = torch.tensor([12, 10, 7]), torch.tensor([3, 2, 1])
    ctc = torch.nn.CTCLoss(reduction="none", zero_infinity=True)
    expected = ctc(logits.log_softmax(-1), targets, lengths, target_lengths)
    got = FocalCTCLoss(gamma=0.0, reduction="none")(logits, targets, lengths, target_lengths)
    assert torch.allclose(got, expected)


def test_ctc_by_hand_two_frames() -> None:
    # uniform over {blank, a}: paths "a-", "-a", "aa" each 1/4
    loss = FocalCTCLoss(gamma=0.0)(torch.zeros(2, 1, 2), torch.tensor([[1]]), torch.tensor([2]), torch.tensor([1]))
    assert loss.item() == pytest.approx(-math.log(0.75))


def test_focal_weight_by_hand() -> None:
    logits = torch.log(torch.tensor([[[0.75, 0.25]]]))
    loss = FocalCTCLoss(gamma=2.0)(logits, torch.tensor([[1]]), torch.tensor([1]), torch.tensor([1]))
    assert loss.item() == pytest.approx(0.75**2 * -math.log(0.25), rel=1e-5)


def test_focal_impossible_alignment_is_zero() -> None:
    loss_fn = FocalCTCLoss(reduction="none")
    loss = loss_fn(torch.zeros(1, 1, 3), torch.tensor([[1, 2]]), torch.tensor([1]), torch.tensor([2]))
    assert loss.tolist() == [0.0]


def test_hierarchical_loss_by_hand() -> None:
    # uniform logits and empty targets: each level costs T * log(n_level + 1)
    t = 4
    outputs = {
        "base_logits": torch.zeros(t, 1, 3),
        "modifier_logits": torch.zeros(t, 1, 2),
        "combination_logits": torch.zeros(t, 1, 4),
    }
    empty = (torch.zeros(1, 2, dtype=torch.long), torch.tensor([0]))
    levels = {"base": empty, "modifier": empty, "combination": empty}
    loss = HierarchicalLoss()(outputs, levels, torch.tensor([t]))
    expected = 1.0 * t * math.log(3) + 0.5 * t * math.log(2) + 0.3 * t * math.log(4)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_confidence_aware_by_hand() -> None:
    logits = torch.logit(torch.tensor([0.9, 0.1]))
    correct = torch.tensor([True, False])
    loss_fn = ConfidenceAwareLoss(weight=0.2, uncertainty_threshold=0.5)
    # uncertainties 0.1 and 0.9: raw weights 1 and 1 + 0.4 / 0.5 = 1.8, divided by their mean 1.4
    assert loss_fn.sample_weights(logits).tolist() == pytest.approx([1 / 1.4, 1.8 / 1.4])
    loss = loss_fn(torch.tensor([1.0, 2.0]), logits, correct)
    assert loss.item() == pytest.approx((1 / 1.4 + 3.6 / 1.4) / 2 + 0.2 * -math.log(0.9), rel=1e-5)
    assert confidence_loss(logits, correct).item() == pytest.approx(-math.log(0.9), rel=1e-5)


def test_curriculum_weights_by_hand() -> None:
    curriculum = CurriculumLoss(num_stages=5, temperature=0.1)
    difficulty = torch.tensor([0.1, 0.2, 0.5, 0.9])
    w = curriculum.weights(difficulty, stage=1)  # competence 0.4
    assert w.tolist() == pytest.approx([1.0, 1.0, math.exp(-1), math.exp(-5)], rel=1e-5)
    assert curriculum.weights(difficulty, stage=4).tolist() == [1.0] * 4
    loss = curriculum(torch.tensor([1.0, 2.0, 3.0, 4.0]), difficulty, stage=1)
    e1, e5 = math.exp(-1), math.exp(-5)
    assert loss.item() == pytest.approx((1 + 2 + 3 * e1 + 4 * e5) / (2 + e1 + e5), rel=1e-5)


def test_ohem_keeps_hardest_seventy_percent() -> None:
    losses = torch.arange(1.0, 11.0)[torch.randperm(10)]
    assert OnlineHardExampleMining(0.7)(losses).item() == pytest.approx(7.0)  # mean of 4..10
    assert OnlineHardExampleMining(0.7)(torch.ones(64)).item() == 1.0
    assert OnlineHardExampleMining(0.1, min_kept=2)(torch.tensor([1.0, 5.0, 3.0])).item() == 4.0
    with pytest.raises(ValueError):
        OnlineHardExampleMining(0.0)


def test_ohem_gradient_only_on_kept() -> None:
    losses = torch.tensor([1.0, 4.0, 2.0, 3.0], requires_grad=True)
    OnlineHardExampleMining(0.5)(losses).backward()
    assert losses.grad.tolist() == [0.0, 0.5, 0.0, 0.5]


def test_distillation_zero_when_equal() -> None:
    logits = torch.randn(5, 2, 7)
    assert DistillationLoss().soft_loss(logits, logits).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_two_class_by_hand() -> None:
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # KL(teacher || student)
    student = torch.zeros(1, 1, 2)
    teacher = torch.log(torch.tensor([0.9, 0.1])).reshape(1, 1, 2)
    assert DistillationLoss(temperature=1.0).soft_loss(student, teacher).item() == pytest.approx(kl, rel=1e-5)
    loss4 = DistillationLoss(temperature=4.0, alpha=0.3)
    assert loss4.soft_loss(student, teacher * 4).item() == pytest.approx(16 * kl, rel=1e-5)
    blended = loss4(student, teacher * 4, hard_loss=torch.tensor(2.0))
    assert blended.item() == pytest.approx(0.7 * 2.0 + 0.3 * 16 * kl, rel=1e-5)


def test_distillation_ignores_padded_frames() -> None:
    student = torch.zeros(2, 1, 2)
    teacher = torch.stack([torch.zeros(1, 2), torch.tensor([[9.0, -9.0]])])
    assert DistillationLoss().soft_loss(student, teacher, torch.tensor([1])).item() == pytest.approx(0.0)


def test_segmentation_loss_masks_padding() -> None:
    logits = torch.tensor([[0.0], [100.0]])
    loss = segmentation_loss(logits, torch.tensor([[1.0], [0.0]]), torch.tensor([1]))
    assert loss.item() == pytest.approx(math.log(2))


def test_language_model_targets_and_loss() -> None:
    targets, lengths = torch.tensor([[3, 4], [5, 0]]), torch.tensor([2, 1])
    assert LanguageModelHead.shifted_targets(targets, lengths).tolist() == [[3, 4, 0], [5, 0, -100]]
    loss = language_model_loss(torch.zeros(2, 3, 6), targets, lengths)
    assert loss.item() == pytest.approx(math.log(6))
