"""A held-out benchmark anyone can reproduce: `sala data bench`.

Lines of the corpus's held-out words (`worker.data.corpus`: never trained on) in the held-out
validation designs (`worker.data.fonts`: never trained on), every design drawing the same number
of lines, written as people have them: dark ink on light paper with margins, 64 px a line
(Tesseract read 48-128 px lines equally well; our model scales each image to its own height on
load). Two sets share the text and font of every line: `clean`, and `degraded` (through
`degrade`, with margins of its own). Everything is a function of the seed, so the same command
writes the same files on any machine with the same fonts.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from worker.data.augment import augment
from worker.data.dataset import sample_seed
from worker.data.fonts import HELD_OUT, HELD_OUT_PACKAGES, Face, plan
from worker.data.real import LABELS
from worker.data.render import Renderer
from worker.data.text import TextSource

SETS = ("clean", "degraded")
HEIGHT = 64  # rendered line height (Tesseract read 48-128 px equally well; docs/TRAINING.md)
MARGIN = (0.05, 0.3)  # each side's margin, as a share of the line height: ink about half the image, as training crops
DRAWS = 20
LOW = 32  # the line height the degraded set is damaged at: the model's, which augmentation is made for


def degrade(image: Image.Image, rng: random.Random, nprng: np.random.Generator) -> Image.Image:
    """The degraded set's line from a clean render (ink bright on dark, no margins; the same out).

    The training augmentation (`worker.data.augment`: a real-looking crop with its own margins,
    paper, polarity and damage) applied with the line at the height it was made for, then
    enlarged back, so the line also loses the detail of one scanned small. The one place the
    benchmark chooses its degradation, so it follows the training pipeline's.
    """
    w, h = image.size
    small = image.resize((max(1, round(w * LOW / h)), LOW), Image.Resampling.BILINEAR)
    damaged = augment(small, [], rng, nprng, width_bucket=1)[0]
    return damaged.resize((max(1, round(damaged.width * h / LOW)), h), Image.Resampling.BILINEAR)


@dataclass(frozen=True)
class BenchLine:
    name: str
    text: str
    font: str  # the design, the unit the benchmark balances and reports
    face: str


def held_out_designs() -> dict[str, list[Face]]:
    """The installed held-out faces by design; an error naming the packages when there are none."""
    found = plan(None, [HELD_OUT])
    if not found.held_out:
        raise ValueError(f"no held-out validation font is installed (install {HELD_OUT_PACKAGES})")
    designs: dict[str, list[Face]] = defaultdict(list)
    for face in found.val:
        designs[face.design].append(face)
    return dict(sorted(designs.items()))


def write_bench(out: str | Path, *, lines: int = 300, seed: int = 0, content: str = "lines",
                text: TextSource | None = None, on_line: Callable[[], None] = lambda: None) -> list[BenchLine]:
    """Write OUT/clean and OUT/degraded, each with PNGs and a labels.jsonl ({"image", "text", "font", "face", "set"})."""
    out = Path(out)
    folders = {s: out / s for s in SETS}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    written = []
    labels = {s: (folders[s] / LABELS).open("w", encoding="utf-8") for s in SETS}
    try:
        for line, images in _lines(lines, seed, content, text or TextSource()):
            for s in SETS:
                images[s].save(folders[s] / line.name, optimize=False)
                row = {"image": line.name, "text": line.text, "font": line.font, "face": line.face, "set": s}
                labels[s].write(json.dumps(row, ensure_ascii=False) + "\n")
            written.append(line)
            on_line()
    finally:
        for f in labels.values():
            f.close()
    return written


def _lines(count: int, seed: int, content: str, text: TextSource) -> Iterator[tuple[BenchLine, dict[str, Image.Image]]]:
    """Line i is drawn in design i mod the number of designs, so every design gets its share."""
    renderers = [Renderer(faces, HEIGHT, width_bucket=1) for faces in held_out_designs().values()]
    for i in range(count):
        key = sample_seed("bench", seed, content, i)
        rng, nprng = random.Random(key), np.random.default_rng(key)
        renderer = renderers[i % len(renderers)]
        label = _drawable(renderer, text, content, rng)
        rendered = renderer.render(label, rng)
        margins = tuple(round(HEIGHT * rng.uniform(*MARGIN)) for _ in range(4))
        face = next(f for f in renderer.faces if f.name == rendered.font)
        images = {"clean": _paper(rendered.image, margins), "degraded": _paper(degrade(rendered.image, rng, nprng), ())}
        yield BenchLine(f"{content}_{i:05d}.png", label, face.design, face.name), images


def _drawable(renderer: Renderer, text: TextSource, content: str, rng: random.Random) -> str:
    for _ in range(DRAWS):  # a design without Latin letters, say, draws another text
        label = text.sample(content, rng, split="val")
        if renderer.can_draw(label):
            return label
    raise ValueError(f"the fonts {[f.name for f in renderer.faces]} draw none of {DRAWS} held-out {content}")


def _paper(image: Image.Image, margins: tuple[int, ...]) -> Image.Image:
    """Ink bright on dark to dark ink on light paper, with margins (left, top, right, bottom) when given."""
    paper = ImageOps.invert(image)
    return ImageOps.expand(paper, margins, fill=255) if margins else paper
