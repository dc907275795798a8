"""Real data: a folder of line images plus ``labels.jsonl``.

Each line of ``labels.jsonl`` is ``{"image": "x.png", "text": "..."}`` with the
image path relative to the folder. Labels are normalised like every synthetic
label (the report counts the good rows whose label that changed), and each row
gets the curriculum level of its text. A bad row (not JSON, missing keys,
missing or unreadable image, empty label, label with no Khmer or with
characters outside the charset) is logged with its line number, recorded in
the `DataReport`, and skipped; scanning never raises on a row.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from worker.khmer import in_charset, level_of, normalize
from worker.khmer.charset import is_khmer

log = logging.getLogger(__name__)
LABELS = "labels.jsonl"


@dataclass(frozen=True)
class RealRow:
    image: Path
    text: str
    level: int
    line: int


@dataclass(frozen=True)
class BadRow:
    line: int
    image: str | None
    reason: str


@dataclass
class DataReport:
    folder: Path
    rows: list[RealRow] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    normalized: int = 0  # good rows whose label `normalize` changed

    def __str__(self) -> str:
        lines = [f"{self.folder}: {len(self.rows)} good rows, {len(self.bad)} bad",
                 f"  {self.normalized} of {len(self.rows)} labels changed by normalisation"]
        lines += [f"  line {b.line}: {b.reason} ({b.image})" for b in self.bad]
        return "\n".join(lines)


def scan_folder(folder: str | Path) -> DataReport:
    """Read and check every row of ``folder/labels.jsonl``; never raises for a bad row."""
    folder = Path(folder)
    report = DataReport(folder)
    labels = folder / LABELS
    if not labels.is_file():
        report.bad.append(BadRow(0, None, f"no {LABELS} in {folder}"))
    else:
        with labels.open(encoding="utf-8", errors="replace") as f:
            for number, raw in enumerate(f, start=1):
                if raw.strip():
                    _check_row(folder, number, raw, report)
    for bad in report.bad:
        log.warning("%s line %d: %s (%s); skipped", labels, bad.line, bad.reason, bad.image)
    return report


def _check_row(folder: Path, number: int, raw: str, report: DataReport) -> None:
    try:
        row = json.loads(raw)
        name, text = row["image"], row["text"]
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        report.bad.append(BadRow(number, None, 'not a JSON object with string "image" and "text"'))
        return
    label = normalize(text)
    reason = _label_problem(label) or _image_problem(folder / name)
    if reason:
        report.bad.append(BadRow(number, name, reason))
    else:
        report.normalized += label != text
        report.rows.append(RealRow(folder / name, label, level_of(label), number))


def _label_problem(text: str) -> str | None:
    if not text:
        return "empty label"
    if not any(is_khmer(ch) for ch in text):
        return "label has no Khmer"
    if not in_charset(text):
        return "label has characters outside the charset: " + "".join(sorted({c for c in text if not in_charset(c)}))
    return None


def _image_problem(path: Path) -> str | None:
    if not path.is_file():
        return "image file missing"
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # Pillow raises many types for a broken file
        return f"unreadable image: {exc.__class__.__name__}"
    return None


def is_validation(row: RealRow, percent: int) -> bool:
    """A stable split: the same rows are held out in every run."""
    return zlib.crc32(row.image.name.encode()) % 100 < percent


def load_line_image(path: Path, height: int, width_bucket: int, max_width: int = 2048) -> Image.Image:
    """Grey line image scaled to ``height``, ink bright on background 0 whichever way round the file is."""
    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:  # transparent means paper, not black
            im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
        image = Image.fromarray(ink_bright(np.asarray(im.convert("L"))))
    w, h = image.size
    width = min(max_width, max(1, round(w * height / h)))
    return pad_to_bucket(image.resize((width, height), Image.Resampling.BILINEAR), width_bucket)


def ink_bright(a: np.ndarray) -> np.ndarray:
    """Polarity and levels of a grey uint8 line image: background to 0, ink to 255.

    The background is the median of the border (a crop's edge is mostly paper). The ink is the tail
    of the histogram (1st or 99th percentile) that lies further from it: dark ink on grey paper, light
    ink on a mid-grey banner and a dark-mode screenshot all come out the same way up, where a rule on
    the border alone fails on the first two. The gain is capped (contrast 48 at least) so a nearly
    blank crop does not become all noise. Synthetic samples go through this too (`augment`).
    """
    cdf = np.cumsum(np.bincount(a.ravel(), minlength=256))
    dark, bright = (int(v) for v in np.searchsorted(cdf, [0.01 * a.size, 0.99 * a.size]))
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    background = int(np.searchsorted(np.cumsum(np.bincount(border, minlength=256)), border.size / 2))  # median
    if background - dark > bright - background:
        a, background, bright = 255 - a, 255 - background, 255 - dark
    gain = 255 / max(bright - background, 48)
    lut = np.clip((np.arange(256) - background) * gain, 0, 255).round().astype(np.uint8)
    return lut[a]


def pad_to_bucket(image: Image.Image, width_bucket: int) -> Image.Image:
    """Right-pad with background 0 to a multiple of ``width_bucket`` (at least one bucket)."""
    width = max(width_bucket, math.ceil(image.width / width_bucket) * width_bucket)
    if width == image.width:
        return image
    out = Image.new("L", (width, image.height), 0)
    out.paste(image, (0, 0))
    return out
