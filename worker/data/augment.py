"""Image augmentation: a few lines of Pillow/numpy per effect.

A sample is augmented with the stage's probability; an augmented sample gets
each effect with probability ``EFFECT_P``. Geometric effects keep all ink
inside the image (the rotation angle is bounded by the line's length) and map
the cluster boundaries with them (scale exactly; rotation and perspective move
them by at most a pixel or two, which is left as is).
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageFilter

EFFECT_P = 0.5


def augment(image: Image.Image, boundaries: list[float], rng: random.Random, nprng: np.random.Generator
            ) -> tuple[Image.Image, list[float]]:
    """Geometric and photometric effects on an "L" image, ink bright on dark."""
    if rng.random() < EFFECT_P:
        image, boundaries = scale(image, boundaries, rng)
    if rng.random() < EFFECT_P:
        image = rotate(image, rng)
    if rng.random() < EFFECT_P:
        image = perspective(image, rng)
    if rng.random() < EFFECT_P:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < EFFECT_P:
        image = contrast(image, rng)
    if rng.random() < EFFECT_P:
        image = noise(image, rng, nprng)
    if rng.random() < EFFECT_P:
        image = jpeg(image, rng)
    return image, boundaries


def scale(image: Image.Image, boundaries: list[float], rng: random.Random) -> tuple[Image.Image, list[float]]:
    """Shrink the drawing by 75–100 % and place it anywhere in the frame."""
    s = rng.uniform(0.75, 1.0)
    w, h = image.size
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    dx, dy = rng.randint(0, w - sw), rng.randint(0, h - sh)
    out = Image.new("L", image.size, 0)
    out.paste(image.resize((sw, sh), Image.Resampling.BILINEAR), (dx, dy))
    return out, [dx + b * sw / w for b in boundaries]


def rotate(image: Image.Image, rng: random.Random, max_degrees: float = 3.0, slack: float = 3.0) -> Image.Image:
    w, _ = image.size
    limit = min(max_degrees, math.degrees(math.atan(slack / (w / 2))))
    return image.rotate(rng.uniform(-limit, limit), resample=Image.Resampling.BILINEAR, fillcolor=0)


def perspective(image: Image.Image, rng: random.Random, amount: float = 0.06) -> Image.Image:
    """Move each corner by up to `amount` of the height, a little like a tilted camera."""
    w, h = image.size
    d = amount * h
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(x + rng.uniform(-d, d), y + rng.uniform(-d, d)) for x, y in src]
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(rows, float), np.array(src, float).reshape(8))
    return image.transform(image.size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR, fillcolor=0)


def contrast(image: Image.Image, rng: random.Random) -> Image.Image:
    """Fainter ink on a greyer page."""
    ink, paper = rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.3)
    lut = [round(255 * (paper + (ink - paper) * i / 255)) for i in range(256)]
    return image.point(lut)


def noise(image: Image.Image, rng: random.Random, nprng: np.random.Generator) -> Image.Image:
    a = np.asarray(image, np.float32) + nprng.normal(0, 255 * rng.uniform(0.01, 0.08), image.size[::-1])
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, rng: random.Random) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=rng.randint(20, 75))
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")
