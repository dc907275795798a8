"""Is one cluster spelled the way Khmer is written?

Written apart from the synthetic generator so that a test can check the
generator against it. Rules for a cluster in canonical order:

- a lone consonant, independent vowel, digit or punctuation mark is valid;
- otherwise: consonant, 0–2 subscripts, optional register shifter, optional
  dependent vowel, at most one sign — in that order;
- an independent vowel base takes at most one subscript and one sign, no
  dependent vowel (e.g. ឱ្យ);
- ឡ (LA) has no subscript form; the two subscripts differ; COENG-RO only in
  the last place; a second subscript is RO, YO or VO;
- MUUSIKATOAN only on ង ញ ម យ រ វ ប, TRIISAP only on ស ហ អ ប, and neither with a subscript;
- each sign only with the vowels it is written with (e.g. NIKAHIT alone or with
  ា ុ; REAHMUK alone or with ា ិ ុ េ ែ ោ; TOANDAKHIAT alone or with ិ ុ; BANTOC, ROBAT … alone).
"""

from __future__ import annotations

import re

_C = "\u1780-\u17a2"
_IV = "\u17a5-\u17b3"
_V = "\u17b6-\u17c5"
_S = "\u17c6-\u17c8\u17cb-\u17d1\u17d3\u17dd"
_P = re.escape(".,:;!?()[]-/%")
_SINGLE = re.compile(f"^[{_C}{_IV}\u17e0-\u17e9\u17d4-\u17da0-9{_P}]$")
_CONSONANT_CLUSTER = re.compile(
    f"^(?P<base>[{_C}])(?P<subs>(?:\u17d2[{_C}]){{0,2}})(?P<shift>[\u17c9\u17ca]?)(?P<vowel>[{_V}]?)(?P<sign>[{_S}]?)$"
)
_VOWEL_CLUSTER = re.compile(f"^[{_IV}](?:\u17d2[{_C}])?[{_S}]?$")

_NO_SUBSCRIPT = "\u17a1"
_SECOND_SUBSCRIPTS = "\u179a\u1799\u179c"
_SHIFTER_BASES = {"\u17c9": "ងញមយរវប", "\u17ca": "សហអប"}
_SIGN_VOWELS = {
    "\u17c6": {"", "\u17b6", "\u17bb"},
    "\u17c7": {"", "\u17b6", "\u17b7", "\u17bb", "\u17c1", "\u17c2", "\u17c4"},
    "\u17cd": {"", "\u17b7", "\u17bb"},
    "\u17ce": {"", "\u17b6"},
}


def cluster_problem(cluster: str) -> str | None:
    """Why the cluster is not valid Khmer, or None when it is."""
    if _SINGLE.match(cluster) or _VOWEL_CLUSTER.match(cluster):
        return None
    m = _CONSONANT_CLUSTER.match(cluster)
    if not m:
        return "parts missing, repeated or out of order"
    subs = m["subs"][1::2]
    if _NO_SUBSCRIPT in subs:
        return "LA has no subscript form"
    if len(subs) == 2 and (subs[0] == subs[1] or subs[1] not in _SECOND_SUBSCRIPTS):
        return "second subscript must be a different RO, YO or VO"
    if "\u179a" in subs[:-1]:
        return "COENG-RO must be the last subscript"
    if m["shift"] and (subs or m["base"] not in _SHIFTER_BASES[m["shift"]]):
        return "register shifter on a base that does not take it"
    if m["sign"] and m["vowel"] not in _SIGN_VOWELS.get(m["sign"], {""}):
        return "sign not written with this vowel"
    return None


def is_valid_cluster(cluster: str) -> bool:
    return cluster_problem(cluster) is None
