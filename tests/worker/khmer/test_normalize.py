import random

import pytest

from worker.khmer import CHARACTERS, normalize

COENG, RO, TA, SA, II = "\u17d2", "\u179a", "\u178f", "\u179f", "\u17b8"


@pytest.mark.parametrize(
    "typed, canonical",
    [
        # coeng-RO typed before another coeng goes last: ស្ត្រី
        (SA + COENG + RO + COENG + TA + II, SA + COENG + TA + COENG + RO + II),
        # a vowel typed before the subscript goes after it: ក្កិ
        ("\u1780\u17b7\u17d2\u1780", "\u1780\u17d2\u1780\u17b7"),
        # a sign before the vowel goes after it: ាំ
        ("\u1780\u17c6\u17b6", "\u1780\u17b6\u17c6"),
        # a register shifter after the vowel goes before it: ប៊ី
        ("\u1794\u17b8\u17ca", "\u1794\u17ca\u17b8"),
        # split vowels become the one vowel that looks the same
        ("\u1780\u17c1\u17b8", "\u1780\u17be"),
        ("\u1780\u17c1\u17b6", "\u1780\u17c4"),
        # invisible characters, deprecated letters, whitespace
        ("ខ្ញុំ\u200bទៅ\u200c", "ខ្ញុំទៅ"),
        ("\u17a3", "\u17a2"),
        ("\u17a4", "\u17a2\u17b6"),
        ("  ក \t\n ខ  ", "ក ខ"),
        ("\u1780\u17b4", "\u1780"),
        # a coeng with no letter after it draws nothing
        ("\u1780\u17d2", "\u1780"),
        ("\u1780\u17d2\u17d2\u1781", "\u1780\u17d2\u1781"),
        # marks at the very start stay (nothing to attach to) but are reordered
        ("\u17c6\u17b6", "\u17b6\u17c6"),
        ("", ""),
    ],
)
def test_tricky_cases(typed, canonical):
    assert normalize(typed) == canonical


def test_untouched_text_is_kept():
    assert normalize("ប្រទេសកម្ពុជា ១២៣ (ABC)") == "ប្រទេសកម្ពុជា ១២៣ (ABC)"


def test_idempotent_on_random_garbage():
    rng = random.Random(0)
    alphabet = CHARACTERS + "\u200b\u200c\u17b4\u17a3\u17d8\n"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        once = normalize(text)
        assert normalize(once) == once, [hex(ord(c)) for c in text]


def test_idempotent_on_shuffled_clusters():
    rng = random.Random(1)
    for _ in range(2000):
        marks = list("\u17d2\u179a\u17d2\u178f\u17b8\u17c6\u17ca")
        rng.shuffle(marks)
        once = normalize("\u179f" + "".join(marks))
        assert normalize(once) == once
