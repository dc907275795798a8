"""Scoring line readers on a labelled folder: what `sala eval` computes.

A folder is the real-data format (`worker.data.real`): images plus ``labels.jsonl``. Labels and
readings both go through `worker.khmer.normalize` (whitespace collapsed) before scoring, so a
reader is not charged for spelling the same picture in another code point order. Rates are
corpus-level, summed errors over summed reference length, as OCR results are reported:

- ``cer``: edit distance over code points;
- ``cluster_cer``: edit distance over clusters (`worker.khmer.segment`), one unit per written
  cluster, so a wrong subscript or vowel costs one error however many code points it spans;
- ``line_accuracy``: share of lines read exactly;
- ``ms_per_line``: mean time to read one line (each line timed on its own).

Labels may carry more keys than ``image`` and ``text``; string values of `GROUP_KEYS` (such as the
``font`` and ``set`` that `sala data bench` writes) get the same scores per value.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from worker.data.real import LABELS, DataReport, scan_folder
from worker.khmer import normalize, segment
from worker.metrics import edit_distance

GROUP_KEYS = ("set", "source", "font")
TESSERACT_LANG = "khm"


class EvaluationError(RuntimeError):
    """A folder or reader that cannot be evaluated, with what to do about it."""


@dataclass(frozen=True)
class Line:
    image: Path
    text: str
    groups: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    text: str
    seconds: float


@dataclass
class Scores:
    lines: int = 0
    exact: int = 0
    char_errors: int = 0
    chars: int = 0
    cluster_errors: int = 0
    clusters: int = 0
    seconds: float = 0.0

    def add(self, truth: str, read: Reading) -> None:
        text = normalize(read.text)
        self.lines += 1
        self.exact += text == truth
        self.char_errors += edit_distance(text, truth)
        self.chars += len(truth)
        truth_clusters = segment(truth)
        self.cluster_errors += edit_distance(segment(text), truth_clusters)
        self.clusters += len(truth_clusters)
        self.seconds += read.seconds

    def summary(self) -> dict[str, float | int]:
        return {"lines": self.lines, "cer": _rate(self.char_errors, self.chars),
                "cluster_cer": _rate(self.cluster_errors, self.clusters),
                "line_accuracy": self.exact / self.lines if self.lines else 0.0,
                "ms_per_line": 1000 * self.seconds / self.lines if self.lines else 0.0} | asdict(self)


def _rate(errors: int, total: int) -> float:
    return errors / total if total else float(errors > 0)


def load_lines(folder: str | Path, *, skip_bad: bool = False, limit: int | None = None) -> tuple[list[Line], DataReport]:
    """The folder's good rows with their group keys; bad rows are an error unless `skip_bad`."""
    report = scan_folder(folder)
    if not report.rows or (report.bad and not skip_bad):
        hint = "" if not report.rows else "\n(--skip-bad scores the good rows only)"
        raise EvaluationError(f"{report}{hint}")
    raw = (Path(folder) / LABELS).read_text(encoding="utf-8", errors="replace").splitlines()
    lines = []
    for row in report.rows[:limit]:
        extra = json.loads(raw[row.line - 1])
        groups = {k: extra[k] for k in GROUP_KEYS if isinstance(extra.get(k), str)}
        lines.append(Line(row.image, row.text, groups))
    return lines, report


def score(lines: Sequence[Line], readings: Sequence[Reading]) -> dict[str, object]:
    """Scores over all lines and per value of every group key the labels carry."""
    overall, groups = Scores(), {}
    for line, read in zip(lines, readings, strict=True):
        overall.add(line.text, read)
        for key, value in line.groups.items():
            groups.setdefault(key, {}).setdefault(value, Scores()).add(line.text, read)
    return {"overall": overall.summary(),
            "by": {k: {v: s.summary() for v, s in sorted(g.items())} for k, g in sorted(groups.items())}}


def timed(read: Callable[[Path], str]) -> Callable[[Path], Reading]:
    def run(path: Path) -> Reading:
        start = time.perf_counter()
        text = read(path)
        return Reading(text, time.perf_counter() - start)
    return run


def read_all(read: Callable[[Path], Reading], paths: Iterable[Path], *, jobs: int = 1,
             on_line: Callable[[], None] = lambda: None) -> list[Reading]:
    """Readings in the order of `paths`; `jobs` > 1 reads that many at once (for readers in subprocesses)."""
    def one(path: Path) -> Reading:
        reading = read(path)
        on_line()
        return reading
    if jobs <= 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, paths))


def check_tesseract(lang: str = TESSERACT_LANG) -> None:
    """An error that says what to install when `tesseract` or its language data is missing."""
    if shutil.which("tesseract") is None:
        raise EvaluationError("tesseract is not installed (Debian/Ubuntu: apt-get install tesseract-ocr "
                              f"tesseract-ocr-{lang}; macOS: brew install tesseract tesseract-lang)")
    listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=60)
    if lang not in listed.stdout.split():
        raise EvaluationError(f"tesseract has no '{lang}' language data (Debian/Ubuntu: apt-get install "
                              f"tesseract-ocr-{lang}); it has: {' '.join(listed.stdout.split()[1:])}")


def tesseract(path: Path, lang: str = TESSERACT_LANG) -> str:
    """One line image read by Tesseract as a single text line (``--psm 7``), on one thread."""
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    done = subprocess.run(["tesseract", str(path), "stdout", "-l", lang, "--psm", "7"],
                          capture_output=True, text=True, env=env, timeout=120)
    if done.returncode:
        raise EvaluationError(f"tesseract failed on {path}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()
