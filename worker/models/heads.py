"""The five task heads over CRNN frame features ``[T, B, F]``.

Each head is small on purpose: the backbone is shared and does the reading, the heads only
project it into what each task is scored on. Class index 0 is the CTC blank everywhere, and the
language model reuses it as its begin/end-of-line token.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = ("base", "modifier", "combination")


def frame_mask(lengths: Tensor, num_frames: int) -> Tensor:
    """``[T, B]`` bool, true on each line's own frames."""
    return torch.arange(num_frames, device=lengths.device)[:, None] < lengths[None, :]


def compact_targets(targets: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the positions of padded ``targets [B, S]`` where ``keep`` is false, left-aligning the rest."""
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    packed = torch.gather(targets * keep, 1, order)
    return packed, keep.sum(dim=1)


class CTCHead(nn.Module):
    """Character recognition: per-frame logits over ``num_classes`` (blank 0) for CTC."""

    def __init__(self, feature_size: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_size, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.proj(features)


class ConfidenceHead(nn.Module):
    """Confidence: one logit per line, the probability that the greedy decode is exactly right.

    It sees the masked mean of the frame features and five statistics of the CTC posterior (mean
    and min of the per-frame max probability, mean normalised entropy, the share of non-blank
    frames, the best-path log-probability per frame), which is what calibration needs. Both are
    detached by default, so the head is a probe that cannot bend the recogniser to look sure.
    """

    num_stats = 5

    def __init__(self, feature_size: int, hidden_size: int = 64, detach: bool = True) -> None:
        super().__init__()
        self.detach = detach
        self.mlp = nn.Sequential(
            nn.Linear(feature_size + self.num_stats, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1)
        )

    @staticmethod
    def posterior_stats(logits: Tensor, lengths: Tensor) -> Tensor:
        """``[B, 5]`` summary of the CTC posterior over each line's valid frames."""
        mask = frame_mask(lengths, logits.shape[0]).float()
        log_p = logits.float().log_softmax(-1)
        p = log_p.exp()
        top_log_p, top = log_p.max(-1)
        top_p = top_log_p.exp()
        entropy = -(p * log_p).sum(-1) / math.log(logits.shape[-1])
        n = mask.sum(0).clamp(min=1)

        def mean(x: Tensor) -> Tensor:
            return (x * mask).sum(0) / n

        min_top = torch.where(mask.bool(), top_p, torch.ones_like(top_p)).min(0).values
        stats = [mean(top_p), min_top, mean(entropy), mean((top != 0).float()), mean(top_log_p)]
        return torch.stack(stats, dim=1)

    def forward(self, features: Tensor, logits: Tensor, lengths: Tensor) -> Tensor:
        if self.detach:
            features, logits = features.detach(), logits.detach()
        mask = frame_mask(lengths, features.shape[0]).unsqueeze(-1).to(features.dtype)
        pooled = (features * mask).sum(0) / mask.sum(0).clamp(min=1)
        stats = self.posterior_stats(logits, lengths).to(pooled.dtype)
        return self.mlp(torch.cat([pooled, stats], dim=1)).squeeze(1)


class HierarchicalHead(nn.Module):
    """Hierarchical classification: three auxiliary CTC projections over character categories.

    ``class_to_category[c]`` is the category (``0..num_categories-1``) of character class ``c``
    (entry 0, the blank, is ignored); categories in ``modifier_categories`` form the modifier
    level, the others the base level. The *base* head transcribes only the base categories of a
    line, the *modifier* head only its modifiers, the *combination* head the full category
    sequence, i.e. how bases and modifiers combine. Each output has its own blank at index 0.
    """

    def __init__(
        self,
        feature_size: int,
        num_categories: int,
        class_to_category: Sequence[int],
        modifier_categories: Collection[int] = (),
    ) -> None:
        super().__init__()
        is_mod = torch.tensor([c in modifier_categories for c in range(num_categories)])
        to_level = {
            "base": torch.cumsum(~is_mod, 0) * ~is_mod,
            "modifier": torch.cumsum(is_mod, 0) * is_mod,
            "combination": torch.arange(1, num_categories + 1),
        }
        self.register_buffer("class_to_category", torch.as_tensor(class_to_category, dtype=torch.long))
        for level, index in to_level.items():
            self.register_buffer(f"{level}_index", index.long())
        sizes = {"base": int((~is_mod).sum()), "modifier": int(is_mod.sum()), "combination": num_categories}
        self.proj = nn.ModuleDict({lv: nn.Linear(feature_size, sizes[lv] + 1) for lv in LEVELS})

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        """``{"base_logits", "modifier_logits", "combination_logits"}``, each ``[T, B, n_level + 1]``."""
        return {f"{lv}_logits": self.proj[lv](features) for lv in LEVELS}

    def level_targets(self, targets: Tensor, target_lengths: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Character targets ``[B, S]`` to per-level CTC targets ``(padded [B, S], lengths [B])``."""
        valid = torch.arange(targets.shape[1], device=targets.device)[None, :] < target_lengths[:, None]
        category = self.class_to_category[targets.clamp(min=0)]
        out = {}
        for lv in LEVELS:
            index = getattr(self, f"{lv}_index")[category]
            out[lv] = compact_targets(index, valid & (index > 0))
        return out


class SegmentationHead(nn.Module):
    """Sequence segmentation: a per-frame logit that a cluster boundary falls in this frame."""

    def __init__(self, feature_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_size, 1)

    def forward(self, features: Tensor) -> Tensor:
        return self.proj(features).squeeze(-1)


def boundary_targets(boundaries: Sequence[Sequence[int]], num_frames: int, downsample: int) -> Tensor:
    """Pixel x positions of cluster boundaries per line to ``[T, B]`` 0/1 frame targets."""
    out = torch.zeros(num_frames, len(boundaries))
    for b, xs in enumerate(boundaries):
        frames = [min(x // downsample, num_frames - 1) for x in xs]
        out[frames, b] = 1.0
    return out


class LanguageModelHead(nn.Module):
    """Language modelling: a character GRU trained with teacher forcing on the line labels.

    It does not look at the image; it shares nothing with the backbone but the vocabulary, and is
    trained alongside so beam search can rescore candidates (shallow fusion) at decode time.
    Index 0 (the CTC blank) is the begin- and end-of-line token.
    """

    def __init__(self, num_classes: int, embed_size: int = 64, hidden_size: int = 128, layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_size)
        self.rnn = nn.GRU(embed_size, hidden_size, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden_size, num_classes)

    def forward(self, targets: Tensor) -> Tensor:
        """Logits ``[B, S + 1, C]``: position ``i`` predicts ``targets[:, i]``, position ``len`` the end."""
        inputs = F.pad(targets.clamp(min=0), (1, 0), value=0)
        hidden, _ = self.rnn(self.embed(inputs))
        return self.out(hidden)

    @staticmethod
    def shifted_targets(targets: Tensor, target_lengths: Tensor) -> Tensor:
        """What each of the ``S + 1`` positions must predict: the label, then end (0), then -100."""
        padded = F.pad(targets, (0, 1), value=0)
        pos = torch.arange(padded.shape[1], device=targets.device)[None, :]
        padded = torch.where(pos < target_lengths[:, None], padded, torch.zeros_like(padded))
        return padded.masked_fill(pos > target_lengths[:, None], -100)

    @torch.no_grad()
    def step(self, token: int, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Feed one token (0 to start); return next-token log-probabilities ``[C]`` and the state."""
        x = self.embed(torch.tensor([[token]], device=self.out.weight.device))
        hidden, state = self.rnn(x, state)
        return self.out(hidden[0, -1]).log_softmax(-1), state

    @torch.no_grad()
    def score(self, sequence: Sequence[int]) -> float:
        """Log-probability of a whole line, its end token included."""
        t = torch.tensor([list(sequence)], dtype=torch.long, device=self.out.weight.device)
        log_p = self(t).log_softmax(-1)[0]
        wanted = torch.tensor([*sequence, 0], device=log_p.device)
        return float(log_p.gather(1, wanted[:, None]).sum())
