"""Images as people have them: a clean render becomes a line crop as scanners, cameras and screens
deliver it, then goes through the real-image loader's own normalisation, so training sees what
inference sees.

An augmented sample goes through five steps, each drawing only from the sample's rng/nprng (a
sample stays a pure function of its key):

1. ``ink``: bleed or erosion (a small blur of the ink mask, then a tone curve);
2. ``place``: the crop. The text is drawn from 60 % of its clean size (its ink then about half the
   line's height) up to filling the line (``tight`` crops to the ink rows, so a line without
   stacks grows), each side gets a tight or loose margin, and one homography adds skew
   (``rotate``), ``slant``, ``stretch`` and a slight ``warp``. Cluster boundaries go through the
   same map, and all ink stays at least a pixel inside the image. ``neighbours`` then puts
   cut-off strokes of the lines above and below into the top and bottom margins;
3. ``page``: dark-on-light or ``light_on_dark`` at any contrast down to ``low_contrast``, on paper
   with a ``gradient``, a ``shadow``, ``texture`` and ``stains``, with ``faded`` ink;
4. ``degrade``: ``blur``, ``low_resolution`` (down then up), sensor ``noise``, ``jpeg``;
5. `worker.data.real.ink_bright` (polarity and levels, as for a real file), padded to the bucket.

Effects are named so a test or a caller can switch each on or off (``effects`` maps a name to its
probability; a missing name is off). Which effects a sample gets, and how strongly, is drawn once
up front (`Draw`), and the strengths of the effects that cost legibility share a budget: any one
may be at its worst, but not all together, where a line at height 32 becomes a smudge.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from worker.data.real import ink_bright, pad_to_bucket

EFFECTS: dict[str, float] = {
    "ink": 0.2, "tight": 0.25, "rotate": 0.4, "slant": 0.25, "stretch": 0.3, "warp": 0.2, "neighbours": 0.15,
    "light_on_dark": 0.3, "low_contrast": 0.3, "gradient": 0.3, "shadow": 0.15, "texture": 0.3,
    "stains": 0.15, "faded": 0.15, "blur": 0.3, "low_resolution": 0.15, "noise": 0.35, "jpeg": 0.3,
}
# The smallest text, as a share of the clean drawing's size (whose line box fills the height): a
# consonant is then about 7 px at height 32 and a line's ink about half the line, the least this
# model resolves. Smaller text is unreadable junk at this height.
SMALLEST_TEXT = 0.6
_MAX_DEGREES = 3.0
SEVERE = ("ink", "low_contrast", "faded", "blur", "low_resolution", "noise", "jpeg")
LEGIBILITY_BUDGET = 1.2  # the most the severities (each 0-1) of one sample's SEVERE effects add up to


@dataclass
class Draw:
    """Which effects one sample gets, and how strongly (0-1) those that cost legibility apply."""

    fired: frozenset[str]
    severity: dict[str, float]

    @classmethod
    def sample(cls, effects: Mapping[str, float], rng: random.Random) -> Draw:
        """A fixed number of draws whatever fires, so switching one effect leaves the others' draws alone."""
        fired = frozenset(name for name in EFFECTS if effects.get(name, 0.0) > rng.random())
        severity = {name: rng.random() for name in SEVERE}
        severity = {name: v for name, v in severity.items() if name in fired}
        total = sum(severity.values())
        if total > LEGIBILITY_BUDGET:
            severity = {name: v * LEGIBILITY_BUDGET / total for name, v in severity.items()}
        return cls(fired, severity)

    def __call__(self, name: str) -> bool:
        return name in self.fired


def augment(image: Image.Image, boundaries: Sequence[float], rng: random.Random, nprng: np.random.Generator, *,
            effects: Mapping[str, float] = EFFECTS, crop: bool = True, min_width: float = 0.0,
            width_bucket: int = 32) -> tuple[Image.Image, list[float]]:
    """An "L" image, ink bright on 0, to the same text as a real line crop would load.

    ``crop`` cuts the drawing to its ink before placing it (synthetic renders); without it the
    whole image is the text (a real line). ``min_width`` (px) is the narrowest the text may be
    drawn, so CTC still has a frame per label.
    """
    on = Draw.sample(effects, rng)
    height = image.height
    if crop and on("ink"):
        image, boundaries = ink_weight(image, boundaries, on.severity["ink"], rng)
    placed = place(image, boundaries, height, rng, on, crop=crop, min_width=min_width)
    sheet, contrast = page(placed.alpha, rng, nprng, on)
    sheet = degrade(sheet, placed.line_px, contrast, rng, nprng, on)
    return pad_to_bucket(Image.fromarray(ink_bright(sheet)), width_bucket), placed.boundaries


def ink_weight(image: Image.Image, boundaries: Sequence[float], severity: float, rng: random.Random
               ) -> tuple[Image.Image, list[float]]:
    """Bleed (thicker strokes) or erosion (thinner), with 2 px of room so bled ink is not cut."""
    blurred = ImageOps.expand(image, 2, 0).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.6)))
    levels = np.arange(256.0)
    if rng.random() < 0.5:
        levels *= 1.3 + 0.9 * severity
    else:
        cut = (0.05 + 0.2 * severity) * 255
        levels = (levels - cut) * 255 / (200 - cut)
    return blurred.point(np.clip(levels, 0, 255).round().astype(np.uint8).tolist()), [b + 2 for b in boundaries]


@dataclass
class Placed:
    alpha: np.ndarray  # float [h, w], ink 1 on 0, the text's and any neighbours'
    text: np.ndarray  # the same, the text's alone
    boundaries: list[float]
    line_px: float  # the height the font's line box now has, which sizes blur and low resolution


def place(image: Image.Image, boundaries: Sequence[float], h: int, rng: random.Random, on: Draw, *, crop: bool = True,
          min_width: float = 0.0) -> Placed:
    """The crop around the text, ``h`` rows high: size, margins, skew, slant, stretch, warp.

    One homography maps the text box (ink columns × the drawing's rows, or the ink rows when
    ``tight``) onto a quadrilateral that fits the height less a pixel each side. With
    ``neighbours`` the text is drawn smaller, to leave room for them; never below
    ``SMALLEST_TEXT`` of its drawn size unless the line cannot fit otherwise.
    """
    tight, crowded = on("tight"), on("neighbours")
    x0, y0, x1, y1 = _box(np.asarray(image), crop, tight)
    bw, bh = x1 - x0, y1 - y0
    linear = _linear(bw, bh, rng, on)
    warped = on("warp")
    jitter = np.array([[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(4)]) * 0.04 * bh if warped else 0.0
    corners = np.array([[0, 0], [bw, 0], [bw, bh], [0, bh]], float)
    quad = (corners - [bw / 2, bh / 2]) @ linear.T + jitter
    qw, qh = float(np.ptp(quad[:, 0])), float(np.ptp(quad[:, 1]))
    s = _scale((h - 2) / qh, tight, crowded, rng)
    s = min((h - 2) / qh, max(s, min_width / qw))
    stretch = np.array([max(s, min_width / qw), s])  # wider than s when the line's height caps s below CTC's need
    quad *= stretch
    left, right = _margin(h, rng), _margin(h, rng)
    quad += [left - quad[:, 0].min(), 1 + rng.uniform(0, h - 2 - s * qh) - quad[:, 1].min()]
    source = image
    if s < 0.75:  # a transform samples 2x2 pixels; shrink with a real filter first
        source = image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))),
                              Image.Resampling.BILINEAR)
    kx, ky = source.width / image.width, source.height / image.height
    src = (corners + [x0, y0]) * [kx, ky]
    if warped:
        forward = _homography(src, quad)
    else:  # affine: written down rather than solved for
        a = stretch[:, None] * linear / [kx, ky]
        forward = np.vstack([np.column_stack([a, quad[0] - a @ src[0]]), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(forward)
    mask = source.transform((math.ceil(quad[:, 0].max() + right), h), Image.Transform.PERSPECTIVE,
                            tuple((inverse / inverse[2, 2]).ravel()[:8]), Image.Resampling.BILINEAR, fillcolor=0)
    text = np.asarray(mask, np.float32) / 255.0
    alpha = neighbours(text, rng) if crowded else text
    moved = _map_x(forward, np.asarray(boundaries, float) * kx, (y0 + bh / 2) * ky)
    return Placed(alpha, text, moved, s * image.height)


def _scale(largest: float, tight: bool, crowded: bool, rng: random.Random) -> float:
    """How much to scale the drawing: a tight crop nearly fills the line; otherwise from
    ``SMALLEST_TEXT`` to ``largest``, mostly large; smaller still with neighbours above and below."""
    if tight:
        return rng.uniform(0.85, 1.0) * largest
    s = largest * (SMALLEST_TEXT + (1 - SMALLEST_TEXT) * math.sqrt(rng.random()))
    if crowded:
        s = min(s, rng.uniform(0.65, 0.85) * largest)
    return min(largest, max(s, SMALLEST_TEXT))


def neighbours(alpha: np.ndarray, rng: random.Random) -> np.ndarray:
    """Cut-off strokes of the lines above and below in the margins, as a line segmenter leaves them.

    The neighbours are this line's own ink, tiled and shifted: its lowest rows (subscripts) above
    the text, its highest rows (vowels, signs) below, never closer than a pixel to the text and
    never more than 30 % of its height, so they read as cut-off strokes rather than letters.
    """
    rows = np.flatnonzero(alpha.max(1) > 0)
    if not rows.size:
        return alpha
    line = np.tile(alpha[rows[0]:rows[-1] + 1], (1, 2))
    line = np.roll(line, rng.randrange(line.shape[1]), axis=1)[:, :alpha.shape[1]]
    out = alpha.copy()
    most = max(1, int(0.3 * line.shape[0]))
    above, below = min(most, rows[0] - 1), min(most, alpha.shape[0] - rows[-1] - 2)
    if above >= 1 and rng.random() < 0.6:
        k = rng.randint(1, above)
        out[:k] = np.maximum(out[:k], line[-k:])
    if below >= 1 and rng.random() < 0.6:
        k = rng.randint(1, below)
        out[-k:] = np.maximum(out[-k:], line[:k])
    return out


def _box(a: np.ndarray, crop: bool, tight: bool) -> tuple[int, int, int, int]:
    """Ink columns × the line's rows (or the ink rows when tight); the whole image without ``crop``.

    Edges cut at the ink get 2 blank pixels, room for the spread of a shrinking filter; the line's
    rows already have the renderer's padding.
    """
    h, w = a.shape
    cols = np.flatnonzero(a.max(0)) if crop else ()
    if not len(cols):
        return 0, 0, w, h
    if not tight:
        return int(cols[0]) - 2, 0, int(cols[-1]) + 3, h
    rows = np.flatnonzero(a.max(1))
    return int(cols[0]) - 2, int(rows[0]) - 2, int(cols[-1]) + 3, int(rows[-1]) + 3


def _linear(bw: float, bh: float, rng: random.Random, on: Draw) -> np.ndarray:
    """Rotation × slant × horizontal stretch; the angle is bounded so a long line is not shrunk much."""
    limit = min(_MAX_DEGREES, math.degrees(math.asin(min(1.0, 0.2 * bh / bw))))
    t = math.radians(rng.uniform(-limit, limit)) if on("rotate") else 0.0
    slant = rng.uniform(-0.2, 0.2) if on("slant") else 0.0
    stretch = rng.uniform(0.85, 1.15) if on("stretch") else 1.0
    c, s = math.cos(t), math.sin(t)
    return np.array([[c * stretch, c * slant - s], [s * stretch, s * slant + c]])


def _margin(h: int, rng: random.Random) -> float:
    """Tight (a pixel to a tenth of the height) or loose (up to the height)."""
    return 1 + (rng.uniform(0, 0.1) if rng.random() < 0.5 else rng.uniform(0.1, 1.0)) * h


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3×3 projective map taking four points onto four others.

    Pillow applies such a map but does not compute one; OpenCV would, at the price of a large
    dependency for eight linear equations.
    """
    (x, y), (u, v), one, zero = src.T, dst.T, np.ones(4), np.zeros(4)
    a = np.empty((8, 8))
    a[0::2] = np.stack([x, y, one, zero, zero, zero, -u * x, -u * y], 1)
    a[1::2] = np.stack([zero, zero, zero, x, y, one, -v * x, -v * y], 1)
    return np.append(np.linalg.solve(a, dst.ravel()), 1.0).reshape(3, 3)


def _map_x(m: np.ndarray, xs: np.ndarray, y: float) -> list[float]:
    """Where the map takes the points (x, y) across, for boundaries drawn at the line's mid-height."""
    u, _, w = m @ np.stack([xs, np.full_like(xs, y), np.ones_like(xs)])
    return (u / w).tolist()


def page(alpha: np.ndarray, rng: random.Random, nprng: np.random.Generator, on: Draw) -> tuple[np.ndarray, float]:
    """The source image (grey 0-255, float) and its ink-paper contrast: levels, uneven paper, faded ink.

    Paper variation is counted in units of the ink-paper contrast and kept within 30 % of it,
    so the background never comes closer to the ink than 70 % of the contrast.
    """
    h, w = alpha.shape
    contrast = 0.7 - 0.4 * on.severity["low_contrast"] if on("low_contrast") else rng.uniform(0.7, 1.0)
    if on("light_on_dark"):
        paper = rng.uniform(0.0, min(0.55, 1 - contrast))
        ink, darker = paper + contrast, -1.0
    else:
        paper = rng.uniform(max(0.45, contrast), 1.0)
        ink, darker = paper - contrast, 1.0
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :] / h  # both in line heights
    field = np.zeros((h, w), np.float32)  # paper's departure from its level, in contrasts towards the ink
    if on("gradient"):
        phi = rng.uniform(0, 2 * math.pi)
        field += rng.uniform(-0.25, 0.25) * (math.cos(phi) * x / max(1.0, w / h) + math.sin(phi) * y)
    if on("shadow"):
        edge, soft = rng.uniform(0, w / h), rng.uniform(0.05, 0.5)
        side = 1 if rng.random() < 0.5 else -1
        field += darker * rng.uniform(0.1, 0.3) * (0.5 - 0.5 * np.tanh(side * (edge - x) / (2 * soft)))
    if on("texture"):
        field += rng.uniform(0.05, 0.15) * _smooth_noise(h, w, rng.uniform(0.1, 0.5), nprng)
    if on("stains"):
        for _ in range(rng.randint(1, 3)):
            cx, cy, r = rng.uniform(0, w / h), rng.uniform(0, 1), rng.uniform(0.1, 0.8)
            d = ((x - cx) ** 2 + (y - cy) ** 2 * rng.uniform(0.5, 2)) / (r * r)
            field += darker * rng.uniform(0.1, 0.3) * np.clip(1.2 - d, 0, 1)
    if on("faded"):
        alpha = alpha * (1 - (0.1 + 0.35 * on.severity["faded"]) * (1 + _smooth_noise(h, w, 1.0, nprng)) / 2)
    background = paper + (ink - paper) * np.clip(field, -0.3, 0.3)
    return (background + alpha * (ink - background)) * 255, contrast * 255


def _smooth_noise(h: int, w: int, cell: float, nprng: np.random.Generator) -> np.ndarray:
    """Values in about [-1, 1] varying over ``cell`` line heights: blotchy paper, uneven ink."""
    gh, gw = max(2, round(1 / cell) + 1), max(2, round(w / h / cell) + 1)
    grid = Image.fromarray(nprng.uniform(-1, 1, (gh, gw)).astype(np.float32), "F")
    return np.asarray(grid.resize((w, h), Image.Resampling.BICUBIC))


def degrade(sheet: np.ndarray, line_px: float, contrast: float, rng: random.Random, nprng: np.random.Generator,
            on: Draw) -> np.ndarray:
    """Optics, sensor and file: blur, low resolution, noise and JPEG (blur and resolution scaled to
    the text's size), to the 8-bit image a file would hold."""
    level = on.severity.get
    smallest = max(0.4, 20 / line_px)  # a 20 px line box, 7 px consonants: below that stacks are a smudge
    blur, low = on("blur"), on("low_resolution") and smallest < 0.8
    if blur or low:
        image = Image.fromarray(np.clip(sheet, 0, 255).astype(np.uint8))
        if blur:
            image = image.filter(ImageFilter.GaussianBlur(0.3 + level("blur") * max(0.0, 0.02 * line_px - 0.05)))
        if low:
            r, size = 0.8 - level("low_resolution") * (0.8 - smallest), image.size
            up = Image.Resampling.NEAREST if rng.random() < 0.3 else Image.Resampling.BILINEAR
            image = image.resize((max(1, round(size[0] * r)), max(1, round(size[1] * r))), Image.Resampling.BILINEAR)
            image = image.resize(size, up)
        sheet = np.asarray(image, np.float32)
    if on("noise"):
        sheet = sheet + nprng.standard_normal(sheet.shape, np.float32) * (0.02 + 0.05 * level("noise")) * contrast
    a = np.clip(sheet, 0, 255).astype(np.uint8)
    if on("jpeg"):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=round(85 - 55 * level("jpeg")))
        a = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    return a
