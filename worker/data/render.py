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

import fontpkg_noto_sans_khmer
from PIL import Image, ImageDraw, ImageFont, features

from worker.khmer import segment

log = logging.getLogger(__name__)

BUNDLED_FONTS = {"noto-sans-khmer": fontpkg_noto_sans_khmer.ROOT / "files" / "NotoSansKhmer[wdth,wght].ttf"}
DEFAULT_FONTS = ("noto-sans-khmer",)
FONT_SUFFIXES = {".ttf", ".otf", ".ttc"}
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


def resolve_fonts(specs: Sequence[str | Path] | None) -> list[Path]:
    """Font files for bundled names, files and folders (searched recursively); Khmer-less fonts skipped."""
    paths: list[Path] = []
    for spec in specs or DEFAULT_FONTS:
        path = BUNDLED_FONTS.get(str(spec)) or Path(spec).expanduser()
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in FONT_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"font {spec!r} is neither a bundled font ({', '.join(BUNDLED_FONTS)}), a file nor a folder")
    usable = [p for p in dict.fromkeys(paths) if _has_khmer(p)]
    if not usable:
        raise ValueError(f"none of the fonts {list(map(str, specs or DEFAULT_FONTS))} draws Khmer")
    return usable


def _has_khmer(path: Path) -> bool:
    font = ImageFont.truetype(str(path), 24, layout_engine=ImageFont.Layout.RAQM)
    missing = bytes(font.getmask("\U0010fff0"))
    if all(bytes(font.getmask(ch)) == missing for ch in "កខ"):
        log.warning("font %s has no Khmer glyphs; skipped", path)
        return False
    return True


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.RAQM)


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
    """Draws one line of text; stateless apart from a per-font size cache, so it pickles to workers."""

    fonts: Sequence[str | Path] | None = None
    height: int = 32
    width_bucket: int = 32
    pad: int = field(default=0)
    paths: list[Path] = field(init=False)

    def __post_init__(self) -> None:
        require_raqm()
        self.pad = self.pad or max(2, self.height // 16)
        self.paths = resolve_fonts(self.fonts)
        self._fits = {str(p): self._fit(str(p)) for p in self.paths}

    def _fit(self, path: str) -> _FontFit:
        ref = _font(path, _REFERENCE_SIZE)
        boxes = [ref.getbbox(p) for p in _PROBES]
        top, bottom = min(b[1] for b in boxes), max(b[3] for b in boxes)
        size = max(4, int((self.height - 2 * self.pad) * _REFERENCE_SIZE / (bottom - top)))
        return _FontFit(size, self.pad - math.floor(top * size / _REFERENCE_SIZE))

    def render(self, text: str, rng: random.Random) -> Rendered:
        path = str(rng.choice(self.paths))
        fit = self._fits[path]
        font, y = _font(path, fit.size), fit.baseline_top
        left, top, right, bottom = font.getbbox(text)
        inner = self.height - 2 * self.pad
        if bottom - top > inner:  # a stack taller than the probes: draw smaller
            font = _font(path, max(4, fit.size * inner // (bottom - top)))
            left, top, right, bottom = font.getbbox(text)
        y = min(max(y, self.pad - top), self.height - self.pad - bottom)
        natural = right - left + 2 * self.pad
        width = max(self.width_bucket, math.ceil(natural / self.width_bucket) * self.width_bucket)
        x = self.pad - left + rng.randint(0, width - natural)
        image = Image.new("L", (width, self.height), 0)
        ImageDraw.Draw(image).text((x, y), text, fill=255, font=font)
        return Rendered(image, self._boundaries(text, font, x), Path(path).name)

    @staticmethod
    def _boundaries(text: str, font: ImageFont.FreeTypeFont, x: float) -> list[float]:
        edges, prefix = [x], ""
        for cluster in segment(text):
            prefix += cluster
            edges.append(x + font.getlength(prefix))
        return edges
