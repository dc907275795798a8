"""The training losses: one per task, and the sample-weighting losses wrapped around recognition.

Per-sample losses are ``[B]`` tensors so the pieces compose; the recognition term is typically
``ohem(focal_ctc(...) * curriculum.weights(difficulty, stage))``. All CTC inputs are raw logits
``[T, B, C]`` (log-softmax is taken here), padded targets ``[B, S]`` and lengths ``[B]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worker.models.heads import LEVELS, LanguageModelHead, frame_mask


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    raise ValueError(f"unknown reduction {reduction!r}")


class FocalCTCLoss(nn.Module):
    """CTC whose per-line terms are weighted by ``(1 - p)**gamma``, ``p = exp(-loss)``.

    Lines the model already reads with high probability contribute little, so the gradient goes
    to the ones it gets wrong; ``gamma = 0`` is plain CTC (summed over frames, per line).
    Impossible alignments (input shorter than target) give zero loss rather than infinity.
    """

    def __init__(self, gamma: float = 2.0, blank: int = 0, reduction: str = "mean") -> None:
        super().__init__()
        self.gamma = gamma
        self.reduction = reduction
        self.ctc = nn.CTCLoss(blank=blank, reduction="none", zero_infinity=True)

    def forward(self, logits: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor) -> Tensor:
        log_probs = logits.float().log_softmax(-1)
        loss = self.ctc(log_probs, targets, input_lengths, target_lengths)
        if self.gamma:
            loss = (1 - torch.exp(-loss)) ** self.gamma * loss
        return _reduce(loss, self.reduction)


class HierarchicalLoss(nn.Module):
    """Weighted CTC over the base, modifier and combination category levels of a line.

    Base categories carry the line's skeleton and get the largest weight; modifiers (vowel signs,
    subscripts, diacritics) are auxiliary; the combination level ties the two together.
    Returns the per-line weighted sum ``[B]`` (``reduction="none"``) or its mean.
    """

    def __init__(
        self,
        base_weight: float = 1.0,
        modifier_weight: float = 0.5,
        combination_weight: float = 0.3,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.weights = {"base": base_weight, "modifier": modifier_weight, "combination": combination_weight}
        self.reduction = reduction
        self.ctc = FocalCTCLoss(gamma=0.0, reduction="none")

    def forward(
        self, outputs: dict[str, Tensor], level_targets: dict[str, tuple[Tensor, Tensor]], input_lengths: Tensor
    ) -> Tensor:
        """``outputs`` holds ``{level}_logits``; ``level_targets`` comes from ``HierarchicalHead.level_targets``."""
        total = torch.zeros((), device=input_lengths.device)
        for lv in LEVELS:
            targets, lengths = level_targets[lv]
            total = total + self.weights[lv] * self.ctc(outputs[f"{lv}_logits"], targets, input_lengths, lengths)
        return _reduce(total, self.reduction)


def confidence_loss(confidence_logits: Tensor, correct: Tensor) -> Tensor:
    """The confidence task: BCE between the predicted confidence and whether the line was read exactly."""
    return F.binary_cross_entropy_with_logits(confidence_logits.float(), correct.float())


class ConfidenceAwareLoss(nn.Module):
    """Recognition loss reweighted by the model's own uncertainty, plus the confidence BCE.

    With ``c = sigmoid(confidence_logit)`` (detached) and uncertainty ``u = 1 - c``, a line gets
    weight ``w = 1 + max(0, u - threshold) / (1 - threshold)`` (1 when the model is sure, up to 2
    when it is certain to be wrong), and the weights are divided by their batch mean, so the
    scale of the recognition loss is unchanged and only its emphasis moves to the lines the model
    doubts. The result is ``mean(w * rec) + weight * BCE(c, correct)``.
    """

    def __init__(self, weight: float = 0.2, uncertainty_threshold: float = 0.5) -> None:
        super().__init__()
        if not 0 <= uncertainty_threshold < 1:
            raise ValueError("uncertainty_threshold must be in [0, 1)")
        self.weight = weight
        self.threshold = uncertainty_threshold

    def sample_weights(self, confidence_logits: Tensor) -> Tensor:
        uncertainty = 1 - torch.sigmoid(confidence_logits.detach().float())
        w = 1 + (uncertainty - self.threshold).clamp(min=0) / (1 - self.threshold)
        return w / w.mean()

    def forward(self, recognition_losses: Tensor, confidence_logits: Tensor, correct: Tensor) -> Tensor:
        weighted = (self.sample_weights(confidence_logits) * recognition_losses).mean()
        return weighted + self.weight * confidence_loss(confidence_logits, correct)


class CurriculumLoss(nn.Module):
    """Down-weights samples that are harder than the current curriculum stage can handle.

    ``difficulty`` is in ``[0, 1]``; stage ``s`` of ``num_stages`` (0-based) sets the competence
    ``c = (s + 1) / num_stages``. Samples at or below it weigh 1, harder ones
    ``exp(-(difficulty - c) / temperature)``, so a stray hard sample cannot dominate an early
    stage while later stages see their full data. ``forward`` is the weighted mean.
    """

    def __init__(self, num_stages: int = 5, temperature: float = 0.1) -> None:
        super().__init__()
        self.num_stages = num_stages
        self.temperature = temperature

    def weights(self, difficulty: Tensor, stage: int) -> Tensor:
        competence = (stage + 1) / self.num_stages
        excess = (difficulty.float() - competence).clamp(min=0)
        return torch.exp(-excess / self.temperature)

    def forward(self, losses: Tensor, difficulty: Tensor, stage: int) -> Tensor:
        w = self.weights(difficulty, stage).to(losses.device)
        return (w * losses).sum() / w.sum()


class OnlineHardExampleMining(nn.Module):
    """Averages only the hardest ``keep_ratio`` of a batch's per-sample losses.

    Easy lines stop diluting the gradient once most of a batch is read correctly;
    ``ceil(keep_ratio * B)`` samples (at least ``min_kept``) are kept.
    """

    def __init__(self, keep_ratio: float = 0.7, min_kept: int = 1) -> None:
        super().__init__()
        if not 0 < keep_ratio <= 1:
            raise ValueError("keep_ratio must be in (0, 1]")
        self.keep_ratio = keep_ratio
        self.min_kept = min_kept

    def forward(self, losses: Tensor) -> Tensor:
        k = min(losses.numel(), max(self.min_kept, math.ceil(self.keep_ratio * losses.numel())))
        return torch.topk(losses.flatten(), k).values.mean()


class DistillationLoss(nn.Module):
    """Blend of the hard (CTC) loss and KL to a teacher's per-frame distributions.

    ``(1 - alpha) * hard + alpha * T**2 * KL(teacher_T || student_T)`` over the valid frames,
    averaged per frame; the ``T**2`` keeps soft-target gradients on the scale of the hard ones.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.3) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha

    def soft_loss(self, student_logits: Tensor, teacher_logits: Tensor, lengths: Tensor | None = None) -> Tensor:
        t = self.temperature
        s, te = student_logits.float(), teacher_logits.float().detach()
        if lengths is not None:
            mask = frame_mask(lengths, s.shape[0])
            s, te = s[mask], te[mask]
        s, te = s.reshape(-1, s.shape[-1]), te.reshape(-1, te.shape[-1])
        kl = F.kl_div(F.log_softmax(s / t, -1), F.log_softmax(te / t, -1), log_target=True, reduction="batchmean")
        return kl * t**2

    def forward(
        self, student_logits: Tensor, teacher_logits: Tensor, hard_loss: Tensor, lengths: Tensor | None = None
    ) -> Tensor:
        return (1 - self.alpha) * hard_loss + self.alpha * self.soft_loss(student_logits, teacher_logits, lengths)


def segmentation_loss(boundary_logits: Tensor, targets: Tensor, lengths: Tensor, pos_weight: float = 1.0) -> Tensor:
    """Per-frame boundary BCE over valid frames; ``pos_weight`` offsets how rare boundaries are."""
    mask = frame_mask(lengths, boundary_logits.shape[0])
    weight = torch.tensor(pos_weight, device=boundary_logits.device)
    return F.binary_cross_entropy_with_logits(boundary_logits[mask].float(), targets[mask].float(), pos_weight=weight)


def language_model_loss(lm_logits: Tensor, targets: Tensor, target_lengths: Tensor, reduction: str = "mean") -> Tensor:
    """Next-character cross-entropy per token, the end token included (``exp`` of it is perplexity)."""
    wanted = LanguageModelHead.shifted_targets(targets, target_lengths)
    return F.cross_entropy(lm_logits.float().flatten(0, 1), wanted.flatten(), ignore_index=-100, reduction=reduction)
