"""Text-line rendering with Pillow's raqm layout (the only layout that shapes Khmer).

Images are 8-bit, ink = 255 on background = 0, fixed height; the width is the
text's width plus padding, rounded up to a multiple of ``width_bucket``. The
font size per font is chosen once so that the tallest Khmer stacks fit, and a
sample that is still too tall is drawn smaller, so no glyph is ever clipped.
Cluster boundaries come from raqm's advance of each cluster prefix.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont, features

from worker.data.fonts import Face, resolve
from worker.khmer import segment

log = logging.getLogger(__name__)

# The tallest and deepest clusters: shifter over vowel, robat, double stacks with below vowels.
_PROBES = ("ប៊ី", "ម៉ឺ", "ក៌", "ស្ត្រូ", "ង្ក្រួ", "ញ្ញូ", "ក្សៀ", "ឡើ", "ឬ", "ឮ", "ៗ", "(Ag)", "ស្ត្រើ", "ព្រឹ")
_REFERENCE_SIZE = 100


class RaqmMissingError(RuntimeError):
    """Pillow was built without libraqm, so Khmer cannot be shaped."""


def require_raqm() -> None:
    if not features.check("raqm"):
        raise RaqmMissingError(
            "Pillow's raqm layout is not available, and Khmer cannot be rendered without it. "
            "Install libraqm (Debian/Ubuntu: apt-get install libraqm0; macOS: brew install libraqm) "
            "and reinstall Pillow."
        )


@lru_cache(maxsize=2048)
def _font(path: str, size: int, variation: tuple[float, ...] = ()) -> ImageFont.FreeTypeFont:
    font = ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.RAQM)
    if variation:
        font.set_variation_by_axes(list(variation))
    return font


class UncoveredText(ValueError):
    """No font of the renderer draws every character of a text."""


@dataclass
class Rendered:
    image: Image.Image  # mode "L", ink 255 on 0
    boundaries: list[float]  # x of every cluster edge, left to right
    font: str


@dataclass
class _FontFit:
    size: int
    baseline_top: int  # y to draw at (anchor "la") so the reference box starts at the padding


@dataclass
class Renderer:
    """Draws one line of text; stateless apart from per-font caches, so it pickles to workers.

    ``fonts`` are resolved faces (`worker.data.fonts.plan`) or specs to resolve. A sample picks a
    design uniformly, then one of its faces, among those that draw every character of the text, so
    a family with four files is not drawn four times as often; a variable face gets random axes.
    """

    fonts: Sequence[Face | str | Path] | None = None
    height: int = 32
    width_bucket: int = 32
    pad: int = field(default=0)
    faces: list[Face] = field(init=False)

    def __post_init__(self) -> None:
        require_raqm()
        self.pad = self.pad or max(2, self.height // 16)
        given = list(self.fonts or ["noto-sans-khmer"])
        self.faces = [f for f in given if isinstance(f, Face)] + resolve([f for f in given if not isinstance(f, Face)])
        if not self.faces:
            raise ValueError(f"none of the fonts {[str(f) for f in given]} draws Khmer")
        self._fits = {str(f.path): self._fit(str(f.path)) for f in self.faces}

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.faces]

    def can_draw(self, text: str) -> bool:
        return any(f.covers(text) for f in self.faces)

    def _fit(self, path: str) -> _FontFit:
        ref = _font(path, _REFERENCE_SIZE)
        boxes = [ref.getbbox(p) for p in _PROBES]
        top, bottom = min(b[1] for b in boxes), max(b[3] for b in boxes)
        size = max(4, int((self.height - 2 * self.pad) * _REFERENCE_SIZE / (bottom - top)))
        return _FontFit(size, self.pad - math.floor(top * size / _REFERENCE_SIZE))

    def pick(self, text: str, rng: random.Random) -> tuple[Face, tuple[float, ...]]:
        """A face that draws the whole text (design first, then face) and, for a variable face, its axes."""
        covering = [f for f in self.faces if f.covers(text)]
        if not covering:
            missing = "".join(sorted(set().union(*(set(f.missing(text)) for f in self.faces))))
            raise UncoveredText(f"no font draws {missing!r} of {text!r}")
        design = rng.choice(sorted({f.design for f in covering}))
        face = rng.choice([f for f in covering if f.design == design])
        return face, tuple(rng.choice(axis.values()) for axis in face.axes)

    def render(self, text: str, rng: random.Random) -> Rendered:
        face, variation = self.pick(text, rng)
        path = str(face.path)
        fit = self._fits[path]
        font, y = _font(path, fit.size, variation), fit.baseline_top
        left, top, right, bottom = font.getbbox(text)
        inner = self.height - 2 * self.pad
        if bottom - top > inner:  # a stack taller than the probes: draw smaller
            font = _font(path, max(4, fit.size * inner // (bottom - top)), variation)
            left, top, right, bottom = font.getbbox(text)
        y = min(max(y, self.pad - top), self.height - self.pad - bottom)
        natural = right - left + 2 * self.pad
        width = max(self.width_bucket, math.ceil(natural / self.width_bucket) * self.width_bucket)
        x = self.pad - left + rng.randint(0, width - natural)
        image = Image.new("L", (width, self.height), 0)
        ImageDraw.Draw(image).text((x, y), text, fill=255, font=font)
        return Rendered(image, self._boundaries(text, font, x), face.name)

    @staticmethod
    def _boundaries(text: str, font: ImageFont.FreeTypeFont, x: float) -> list[float]:
        edges, prefix = [x], ""
        for cluster in segment(text):
            prefix += cluster
            edges.append(x + font.getlength(prefix))
        return edges

