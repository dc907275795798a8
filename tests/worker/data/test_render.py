import random
from pathlib import Path

import numpy as np
import pytest

from worker.data.render import Renderer
from worker.data.text import CONTENTS, TextSource

from .conftest import KHMEROS

FONTS = ["noto-sans-khmer"] + (sorted(str(p) for p in KHMEROS.glob("*.ttf"))[:4] if KHMEROS.is_dir() else [])


@pytest.mark.parametrize("font", FONTS)
def test_ink_stays_inside_the_image(font):
    """No ink on the outermost rows and columns: nothing was clipped, for 1,000 texts of every stage."""
    renderer, source, rng = Renderer([font], height=24), TextSource(), random.Random(11)
    for i in range(1000):
        text = source.sample(CONTENTS[i % len(CONTENTS)], rng)
        r = renderer.render(text, rng)
        a = np.asarray(r.image)
        assert a.shape[0] == 24 and a.shape[1] % renderer.width_bucket == 0
        edge = max(a[0].max(), a[-1].max(), a[:, 0].max(), a[:, -1].max())
        assert edge == 0, (text, font)
        assert a.max() > 0 or text.isspace(), text


def test_boundaries_are_ordered_and_inside_the_width():
    renderer, rng = Renderer(height=24), random.Random(0)
    r = renderer.render("ប្រទេសកម្ពុជា", rng)
    assert len(r.boundaries) == 7  # six clusters, seven edges
    assert r.boundaries == sorted(r.boundaries)
    assert 0 <= r.boundaries[0] and r.boundaries[-1] < r.image.width


def test_each_sample_is_drawn_in_a_font_that_has_all_its_characters():
    """Debian's static Noto Serif Khmer has no Latin letters or ASCII digits: such texts go to another face."""
    serif = Path("/usr/share/fonts/truetype/noto/NotoSerifKhmer-Regular.ttf")
    if not serif.is_file():
        pytest.skip("fonts-noto-core is not installed")
    renderer, rng = Renderer([serif, "noto-sans-khmer"], height=24), random.Random(3)
    fonts = {renderer.render("ASEAN ២០២៤", rng).font for _ in range(20)}
    assert fonts == {"Noto Sans Khmer Regular"}
    assert {renderer.render("ភាសាខ្មែរ", rng).font for _ in range(40)} == {"Noto Sans Khmer Regular", "Noto Serif Khmer Regular"}
    assert not Renderer([serif], height=24).can_draw("km")


def test_a_variable_font_is_drawn_at_many_weights():
    renderer, rng = Renderer(["noto-sans-khmer"], height=32), random.Random(5)
    inks = {int(np.asarray(renderer.render("ប្រទេសកម្ពុជា", rng).image, dtype=np.int64).sum() // 1000) for _ in range(30)}
    assert len(inks) >= 4  # bolder instances put more ink on the page
