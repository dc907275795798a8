"""The one canonical normalisation of every label.

The same visible Khmer text can be typed in several code point orders; a CTC
target must have exactly one. ``normalize`` applies, in order:

1. Unicode NFC.
2. Invisible characters are removed: ZERO WIDTH SPACE/NON-JOINER/JOINER,
   WORD JOINER, BOM, SOFT HYPHEN, and the inherent vowels U+17B4/U+17B5.
3. Deprecated characters are replaced by their recommended spellings:
   U+17A3 → U+17A2; U+17A4 → U+17A2 U+17B6; U+17D8 → U+17D4 U+179B U+17D4.
4. Every whitespace run becomes one ASCII space; leading/trailing space is
   stripped.
5. Within each cluster (see `worker.khmer.clusters`) the parts are stably
   sorted into this order:
   base, subscripts (COENG + letter) other than COENG-RO in typed order,
   COENG-RO, register shifter (U+17C9/U+17CA), dependent vowels, signs.
   So "vowel typed before subscript" and "coeng-RO typed before another
   coeng" both come out in one order.
6. A COENG not followed by a letter draws nothing and is removed.
7. Split vowels typed as two vowels become the single vowel that looks the
   same: U+17C1 U+17B8 → U+17BE, U+17C1 U+17B6 → U+17C4.

The function is total (never raises) and idempotent: ``normalize(normalize(t))
== normalize(t)``. Characters outside the charset are kept; callers that need
a clean label check `charset.in_charset`.
"""

from __future__ import annotations

import re
import unicodedata

from worker.khmer.clusters import Part, parts, segment

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u17b4\u17b5"))
_DEPRECATED = {ord("\u17a3"): "\u17a2", ord("\u17a4"): "\u17a2\u17b6", ord("\u17d8"): "\u17d4\u179b\u17d4"}
_SPLIT_VOWELS = {"\u17c1\u17b8": "\u17be", "\u17c1\u17b6": "\u17c4"}
_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE).translate(_DEPRECATED)
    text = _WHITESPACE.sub(" ", text).strip()
    return "".join(_reorder(c) for c in segment(text))


def _reorder(cluster: str) -> str:
    if len(cluster) == 1:
        return cluster
    ordered = sorted(parts(cluster), key=lambda p: p[0])
    out = "".join(s for kind, s in ordered if kind is not Part.LONE_COENG)
    for typed, single in _SPLIT_VOWELS.items():
        out = out.replace(typed, single)
    return out
