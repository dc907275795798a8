"""Which fonts a run draws with: the training faces, the held-out validation faces, what each covers.

A recogniser trained on one font learns that font: the first default recipe, trained on Noto Sans
Khmer alone, read unseen fonts at CER 0.8. So the default draws every Khmer face the machine has
(`system`, through fontconfig) plus the bundled Noto Sans Khmer, and validates on a fixed set of
designs that training never sees (`held-out`), so a stage passes only when the model reads fonts
it has not learnt. Validation designs are excluded from training whole, so a bold or a sibling
face of a validation design never leaks in.

Spec names in `data.synthetic.fonts` and `validation.fonts`:

| spec | means |
| --- | --- |
| `noto-sans-khmer` | the bundled variable Noto Sans Khmer (its weight and width axes are sampled) |
| `system` | every font `fc-list :lang=km` lists, minus the validation designs |
| `held-out` | the installed faces of `HELD_OUT_FAMILIES` |
| a path | a font file, or a folder searched recursively for .ttf/.otf/.ttc |
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import fontpkg_noto_sans_khmer
from fontTools.ttLib import TTFont, TTLibError

log = logging.getLogger(__name__)

BUNDLED = {"noto-sans-khmer": fontpkg_noto_sans_khmer.ROOT / "files" / "NotoSansKhmer[wdth,wght].ttf"}
SYSTEM = "system"
HELD_OUT = "held-out"
# Whole designs, matched on the start of the family name: "Khmer Busra" takes in Busra Bunong,
# MOE, dict, diagnostic, dot, high and xspace, which are one design with small changes.
HELD_OUT_FAMILIES = ("Khmer OS Siemreap", "Khmer Busra", "Noto Serif Khmer")
# Faces that do not draw text as it is written: "dot" draws KA as a dotted circle, "diagnostic" and
# "xspace" draw every space as a visible mark. Their images would contradict their labels.
MISDRAWN = ("Khmer Busra dot", "Khmer Busra diagnostic", "Khmer Busra xspace")
HELD_OUT_PACKAGES = "fonts-khmeros fonts-sil-mondulkiri fonts-sil-mondulkiri-extra fonts-noto-core"
SUFFIXES = {".ttf", ".otf", ".ttc"}
# Variable-font instances drawn from: a few steps per axis keep the per-instance font cache small.
AXIS_STEPS = 5
AXIS_LIMITS = {"wght": (300.0, 800.0), "wdth": (75.0, 100.0)}


@dataclass(frozen=True)
class Axis:
    tag: str
    minimum: float
    default: float
    maximum: float

    def values(self) -> tuple[float, ...]:
        """Evenly spaced values inside the axis (and inside `AXIS_LIMITS`, beyond which text is hard to read)."""
        low, high = AXIS_LIMITS.get(self.tag, (self.minimum, self.maximum))
        low, high = max(low, self.minimum), min(high, self.maximum)
        if high <= low:
            return (self.default,)
        return tuple(low + (high - low) * i / (AXIS_STEPS - 1) for i in range(AXIS_STEPS))


@dataclass(frozen=True)
class Face:
    """One font file: its names, the code points it draws, and its variation axes."""

    path: Path
    family: str
    style: str
    coverage: frozenset[int] = field(repr=False)
    axes: tuple[Axis, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()

    def covers(self, text: str) -> bool:
        return all(ord(ch) in self.coverage for ch in text if not _invisible(ch))

    def missing(self, characters: Iterable[str]) -> str:
        return "".join(ch for ch in characters if not _invisible(ch) and ord(ch) not in self.coverage)

    def is_held_out(self) -> bool:
        return self.family.startswith(HELD_OUT_FAMILIES)

    @property
    def design(self) -> str:
        """Faces of one design share a family name, or a held-out family's prefix (Busra and its variants)."""
        return next((p for p in HELD_OUT_FAMILIES if self.family.startswith(p)), self.family)


def _invisible(ch: str) -> bool:
    """Spaces and format characters (ZWSP, word joiner...) draw nothing, so no glyph is needed."""
    return ch.isspace() or unicodedata.category(ch) == "Cf"


@lru_cache(maxsize=512)
def describe(path: Path) -> Face:
    """Read a face's names, character map and axes (fontTools; Pillow exposes no cmap)."""
    logging.getLogger("fontTools").setLevel(logging.ERROR)  # it warns about harmless table quirks
    try:
        font = TTFont(str(path), fontNumber=0, lazy=True)
    except (TTLibError, OSError, AssertionError) as exc:
        raise ValueError(f"font {path} cannot be read: {exc}") from None
    names = font["name"]
    family = str(names.getBestFamilyName() or path.stem)
    style = str(names.getBestSubFamilyName() or "")
    coverage = frozenset(font.getBestCmap() or {})
    axes = tuple(Axis(a.axisTag, a.minValue, a.defaultValue, a.maxValue) for a in font["fvar"].axes) \
        if "fvar" in font else ()
    return Face(path, family, style, coverage, axes)


def draws_khmer(face: Face) -> bool:
    return all(ord(ch) in face.coverage for ch in "កខគងចរស្ា")


def system_font_files() -> list[Path]:
    """Khmer fonts fontconfig knows; none (and a warning) where fontconfig is not installed."""
    if shutil.which("fc-list") is None:
        log.warning("fc-list (fontconfig) is not installed: the 'system' fonts are empty")
        return []
    out = subprocess.run(["fc-list", ":lang=km", "-f", "%{file}\n"], capture_output=True, text=True, timeout=60)
    return sorted({Path(line) for line in out.stdout.splitlines() if Path(line).suffix.lower() in SUFFIXES})


def _files(spec: str | Path) -> list[Path]:
    if str(spec) in BUNDLED:
        return [BUNDLED[str(spec)]]
    if str(spec) in (SYSTEM, HELD_OUT):
        return system_font_files()
    path = Path(spec).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES)
    if path.is_file():
        return [path]
    raise FileNotFoundError(
        f"font {str(spec)!r} is neither a bundled font ({', '.join(BUNDLED)}), "
        f"'{SYSTEM}', '{HELD_OUT}', a file nor a folder"
    )


def resolve(specs: Sequence[str | Path], *, exclude_designs: Iterable[str] = ()) -> list[Face]:
    """Faces for the specs; Khmer-less ones skipped (one warning), duplicates and excluded designs dropped."""
    excluded = set(exclude_designs)
    faces: dict[Path, Face] = {}
    no_khmer: list[str] = []
    for spec in specs:
        for path in _files(spec):
            face = describe(path.resolve())
            if str(spec) == HELD_OUT and not face.is_held_out():
                continue
            if str(spec) == SYSTEM and face.is_held_out():
                continue
            if not draws_khmer(face):
                no_khmer.append(path.name)
                continue
            if face.family in MISDRAWN:
                log.info("font %s draws text other than it is written; not used", path)
                continue
            if face.design in excluded:
                log.info("font %s is a validation design; not used for training", path)
                continue
            faces.setdefault(face.path, face)
    if no_khmer:
        log.warning("skipped %d fonts without Khmer glyphs: %s", len(no_khmer), ", ".join(no_khmer[:8])
                    + (", ..." if len(no_khmer) > 8 else ""))
    return _drop_static_twins(list(faces.values()))


def _drop_static_twins(faces: list[Face]) -> list[Face]:
    """A variable face already draws every weight of its family, so static files of it only double its share."""
    variable = {f.family for f in faces if f.axes}
    return [f for f in faces if f.axes or f.family not in variable]


@dataclass(frozen=True)
class FontPlan:
    """What a recipe's font specs resolve to on this machine, and what that means for the run."""

    train: list[Face]
    val: list[Face]
    held_out: bool
    warnings: list[str]


def plan(train_specs: Sequence[str | Path] | None, val_specs: Sequence[str | Path] | None) -> FontPlan:
    """Resolve training and validation faces; validation designs never train.

    When no held-out face is installed the documented fallback is to validate on the training faces,
    with a warning, since stage metrics then measure fonts the model has seen.
    """
    warnings: list[str] = []
    val = resolve(val_specs) if val_specs else []
    if val_specs and not val:
        warnings.append(
            f"none of the validation fonts {list(map(str, val_specs))} is installed, so validation uses the training "
            f"fonts and measures fonts the model has seen (install {HELD_OUT_PACKAGES})"
        )
    train = resolve(train_specs or ["noto-sans-khmer"], exclude_designs={f.design for f in val})
    if not train:
        raise ValueError(f"none of the fonts {list(map(str, train_specs or []))} draws Khmer outside the validation designs")
    families = {f.family for f in train}
    if len(families) == 1:
        warnings.append(
            f"every training sample is drawn in one design ({train[0].family}): the model learns that font and reads "
            f"others far worse (trained on Noto Sans Khmer alone it read words of unseen fonts at CER 0.81, "
            f"docs/TRAINING.md); add '{SYSTEM}' to data.synthetic.fonts and install {HELD_OUT_PACKAGES}"
        )
    return FontPlan(train, val or train, bool(val), warnings)
