"""The recogniser and its task heads, assembled into one multi-task model.

``MultiTaskModel(CRNN(...), num_classes, tasks={...})`` returns a dict of outputs per batch;
which keys appear depends on the enabled tasks (see ``MultiTaskModel.forward``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from torch import Tensor, nn

from worker.models.crnn import CRNN
from worker.models.heads import (
    ConfidenceHead,
    CTCHead,
    HierarchicalHead,
    LanguageModelHead,
    SegmentationHead,
    boundary_targets,
    frame_mask,
)

TASKS = (
    "character_recognition",
    "confidence_prediction",
    "hierarchical_classification",
    "sequence_segmentation",
    "language_modeling",
)

__all__ = [
    "CRNN",
    "TASKS",
    "CTCHead",
    "ConfidenceHead",
    "HierarchicalHead",
    "LanguageModelHead",
    "MultiTaskModel",
    "SegmentationHead",
    "boundary_targets",
    "frame_mask",
]


class MultiTaskModel(nn.Module):
    """A CRNN backbone plus the heads of the enabled tasks; character recognition is always on.

    Hierarchical classification needs ``num_categories`` and ``class_to_category`` (and names its
    modifier categories); the other heads need only the backbone's feature size.
    """

    def __init__(
        self,
        backbone: CRNN,
        num_classes: int,
        tasks: Collection[str] = ("character_recognition",),
        *,
        num_categories: int | None = None,
        class_to_category: Sequence[int] | None = None,
        modifier_categories: Collection[int] = (),
        confidence_hidden_size: int = 64,
        lm_embed_size: int = 64,
        lm_hidden_size: int = 128,
    ) -> None:
        super().__init__()
        unknown = set(tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown tasks: {sorted(unknown)}")
        self.tasks = frozenset(tasks) | {"character_recognition"}
        self.backbone = backbone
        size = backbone.feature_size
        heads: dict[str, nn.Module] = {"character_recognition": CTCHead(size, num_classes)}
        if "confidence_prediction" in self.tasks:
            heads["confidence_prediction"] = ConfidenceHead(size, confidence_hidden_size)
        if "hierarchical_classification" in self.tasks:
            if num_categories is None or class_to_category is None:
                raise ValueError("hierarchical_classification needs num_categories and class_to_category")
            heads["hierarchical_classification"] = HierarchicalHead(
                size, num_categories, class_to_category, modifier_categories
            )
        if "sequence_segmentation" in self.tasks:
            heads["sequence_segmentation"] = SegmentationHead(size)
        if "language_modeling" in self.tasks:
            heads["language_modeling"] = LanguageModelHead(num_classes, lm_embed_size, lm_hidden_size)
        self.heads = nn.ModuleDict(heads)

    def forward(self, images: Tensor, widths: Tensor | None = None, targets: Tensor | None = None) -> dict[str, Tensor]:
        """Run the backbone once and every enabled head.

        Keys: ``features [T,B,F]``, ``lengths [B]`` (frames per line), ``logits [T,B,C]``; with
        confidence ``confidence_logit [B]``; with hierarchy ``base_logits``, ``modifier_logits``,
        ``combination_logits`` ``[T,B,n+1]``; with segmentation ``boundary_logits [T,B]``; with the
        language model and ``targets [B,S]`` (0-padded) given, ``lm_logits [B,S+1,C]``.
        """
        features, lengths = self.backbone(images, widths)
        logits = self.heads["character_recognition"](features)
        out = {"features": features, "lengths": lengths, "logits": logits}
        if "confidence_prediction" in self.heads:
            out["confidence_logit"] = self.heads["confidence_prediction"](features, logits, lengths)
        if "hierarchical_classification" in self.heads:
            out.update(self.heads["hierarchical_classification"](features))
        if "sequence_segmentation" in self.heads:
            out["boundary_logits"] = self.heads["sequence_segmentation"](features)
        if "language_modeling" in self.heads and targets is not None:
            out["lm_logits"] = self.heads["language_modeling"](targets)
        return out
