import itertools
import random
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from khmerspell.khnormal import khnormal

from worker.data.render import Renderer
from worker.data.text import CONTENTS, TextSource
from worker.khmer import CHARACTERS, normalize, segment

COENG, RO, TA, SA, II = "\u17d2", "\u179a", "\u178f", "\u179f", "\u17b8"
MUUSIKATOAN, TRIISAP = "\u17c9", "\u17ca"
KHM_TRAINEDDATA = Path("/usr/share/tesseract-ocr/5/tessdata/khm.traineddata")
KHMER_OS = Path("/usr/share/fonts/truetype/khmeros/KhmerOS.ttf")


@pytest.mark.parametrize(
    "typed, canonical",
    [
        # COENG-RO typed before another COENG goes last: ស្ត្រី
        (SA + COENG + RO + COENG + TA + II, SA + COENG + TA + COENG + RO + II),
        ("\u1780\u17d2\u179a\u17d2\u179f\u17d2\u1780", "\u1780\u17d2\u179f\u17d2\u1780\u17d2\u179a"),
        # a vowel typed before the subscript goes after it: ក្កិ
        ("\u1780\u17b7\u17d2\u1780", "\u1780\u17d2\u1780\u17b7"),
        # a sign before the vowel goes after it: ាំ
        ("\u1780\u17c6\u17b6", "\u1780\u17b6\u17c6"),
        # a register shifter after the vowel goes before it: ប៊ី
        ("\u1794\u17b8\u17ca", "\u1794\u17ca\u17b8"),
        # invisible characters, deprecated letters, whitespace
        ("ខ្ញុំ\u200bទៅ\u200c", "ខ្ញុំទៅ"),
        ("\u17a3", "\u17a2"),
        ("\u17a4", "\u17a2\u17b6"),
        ("\u17d8", "\u17d4\u179b\u17d4"),
        ("  ក \t\n ខ  ", "ក ខ"),
        ("\u1780\u17b4", "\u1780"),
        # a COENG with no letter after it is dropped
        ("\u1780\u17d2", "\u1780"),
        ("\u1780\u17d2\u17d2\u1781", "\u1780\u17d2\u1781"),
        ("", ""),
    ],
)
def test_tricky_cases(typed, canonical):
    assert normalize(typed) == canonical


@pytest.mark.parametrize(
    "typed, canonical",
    [
        # a split vowel typed in parts, in either order, is the one vowel: កើ, កោ
        ("\u1780\u17b8\u17c1", "\u1780\u17be"),
        ("\u1780\u17c1\u17b8", "\u1780\u17be"),
        ("\u1780\u17b6\u17c1", "\u1780\u17c4"),
        ("\u1780\u17c1\u17b6", "\u1780\u17c4"),
        ("\u1780\u17c1\u17bc\u17b8", "\u1780\u17be\u17bc"),  # a below vowel between: ើ + ូ
        # several vowels: pre, below, above, post; ើ+ា is written ោ+ី
        ("\u1780\u17b6\u17bb", "\u1780\u17bb\u17b6"),
        ("\u1780\u17be\u17b6", "\u1780\u17c4\u17b8"),
        ("\u1780\u17b6\u17b8\u17c1", "\u1780\u17c4\u17b8"),
        # subscript DA is written subscript TA; DA as a base stays: ប្តី, ដី
        ("\u1794\u17d2\u178a\u17b8", "\u1794\u17d2\u178f\u17b8"),
        ("\u178a\u17b8", "\u178a\u17b8"),
        # signs before final signs: ំះ
        ("\u1780\u17c7\u17c6", "\u1780\u17c6\u17c7"),
        ("\u1780\u17bb\u17c7\u17c6", "\u1780\u17bb\u17c6\u17c7"),
        ("\u1796\u17c7\u17b6", "\u1796\u17b6\u17c7"),
        # ROBAT right after the base, before subscripts and vowels
        ("\u1780\u17d2\u1780\u17cc", "\u1780\u17cc\u17d2\u1780"),
        ("\u1798\u17b6\u17cc", "\u1798\u17cc\u17b6"),
        ("ធម\u17cc", "ធម\u17cc"),
    ],
)
def test_khnormal_order_and_rewrites(typed, canonical):
    assert normalize(typed) == canonical


@pytest.mark.parametrize(
    "typed, canonical",
    [
        # ុ before an above vowel is how a shifter looks there: the base's shifter
        ("\u1794\u17bb\u17b8", "\u1794" + MUUSIKATOAN + "\u17b8"),  # ប៉ី
        ("\u179f\u17bb\u17b8", "\u179f" + TRIISAP + "\u17b8"),  # ស៊ី
        ("\u1798\u17bb\u17ba", "\u1798" + MUUSIKATOAN + "\u17ba"),  # ម៉ឺ
        ("\u1789\u17bb\u17b7", "\u1789" + MUUSIKATOAN + "\u17b7"),  # ញ៉ិ
        ("\u1780\u17bb\u17b7", "\u1780" + TRIISAP + "\u17b7"),
        ("នំប\u17bb\u17d0ង", "នំប" + MUUSIKATOAN + "\u17d0ង"),  # នំប៉័ង, as typed in Tesseract's word list
        ("\u1798\u17bb\u17b6\u17c6", "\u1798" + MUUSIKATOAN + "\u17b6\u17c6"),  # before ាំ
        ("\u179f\u17c1\u17bb\u17b8", "\u179f" + TRIISAP + "\u17be"),  # េ ុ ី: ស៊ើ
        ("\u179f\u17c2\u17bb\u17b8", "\u179f" + TRIISAP + "\u17c2\u17b8"),  # the shifter goes before the pre vowel
        ("\u179f\u17d2\u179a\u17bb\u17b8", "\u179f\u17d2\u179a" + TRIISAP + "\u17b8"),  # heads with subscripts
        ("\u1794\u17d2\u179a\u17bb\u17b8", "\u1794\u17d2\u179a" + MUUSIKATOAN + "\u17b8"),
        ("\u1798\u17d2\u179a\u17bb\u17b8", "\u1798\u17d2\u179a" + MUUSIKATOAN + "\u17b8"),
        ("\u179f\u17ca\u200c\u17b8", "\u179f\u17ca\u17b8"),  # a "held up" shifter (ZWNJ) gets the usual label
        # left alone: ុ with no above vowel, and shifters as typed (ប៊ី and ប៉ី look different)
        ("\u1780\u17bb", "\u1780\u17bb"),
        ("\u1780\u17bb\u17b6", "\u1780\u17bb\u17b6"),
        ("\u1794\u17ca\u17b8", "\u1794\u17ca\u17b8"),
        ("\u1794\u17c9\u17b8", "\u1794\u17c9\u17b8"),
    ],
)
def test_u_before_an_above_vowel_is_a_register_shifter(typed, canonical):
    assert normalize(typed) == canonical


@pytest.mark.parametrize(
    "typed, canonical",
    [
        ("\u17e1\u17e5\u17d2\u17d4", "\u19ef"),  # 15 over KHAN: 15th waxing day
        ("\u17e5\u17d2\u17d4", "\u19e5"),
        ("\u17e0\u17d2\u17d4", "\u19e0"),
        ("ថ្ងៃ\u17e8\u17d2\u17d4", "ថ្ងៃ\u19e8"),
        ("\u17d4\u17d2\u17e1\u17e0", "\u19fa"),  # KHAN over 10: 10th waning day
        ("\u17d4\u17d2\u17d4", "\u19f0"),
        # not a day: the numbers stay, the stray COENG goes
        ("\u17e2\u17e5\u17d2\u17d4", "\u17e2\u17e5\u17d4"),
        ("\u17e1\u17e6\u17d2\u17d4", "\u17e1\u17e6\u17d4"),
        ("\u17d4\u17d2\u17e2\u17e5", "\u17d4\u17e2\u17e5"),
    ],
)
def test_old_style_lunar_dates_become_lunar_date_symbols(typed, canonical):
    assert normalize(typed) == canonical


@pytest.mark.parametrize("text", ["\u17c6\u17b6", "\u17e1\u17c6\u17b6", " \u17b8\u17c1", "a\u17bb\u17b8"])
def test_marks_without_a_khmer_base_keep_their_order(text):
    assert normalize(text) == text.strip()


def test_untouched_text_is_kept():
    assert normalize("ប្រទេសកម្ពុជា ១២៣ (ABC)") == "ប្រទេសកម្ពុជា ១២៣ (ABC)"


def test_idempotent_on_random_garbage():
    rng = random.Random(0)
    alphabet = CHARACTERS + "\u200b\u200c\u200d\u17b4\u17a3\u17d8\n"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        once = normalize(text)
        assert normalize(once) == once, [hex(ord(c)) for c in text]


def test_idempotent_on_mark_soup():
    """Few bases, many marks, invisibles and lunar-date parts: every rule gets to meet every other."""
    rng = random.Random(9)
    marks = [chr(c) for c in range(0x17B4, 0x17DE)] + list("\u200b\u200c\u200d \n\u17e1\u17e5\u17d4\u17a3\u17d8")
    for _ in range(20_000):
        picks = [rng.choice("កបសមញអងឡ") if rng.random() < 0.25 else rng.choice(marks) for _ in range(rng.randint(1, 10))]
        text = "".join(picks)
        once = normalize(text)
        assert normalize(once) == once, [hex(ord(c)) for c in text]


# --- the oracle: SIL's khnormal as packaged in khmerspell --------------------------------------

UPPER = "(?=[\u17b7-\u17ba\u17be\u17bf\u17dd\u17d0]|\u17b6\u17c6)"
MARKS = [chr(c) for c in range(0x17B6, 0x17D2)] + ["\u17d3", "\u17dd", COENG] + [COENG + c for c in "\u178a\u179a\u1794"]


INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u17b4\u17b5"))
DEPRECATED = {0x17A3: "\u17a2", 0x17A4: "\u17a2\u17b6", 0x17D8: "\u17d4\u179b\u17d4"}


def _our_extras(text: str) -> str:
    """The steps normalize adds before khnormal, from the docs: invisibles, NFC, deprecated, lone COENG, spaces."""
    text = unicodedata.normalize("NFC", text.translate(INVISIBLE)).translate(DEPRECATED)
    return re.sub(r"\s+", " ", re.sub(COENG + "(?![\u1780-\u17b3])", "", text)).strip()


def _settled(text: str) -> str:
    """khnormal applied until its output stops changing (it is not idempotent)."""
    for _ in range(5):
        text, before = khnormal(text), text
        if text == before:
            return text
    raise AssertionError(f"khnormal does not settle on {text!r}")


def _without_shifters(text: str) -> str:
    return text.translate(dict.fromkeys(map(ord, "\u17bb\u17c9\u17ca"))).replace("\u17be\u17b6", "\u17c4\u17b8")


def _documented_difference(typed: str, ours: str, theirs: str) -> str | None:
    """The documented difference behind ours != theirs; for the shifter and COENG-RO kinds, checked to be all of it."""
    if re.search("[\u17d4\u17e0-\u17e9]\u17d2[\u17d4\u17e0-\u17e9]", typed):
        return "lunar date (never fires in khnormal)"
    if re.search("\u17bb" + UPPER, theirs) and _without_shifters(ours) == _without_shifters(theirs):
        return "ុ before an above vowel (khnormal's shifter rule never fires)"
    ro_first = COENG + RO + COENG + "(?!" + RO + ")"
    if re.search(ro_first, theirs) and not re.search(ro_first, ours) and Counter(ours) == Counter(theirs):
        return "COENG-RO before another subscript (khnormal swaps one pair)"
    return None


def _compare(samples) -> tuple[Counter, list]:
    tally, unexplained = Counter(), []
    for typed in samples:
        ours = normalize(typed)
        assert normalize(ours) == ours, f"not idempotent on {typed!r}"
        theirs = khnormal(_our_extras(typed))
        if ours == theirs:
            kind = "agree"
        elif ours == (settled := _settled(theirs)):
            kind = "agree once khnormal settles"
        elif not (kind := _documented_difference(typed, ours, settled)):
            unexplained.append((typed, ours, settled))
        tally[kind or "UNEXPLAINED"] += 1
    return tally, unexplained


def _shuffled(text: str, rng: random.Random) -> str:
    """The text with each cluster's code points in a random order: text typed in the wrong order."""
    return "".join("".join(rng.sample(c, len(c))) for c in segment(text))


def _soup(rng: random.Random, source: TextSource) -> str:
    """A generated cluster with 1–4 more marks, all in random order: several vowels, signs, subscripts."""
    cluster = source.sample("complex", rng)
    marks = list(cluster[1:]) + [m for _ in range(rng.randint(1, 4)) for m in rng.choice(MARKS)]
    return cluster[0] + "".join(rng.sample(marks, len(marks)))


def _generated(n: int, seed: int) -> list[str]:
    source, rng = TextSource(), random.Random(seed)
    texts = [source.sample(content, rng) for content in CONTENTS for _ in range(n)]
    shuffled = [_shuffled(t, rng) for t in texts for _ in range(2)]
    return texts + shuffled + [_soup(rng, source) for _ in range(len(texts))]


def _report(name: str, tally: Counter) -> None:
    print(f"\n{name}: {sum(tally.values())} samples")
    for kind, count in tally.most_common():
        print(f"  {count:6d}  {kind}")


def test_agrees_with_khnormal_on_generated_and_shuffled_text():
    tally, unexplained = _compare(_generated(n=800, seed=0))
    _report("generated, shuffled and mark soup", tally)
    assert not unexplained, unexplained[:10]
    assert tally["agree"] > 0.9 * sum(tally.values())


@pytest.fixture(scope="module")
def tesseract_words(tmp_path_factory) -> list[str]:
    """Debian tesseract-ocr-khm's word list (Apache-2.0), about 33,500 words, read with Tesseract's own tools."""
    if not (KHM_TRAINEDDATA.is_file() and shutil.which("combine_tessdata") and shutil.which("dawg2wordlist")):
        pytest.skip("tesseract-ocr-khm and its training tools are not installed")
    folder = tmp_path_factory.mktemp("khm")
    subprocess.run(["combine_tessdata", "-u", str(KHM_TRAINEDDATA), f"{folder}/khm."], check=True, capture_output=True)
    subprocess.run(["dawg2wordlist", f"{folder}/khm.lstm-unicharset", f"{folder}/khm.lstm-word-dawg",
                    f"{folder}/words.txt"], check=True, capture_output=True)
    return (folder / "words.txt").read_text(encoding="utf-8").split()


def test_agrees_with_khnormal_on_tesseracts_word_list(tesseract_words):
    rng = random.Random(2)
    tally, unexplained = _compare(tesseract_words)
    _report("Tesseract khm word list", tally)
    assert len(tesseract_words) > 30_000 and not unexplained, unexplained[:10]
    tally, unexplained = _compare(_shuffled(w, rng) for w in rng.sample(tesseract_words, 10_000))
    _report("Tesseract khm words, shuffled", tally)
    assert not unexplained, unexplained[:10]


# --- pictures: spellings merged because they look the same --------------------------------------


def _pixels(renderer: Renderer, text: str) -> np.ndarray:
    return np.asarray(renderer.render(text, random.Random(0)).image)


VISUALLY_IDENTICAL = [
    ("\u1780\u17c1\u17b8", "\u1780\u17be"),  # split vowel typed as េ + ី
    ("\u1780\u17c1\u17b6", "\u1780\u17c4"),
    ("\u179f\u17c1\u17bb\u17b8", "\u179f\u17ca\u17be"),  # េ ុ ី and ស៊ើ
    ("\u1780\u17d2\u1780\u17cc\u17b6", "\u1780\u17cc\u17d2\u1780\u17b6"),  # robat after the subscript
    ("ស្រ្តី", "ស្ត្រី"),  # COENG-RO first
    ("\u1780\u17b7\u17d2\u1780", "\u1780\u17d2\u1780\u17b7"),  # vowel before the subscript
    ("\u1798\u17c9\u17d2\u179a", "\u1798\u17d2\u179a\u17c9"),  # shifter before the subscript
    ("\u1780\u17b4\u200b\u1781\u200d\u1782\u2060\u1783\u00ad\u1784\ufeff\u17b5", "\u1780\u1781\u1782\u1783\u1784"),
    ("\u17a3", "\u17a2"),
] + [
    (base + "\u17bb" + vowel, base + shifter + vowel)  # ុ + above vowel on the bases that take a shifter
    for shifter, bases in ((MUUSIKATOAN, "ងញនមយរលវប"), (TRIISAP, "សហអ"))
    for base in bases
    for vowel in ("\u17b7", "\u17b8", "\u17b9", "\u17ba", "\u17b6\u17c6", "\u17d0")
]


def test_visually_identical_spellings_get_one_label():
    noto = Renderer(fonts=["noto-sans-khmer"], height=48)
    for typed, canonical in VISUALLY_IDENTICAL:
        assert normalize(typed) == normalize(canonical), (typed, canonical)
        assert np.array_equal(_pixels(noto, typed), _pixels(noto, canonical)), (typed, canonical)


@pytest.mark.skipif(not KHMER_OS.is_file(), reason="fonts-khmeros is not installed")
def test_coeng_da_and_ta_and_sign_order_draw_alike_in_khmer_os():
    font = Renderer(fonts=[KHMER_OS], height=48)
    for typed, canonical in [("ប\u17d2\u178a\u17b8", "ប\u17d2\u178f\u17b8"), ("\u1780\u17c6\u17b6", "\u1780\u17b6\u17c6")]:
        assert normalize(typed) == normalize(canonical)
        assert np.array_equal(_pixels(font, typed), _pixels(font, canonical)), typed


def _signs_sorted(text: str) -> str:
    return re.sub("[\u17c6\u17cb\u17cd-\u17d1\u17d3\u17dd]+", lambda m: "".join(sorted(m[0])), text)


def test_one_picture_one_label_over_every_typing_order():
    """Every order of a cluster's code points, drawn: no picture gets two labels except two signs in either order.

    khnormal keeps the typed order of signs (a second sign is not Khmer spelling), and some orders of two
    above signs happen to draw alike in Noto Sans Khmer.
    """
    noto, source, rng = Renderer(fonts=["noto-sans-khmer"], height=48), TextSource(), random.Random(1)
    clusters = {source.sample("complex", rng) for _ in range(60)} | {_soup(rng, source)[:5] for _ in range(60)}
    for cluster in clusters:
        labels: dict[bytes, set[str]] = {}
        for order in set(itertools.permutations(cluster[1:])):
            text = cluster[0] + "".join(order)
            labels.setdefault(_pixels(noto, text).tobytes(), set()).add(normalize(text))
        for same_picture in labels.values():
            assert len({_signs_sorted(label) for label in same_picture}) == 1, same_picture
