"""Datasets the trainer consumes: one per (stage content, epoch), keyed by index.

Every sample is a pure function of (seed, split, epoch, content, rank, index):
its RNG is seeded from a hash of those, so a resumed run sees the data it
would have seen, any number of DataLoader workers yields the same batches,
and distributed ranks see different data. Heavy state (fonts, corpus, real
rows) lives in `DataSources`, built once per run; datasets are cheap views.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from worker.data.augment import augment
from worker.data.real import DataReport, RealRow, is_validation, load_line_image, scan_folder
from worker.data.fonts import plan as font_plan
from worker.data.render import Renderer
from worker.data.text import CONTENTS, TextSource
from worker.khmer import CONTENT_LEVELS, categorize, encode, level_of
from worker.models.crnn import CRNN

FRAME_PX = CRNN.downsample  # image columns per output frame

log = logging.getLogger(__name__)
Sample = dict[str, Any]
DRAWS = 20


@dataclass
class DataSources:
    """Fonts, text sources and scanned real folders of one run."""

    renderer: Renderer
    val_renderer: Renderer
    text: TextSource
    reports: list[DataReport] = field(default_factory=list)
    val_percent: int = 10

    @classmethod
    def create(cls, *, fonts: Sequence[str | Path] | None = None, val_fonts: Sequence[str | Path] | None = None,
               corpus: str | Path | None = None, folders: Sequence[str | Path] = (), image_height: int = 32,
               width_bucket: int = 32, val_percent: int = 10) -> DataSources:
        """Fails here, at start-up, on missing raqm, fonts or corpus; bad real rows are only reported.

        `val_fonts` None validates on the training fonts; otherwise validation designs never train.
        """
        faces = font_plan(fonts, val_fonts)
        for warning in faces.warnings:
            log.warning("%s", warning)
        renderer = Renderer(faces.train, image_height, width_bucket)
        val_renderer = Renderer(faces.val, image_height, width_bucket) if val_fonts else renderer
        return cls(renderer, val_renderer, TextSource(corpus), [scan_folder(f) for f in folders], val_percent)

    def real_rows(self, content: str, split: str) -> list[RealRow]:
        level, val = CONTENT_LEVELS[content], split == "val"
        return [r for rep in self.reports for r in rep.rows
                if r.level == level and is_validation(r, self.val_percent) == val]


def sample_seed(*key: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "little")


class CurriculumDataset(Dataset):
    """``length`` samples of one stage content; index → sample dict (see `make_sample`)."""

    def __init__(self, sources: DataSources, content: str, *, split: str, seed: int, epoch: int, length: int,
                 augmentation: float = 0.0, replay: float = 0.0, replay_contents: Sequence[str] = (),
                 real_share: float = 0.5, rank: int = 0) -> None:
        for c in (content, *replay_contents):
            if c not in CONTENTS:
                raise ValueError(f"unknown content {c!r}; expected one of {', '.join(CONTENTS)}")
        self.sources, self.content, self.split = sources, content, split
        self.seed, self.epoch, self.length, self.rank = seed, epoch, length, rank
        self.augmentation, self.replay, self.replay_contents = augmentation, replay, list(replay_contents)
        self.real = {c: sources.real_rows(c, split) for c in {content, *replay_contents}}
        self.real_share = real_share
        self.renderer = sources.val_renderer if split == "val" else sources.renderer

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(index)
        key = sample_seed(self.seed, self.split, self.epoch, self.content, self.rank, index)
        rng, nprng = random.Random(key), np.random.default_rng(key)
        content = self.content
        if self.replay_contents and rng.random() < self.replay:
            content = rng.choice(self.replay_contents)
        rows = self.real[content]
        if rows and rng.random() < self.real_share:
            sample = self._real(rng.choice(rows), rng, nprng)
            if sample is not None:
                return sample
        return self._synthetic(content, rng, nprng)

    def _synthetic(self, content: str, rng: random.Random, nprng: np.random.Generator) -> Sample:
        text = self.sources.text.sample(content, rng, self.split)
        for _ in range(DRAWS):  # a font set without Latin letters, say, draws another text
            if self.renderer.can_draw(text):
                break
            text = self.sources.text.sample(content, rng, self.split)
        r = self.renderer.render(text, rng)
        image, boundaries = r.image, r.boundaries
        if rng.random() < self.augmentation:
            image, boundaries = augment(image, boundaries, rng, nprng, min_width=ctc_width(text),
                                        width_bucket=self.renderer.width_bucket)
        return make_sample(image, text, boundaries, "synthetic")

    def _real(self, row: RealRow, rng: random.Random, nprng: np.random.Generator) -> Sample | None:
        try:
            image = load_line_image(row.image, self.renderer.height, self.renderer.width_bucket)
        except Exception as exc:  # a file changed since the scan must not stop a run
            log.warning("skipping %s: %s", row.image, exc)
            return None
        if rng.random() < self.augmentation:
            image, _ = augment(image, [], rng, nprng, crop=False, min_width=ctc_width(row.text),
                               width_bucket=self.renderer.width_bucket)
        return make_sample(image, row.text, None, "real")


def ctc_width(text: str) -> int:
    """Pixels a line needs so CTC has a frame per label and one between repeated labels."""
    labels = encode(text)
    return FRAME_PX * (len(labels) + sum(a == b for a, b in zip(labels, labels[1:])))


def make_sample(image, text: str, boundaries: list[float] | None, source: str) -> Sample:
    """Tensors of one sample: image [1,H,W] float in [0,1] (ink 1), labels/categories [L], boundaries [W]."""
    pixels = torch.from_numpy(np.asarray(image, np.float32) / 255.0).unsqueeze(0)
    width = pixels.shape[-1]
    edges = torch.zeros(width)
    if boundaries:
        cols = torch.tensor([min(max(round(b), 0), width - 1) for b in boundaries])
        edges[cols] = 1.0
    return {
        "image": pixels, "text": text, "labels": torch.tensor(encode(text), dtype=torch.long),
        "categories": torch.tensor(categorize(text), dtype=torch.long), "boundaries": edges,
        "has_boundaries": boundaries is not None, "difficulty": level_of(text), "source": source,
    }


def collate(samples: list[Sample]) -> dict[str, Any]:
    """Pad images to the widest (with background 0) and concatenate CTC targets."""
    height = samples[0]["image"].shape[1]
    widths = torch.tensor([s["image"].shape[-1] for s in samples])
    lengths = torch.tensor([len(s["labels"]) for s in samples])
    batch, max_w, max_l = len(samples), int(widths.max()), int(lengths.max())
    images = torch.zeros(batch, 1, height, max_w)
    boundaries = torch.zeros(batch, max_w)
    labels_padded = torch.zeros(batch, max_l, dtype=torch.long)
    categories_padded = torch.zeros(batch, max_l, dtype=torch.long)
    for i, s in enumerate(samples):
        w, n = s["image"].shape[-1], len(s["labels"])
        images[i, :, :, :w] = s["image"]
        boundaries[i, :w] = s["boundaries"]
        labels_padded[i, :n], categories_padded[i, :n] = s["labels"], s["categories"]
    return {
        "images": images, "widths": widths,
        "targets": torch.cat([s["labels"] for s in samples]), "target_lengths": lengths,
        "categories": torch.cat([s["categories"] for s in samples]),
        "labels_padded": labels_padded, "categories_padded": categories_padded,
        "boundaries": boundaries, "has_boundaries": torch.tensor([s["has_boundaries"] for s in samples]),
        "difficulty": torch.tensor([s["difficulty"] for s in samples]),
        "texts": [s["text"] for s in samples], "sources": [s["source"] for s in samples],
    }


def build_train_dataset(sources: DataSources, content: str, *, epoch: int, seed: int, length: int,
                        augmentation: float = 0.0, replay: float = 0.0, replay_contents: Sequence[str] = (),
                        real_share: float = 0.5, rank: int = 0) -> CurriculumDataset:
    """One epoch of one stage: ``length`` = steps_per_epoch × batch_size × accumulation_steps."""
    return CurriculumDataset(sources, content, split="train", seed=seed, epoch=epoch, length=length,
                             augmentation=augmentation, replay=replay, replay_contents=replay_contents,
                             real_share=real_share, rank=rank)


def build_val_dataset(sources: DataSources, content: str, *, seed: int, samples: int = 512) -> CurriculumDataset:
    """The fixed validation set of a stage: same samples every epoch, never augmented, held-out fonts if given."""
    return CurriculumDataset(sources, content, split="val", seed=seed, epoch=0, length=samples)


def make_loader(dataset: Dataset, batch_size: int, workers: int = 0, **kwargs: Any) -> DataLoader:
    """In-order DataLoader (order is already random per index; in-order keeps resumption exact)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      persistent_workers=False, **kwargs)
