"""The one canonical normalisation of every label: one picture, one label.

The same visible Khmer can be typed as several code point sequences; a CTC
target must have exactly one. The Khmer part follows SIL's khnormal, the
reference normaliser of the Khmer character specification
(github.com/sillsdev/khmer-character-specification, ``python/scripts/khnormal``),
whose aim is that "two strings that would have rendered the same are output as
the same string". It is written here, not imported, because the published
script (also packaged as ``khmerspell``, our test oracle) has rules that never
fire and outputs that change when normalised again (see "Where we differ").
``normalize`` applies, in order:

1. Invisible characters are removed: ZERO WIDTH SPACE/NON-JOINER/JOINER,
   WORD JOINER, BOM, SOFT HYPHEN, and the inherent vowels U+17B4/U+17B5.
2. Unicode NFC (after step 1, so that no removal can undo its mark order).
3. Deprecated characters are replaced by their recommended spellings:
   U+17A3 → U+17A2; U+17A4 → U+17A2 U+17B6; U+17D8 → U+17D4 U+179B U+17D4.
4. Old-style lunar dates become lunar date symbols: a day 0–15 in Khmer digits
   then COENG KHAN → U+19E0–U+19EF; KHAN COENG then a day → U+19F0–U+19FF;
   KHAN COENG KHAN → U+19F0.
5. A COENG not followed by a consonant or independent vowel is removed (so is
   the first of two COENGs).
6. Every whitespace run becomes one ASCII space; leading/trailing space is
   stripped.
7. Each syllable (a cluster, see `worker.khmer.clusters`, whose base is a Khmer
   consonant or independent vowel) is stably sorted by khnormal's categories:
   base, ROBAT, subscripts (COENG + letter, in typed order, COENG-RO after the
   others), register shifter, vowels (pre ើ ឿ ៀ េ ែ ៃ ោ ៅ, below ុ ូ ួ, above
   ិ ី ឹ ឺ, post ា), signs (ំ ់ ៍ ៎ ៏ ័ ៑ ៓ ៝), final signs (ះ ៈ). Subscript DA
   is written subscript TA (one glyph in Khmer OS; a stroke end apart in Noto).
8. Inside the sorted syllable: a split vowel typed in two parts becomes the
   one vowel (េ+ី → ើ, េ+ា → ោ, also with a below vowel between); ុ before an
   above vowel (ិ ី ឹ ឺ ើ ឿ ៝, ាំ or ័), or after ើ, is how a register shifter
   looks there, so it becomes the shifter the head takes, placed after the
   head: TRIISAP ៊ when the head has a consonant outside the muusikatoan class
   (ង ញ ណ ន ម យ រ ល វ ឝ ឡ, the independent vowels) and no BA ប, else
   MUUSIKATOAN ៉; last, ើ+ា becomes ោ+ី.

Marks with no Khmer base (at the start, after a digit, a space or a Latin
letter) keep their typed order, as in khnormal: shapers draw them as a broken
cluster (with a dotted circle) in that order, so reordering would not match the
picture.

Where we differ from khnormal, deliberately:

- Steps 1–3, 5 and 6 are ours: a label holds only what a picture can show, and
  the alphabet has no invisible characters. So ZWNJ after a shifter
  (khnormal's "held up" shifter, drawn above an above vowel instead of lowered)
  is dropped, and that rare form gets the label of the usual one; ZWJ (final
  coengs of Middle Khmer) likewise. khnormal keeps a lone COENG; fonts draw it
  as a stray mark and a label with one is a typo.
- Step 4 never fires in khnormal: it runs inside a syllable, which never holds
  a digit or KHAN. We run it on the text, on whole numbers only (khnormal's
  pattern would read ២៥ COENG ។ as day 5).
- The ុ → shifter rule never fires in the published script (its patterns are
  written for verbose mode, but ``re.X`` is passed as ``re.sub``'s count). We
  apply it anchored at the syllable's base (khnormal's search can take a
  subscript for the base, and its strong-head alternation drops the optional
  pre vowel), we count ញ in the muusikatoan class (khnormal's class lists
  U+1780 where U+1789 is meant), and we place the shifter after the head,
  where a second pass would sort it.
- Rewrites are ordered so that one pass is final, which khnormal is not:
  ើ+ា → ោ+ី runs after the split vowels (khnormal turns េ+ី+ា into ើ+ា and
  rewrites that only on a second pass); ើ+ុ is left in sorted order when the
  syllable already has a shifter (khnormal swaps it to ុ+ើ to feed its
  shifter rule whether or not that applies, and with ើ+ា → ោ+ី the result
  can change again); every COENG-RO goes after the other subscripts
  (khnormal swaps one pair).

The function is total (never raises) and idempotent: ``normalize(normalize(t))
== normalize(t)``. Characters outside the charset are kept; callers that need
a clean label check `charset.in_charset`.
"""

from __future__ import annotations

import re
import unicodedata
from enum import IntEnum

from worker.khmer.clusters import COENG, is_letter, segment

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u17b4\u17b5"))
_DEPRECATED = {ord("\u17a3"): "\u17a2", ord("\u17a4"): "\u17a2\u17b6", ord("\u17d8"): "\u17d4\u179b\u17d4"}
_WHITESPACE = re.compile(r"\s+")
_LETTER = "\u1780-\u17b3"
_LONE_COENG = re.compile(f"\u17d2(?![{_LETTER}])")
_UNITS = re.compile("\u17d2?.", re.S)  # after lone COENGs are gone, each COENG starts a subscript
_WAXING = re.compile("(?<![\u17e0-\u17e9])(\u17e1?[\u17e0-\u17e9])\u17d2\u17d4")
_WANING = re.compile("\u17d4\u17d2(\u17e1?[\u17e0-\u17e9](?![\u17e0-\u17e9])|\u17d4)")


class _Cat(IntEnum):
    """khnormal's categories in their canonical order; COENG-RO split off to go last."""

    BASE = 0
    ROBAT = 1
    COENG = 2
    COENG_RO = 3
    SHIFT = 4
    VPRE = 5
    VB = 6
    VA = 7
    VPOST = 8
    MS = 9
    MF = 10


_CATEGORY = {ch: cat for cat, chars in {
    _Cat.ROBAT: "\u17cc", _Cat.SHIFT: "\u17c9\u17ca", _Cat.VPRE: "\u17be\u17bf\u17c0\u17c1\u17c2\u17c3\u17c4\u17c5",
    _Cat.VB: "\u17bb\u17bc\u17bd", _Cat.VA: "\u17b7\u17b8\u17b9\u17ba", _Cat.VPOST: "\u17b6",
    _Cat.MS: "\u17c6\u17cb\u17cd\u17ce\u17cf\u17d0\u17d1\u17d3\u17dd", _Cat.MF: "\u17c7\u17c8",
}.items() for ch in chars}
_SPLIT_VOWELS = [
    (re.compile("\u17c1([\u17bb-\u17bd]?)\u17b8"), "\u17be\\1"),  # េ(ុ)ី → ើ(ុ)
    (re.compile("\u17c1([\u17bb-\u17bd]?)\u17b6"), "\u17c4\\1"),  # េ(ុ)ា → ោ(ុ)
]
# head (base, robat, subscripts), then ុ after an optional pre vowel and before an above vowel, or after ើ
_LOWERED_SHIFTER = re.compile(
    f"^([{_LETTER}]\u17cc?(?:\u17d2[{_LETTER}])*)"
    "(?:([\u17c1-\u17c5]?)\u17bb(?=[\u17b7-\u17ba\u17be\u17bf\u17dd\u17d0]|\u17b6\u17c6)|(\u17be)\u17bb)"
)
_MUUSIKATOAN_CLASS = set("ងញណនមយរលវឝឡ") | {chr(c) for c in range(0x17A5, 0x17B4)}
_BA = "\u1794"


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text.translate(_INVISIBLE)).translate(_DEPRECATED)
    text = _WANING.sub(lambda m: _lunar(m, 0x19F0), _WAXING.sub(lambda m: _lunar(m, 0x19E0), text))
    text = _WHITESPACE.sub(" ", _LONE_COENG.sub("", text)).strip()
    return "".join(_syllable(c) if len(c) > 1 and is_letter(c[0]) else c for c in segment(text))


def _lunar(m: re.Match[str], base: int) -> str:
    day = 0 if m[1] == "\u17d4" else int(m[1])  # int() reads Khmer digits
    return chr(base + day) if day <= 15 else m[0]


def _syllable(cluster: str) -> str:
    units = [u.replace("\u17d2\u178a", "\u17d2\u178f") for u in _UNITS.findall(cluster)]
    text = "".join(sorted(units, key=_category))
    for pattern, replacement in _SPLIT_VOWELS:
        text = pattern.sub(replacement, text)
    return _LOWERED_SHIFTER.sub(_shifter, text).replace("\u17be\u17b6", "\u17c4\u17b8")  # ើា → ោី


def _category(unit: str) -> _Cat:
    if unit[0] == COENG:
        return _Cat.COENG_RO if unit == "\u17d2\u179a" else _Cat.COENG
    return _CATEGORY.get(unit, _Cat.BASE)


def _shifter(m: re.Match[str]) -> str:
    """The register shifter the head takes, at its sorted place after the head."""
    letters = m[1].replace("\u17cc", "").replace(COENG, "")
    triisap = _BA not in letters and any(ch not in _MUUSIKATOAN_CLASS for ch in letters)
    return m[1] + ("\u17ca" if triisap else "\u17c9") + (m[2] or m[3] or "")
