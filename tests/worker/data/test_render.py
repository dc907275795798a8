import random
from pathlib import Path

import numpy as np
import pytest

from worker.data.render import Renderer, resolve_fonts
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


def test_missing_fonts_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a bundled font"):
        resolve_fonts([tmp_path / "nope.ttf"])


def test_fonts_without_khmer_are_skipped():
    latin = Path("/usr/share/fonts/truetype/dejavu")
    if not latin.is_dir():
        pytest.skip("no Debian DejaVu fonts here")
    with pytest.raises(ValueError, match="draws Khmer"):
        resolve_fonts([latin])
    assert len(resolve_fonts([latin, "noto-sans-khmer"])) == 1
