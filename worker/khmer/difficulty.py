"""How hard a label is, and which curriculum content it belongs to.

Levels, by content name (stages are named by content, never by position):

| level | content | rule |
| --- | --- | --- |
| 1 | characters | one cluster of one code point |
| 2 | combinations | one cluster: base + one vowel or sign, no subscript |
| 3 | complex | one cluster with a subscript or two or more marks |
| 4 | words | 2–``MAX_WORD_CLUSTERS`` clusters, no space |
| 5 | lines | a space, or more clusters than that |

An empty text has level 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.khmer.clusters import COENG, segment

CONTENT_LEVELS: dict[str, int] = {"characters": 1, "combinations": 2, "complex": 3, "words": 4, "lines": 5}
LEVEL_CONTENTS: dict[int, str] = {v: k for k, v in CONTENT_LEVELS.items()}
MAX_WORD_CLUSTERS = 10


@dataclass(frozen=True)
class Difficulty:
    level: int
    clusters: int
    stacked: int  # subscripts (COENGs) in the whole text
    max_marks: int  # most code points after the base in one cluster

    @property
    def content(self) -> str | None:
        return LEVEL_CONTENTS.get(self.level)


def difficulty(text: str) -> Difficulty:
    clusters = [c for c in segment(text) if c != " "]
    stacked = text.count(COENG)
    max_marks = max((len(c) - 1 for c in clusters), default=0)
    return Difficulty(_level(text, clusters, stacked, max_marks), len(clusters), stacked, max_marks)


def _level(text: str, clusters: list[str], stacked: int, max_marks: int) -> int:
    if not clusters:
        return 0
    if " " in text or len(clusters) > MAX_WORD_CLUSTERS:
        return 5
    if len(clusters) > 1:
        return 4
    if max_marks == 0:
        return 1
    return 2 if max_marks == 1 and not stacked else 3


def level_of(text: str) -> int:
    return difficulty(text).level


def content_of(text: str) -> str | None:
    """Content name of a normalised label, None when empty."""
    return difficulty(text).content
