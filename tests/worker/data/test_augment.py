import random

import numpy as np
import pytest
from PIL import Image

from worker.data import build_train_dataset
from worker.data.augment import EFFECTS, Draw, augment, ink_weight, place
from worker.data.dataset import FRAME_PX, ctc_width, sample_seed
from worker.data.real import load_line_image
from worker.data.render import Renderer
from worker.data.text import CONTENTS, TextSource
from worker.khmer import segment

from .conftest import KHMEROS

H = 24
GEOMETRIC = ["ink", "tight", "rotate", "slant", "stretch", "warp", "neighbours"]
PHOTOMETRIC = [name for name in EFFECTS if name not in GEOMETRIC]
FONTS = ["noto-sans-khmer"] + (sorted(str(p) for p in KHMEROS.glob("*.ttf"))[:2] if KHMEROS.is_dir() else [])


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(FONTS, height=H)


def _placed(renderer, text, seed, *names):
    rng = random.Random(seed)
    r = renderer.render(text, rng)
    image, boundaries = r.image, r.boundaries
    if "ink" in names:
        image, boundaries = ink_weight(image, boundaries, 1.0, rng)  # the heaviest bleed or erosion
    return r, place(image, boundaries, H, rng, Draw(frozenset(names), {}), min_width=ctc_width(text))


@pytest.mark.parametrize("effect", ["none", *GEOMETRIC, "all"])
def test_geometry_keeps_all_ink_inside(renderer, effect):
    """No ink of the text on the outermost rows and columns, whatever the crop, for 300 texts of every stage."""
    names = GEOMETRIC if effect == "all" else [effect]
    source, rng = TextSource(), random.Random(3)
    for i in range(300):
        text = source.sample(CONTENTS[i % len(CONTENTS)], rng)
        clean, placed = _placed(renderer, text, i, *names)
        a = placed.text
        assert a.shape[0] == H
        assert max(a[0].max(), a[-1].max(), a[:, 0].max(), a[:, -1].max()) == 0, (text, effect)
        assert a.max() > 0.15 or text.isspace(), text  # shrunk thin strokes are faint, never gone
        assert placed.boundaries == sorted(placed.boundaries)


def test_neighbours_stay_in_the_margins_and_apart_from_the_text(renderer):
    source, rng, seen = TextSource(), random.Random(4), 0
    for i in range(100):
        _, placed = _placed(renderer, source.sample("lines", rng), i, "neighbours")
        rows = np.flatnonzero(placed.text.max(1) > 0)
        extra = placed.alpha - placed.text
        assert extra[rows[0] - 1: rows[-1] + 2].max() == 0  # a blank row at least between them and the text
        seen += extra.max() > 0
    assert seen > 30


def _runs(columns: np.ndarray, gap: int = 3) -> list[tuple[int, int]]:
    """(first, last) of each group of inked columns, groups apart by at least ``gap`` blank columns."""
    runs: list[tuple[int, int]] = []
    for x in np.flatnonzero(columns):
        if runs and x - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], x)
        else:
            runs.append((x, x))
    return runs


TEXT = "ក  ខ  គ  ឃ  ង  ច"
LETTERS = [i for i, c in enumerate(segment(TEXT)) if c != " "]


@pytest.mark.parametrize("names, slack", [
    ((), 1.0), (("tight",), 1.0), (("stretch",), 1.0), (("tight", "stretch", "ink"), 1.0),
    (("rotate",), 2.0), (("slant",), 3.5), (("warp",), 2.0),  # a slanted letter leans half its height
])
def test_boundaries_follow_the_ink(renderer, names, slack):
    """Spaced letters: each letter's ink, after the crop, lies between its own two boundaries,
    give or take a source pixel (side bearings, antialiasing) and the lean of skew, slant and warp."""
    for seed in range(30):
        _, placed = _placed(renderer, TEXT, seed, *names)
        runs = _runs(placed.text.max(0) > 0.2)
        scale = placed.line_px / H  # output pixels per source pixel
        assert len(runs) == len(LETTERS), (seed, runs)
        for (first, last), i in zip(runs, LETTERS):
            lo, hi = placed.boundaries[i], placed.boundaries[i + 1]
            tolerance = slack * max(1, scale)
            assert lo - tolerance <= first and last <= hi + tolerance, (seed, lo, hi, first, last)


def _augmented(renderer, text, seed, effects):
    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    r = renderer.render(text, rng)
    image, boundaries = augment(r.image, r.boundaries, rng, nprng, effects=effects, min_width=ctc_width(text))
    return np.asarray(image, np.float32) / 255, boundaries


@pytest.mark.parametrize("effect", PHOTOMETRIC)
def test_photometric_effects_keep_the_text_where_it_was_and_bright(renderer, effect):
    """Same crop with and without the effect (it comes after the geometry): the ink is still there."""
    for seed in range(20):
        text = ["ព្រះរាជាណាចក្រកម្ពុជា", "ក្សៀ", "កម្ពុជា ១២៣"][seed % 3]
        plain, edges = _augmented(renderer, text, seed, {})
        out, same_edges = _augmented(renderer, text, seed, {effect: 1.0})
        assert out.shape == plain.shape and same_edges == edges
        ink, paper = plain > 0.5, plain < 0.05
        assert out[ink].mean() > out[paper].mean() + 0.3, (effect, seed)
        assert np.corrcoef(out.ravel(), plain.ravel())[0, 1] > 0.5, (effect, seed)


@pytest.mark.parametrize("effect", [*EFFECTS, "all"])
def test_each_effect_is_a_pure_function_of_the_rng(renderer, effect):
    effects = {name: 1.0 for name in EFFECTS} if effect == "all" else {effect: 1.0}
    for seed in range(5):
        a, ea = _augmented(renderer, "ព្រះរាជាណាចក្រ កម្ពុជា", seed, effects)
        b, eb = _augmented(renderer, "ព្រះរាជាណាចក្រ កម្ពុជា", seed, effects)
        assert np.array_equal(a, b) and ea == eb


def test_light_on_dark_comes_out_as_dark_on_light_does(renderer):
    """The synthetic source in both polarities, through the loader's normalisation: the same picture."""
    for seed in range(20):
        dark, _ = _augmented(renderer, "សួស្ដី ពិភពលោក", seed, {})
        light, _ = _augmented(renderer, "សួស្ដី ពិភពលោក", seed, {"light_on_dark": 1.0})
        assert np.abs(dark - light).max() < 0.06
        assert dark[dark > 0.5].size > 20 and np.median(dark) < 0.05  # ink bright on background 0


@pytest.mark.parametrize("paper, ink", [(235, 25), (110, 15), (25, 220), (150, 250), (90, 40)])
def test_real_images_of_either_polarity_load_alike(tmp_path, renderer, paper, ink):
    """Grey paper with dark ink and a mid-grey banner with white ink fool a rule on the border alone."""
    r = renderer.render("ប្រទេសកម្ពុជា ២០២៦", random.Random(0))
    mask = np.asarray(r.image.resize((r.image.width * 2, H * 2)), np.float32) / 255
    noise = np.random.default_rng(0).normal(0, 3, mask.shape)
    pixels = np.clip(paper + mask * (ink - paper) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "line.png")
    loaded = np.asarray(load_line_image(tmp_path / "line.png", H, 32), np.float32) / 255
    reference = np.asarray(r.image, np.float32) / 255
    assert loaded.shape == reference.shape
    assert np.abs(loaded - reference).mean() < 0.06, (paper, ink)


def test_transparent_background_is_paper(tmp_path, renderer):
    r = renderer.render("កម្ពុជា", random.Random(0))
    rgba = Image.new("RGBA", r.image.size, (0, 0, 0, 0))
    rgba.putalpha(r.image)  # black ink, transparent elsewhere: "L" alone would be black on black
    rgba.save(tmp_path / "t.png")
    loaded = np.asarray(load_line_image(tmp_path / "t.png", H, 32), np.float32) / 255
    assert np.abs(loaded - np.asarray(r.image, np.float32) / 255).mean() < 0.02


def test_augmentation_zero_is_the_clean_render_and_one_differs(sources):
    clean = build_train_dataset(sources, "words", epoch=0, seed=7, length=12, augmentation=0.0)
    augmented = build_train_dataset(sources, "words", epoch=0, seed=7, length=12, augmentation=1.0)
    for i in range(12):
        rng = random.Random(sample_seed(7, "train", 0, "words", 0, i))
        text = sources.text.sample("words", rng)
        expected = np.asarray(sources.renderer.render(text, rng).image, np.float32) / 255
        a, b = clean[i], augmented[i]
        assert a["text"] == b["text"] == text
        assert np.array_equal(a["image"][0].numpy(), expected)
        assert a["image"].shape != b["image"].shape or not np.array_equal(a["image"], b["image"])


def test_augmented_lines_keep_a_frame_per_label(sources):
    """Shrinking stops where CTC would run out of frames (or at the clean drawing's width, if that is less)."""
    augmented = build_train_dataset(sources, "lines", epoch=0, seed=2, length=60, augmentation=1.0)
    clean = build_train_dataset(sources, "lines", epoch=0, seed=2, length=60, augmentation=0.0)
    for i in range(60):
        sample, width = augmented[i], augmented[i]["image"].shape[-1]
        assert sample["text"] == clean[i]["text"] and ctc_width(sample["text"]) > FRAME_PX
        assert width >= min(ctc_width(sample["text"]), clean[i]["image"].shape[-1])
        assert width % 32 == 0 and sample["boundaries"].sum() > 0


def test_augmented_real_lines_stay_ink_bright(tmp_path):
    from worker.data import DataSources

    r = Renderer(height=H).render("សួស្ដី ពិភពលោក", random.Random(1))
    page = 255 - np.asarray(r.image.resize((r.image.width * 3, H * 3)))  # a dark-on-light scan
    Image.fromarray(page).save(tmp_path / "a.png")
    (tmp_path / "labels.jsonl").write_text('{"image": "a.png", "text": "សួស្ដី ពិភពលោក"}\n', encoding="utf-8")
    sources = DataSources.create(folders=[tmp_path], image_height=H, val_percent=0)
    ds = build_train_dataset(sources, "lines", epoch=0, seed=0, length=30, augmentation=1.0, real_share=1.0)
    for i in range(30):
        sample = ds[i]
        image = sample["image"][0].numpy()
        assert sample["source"] == "real" and image.shape[0] == H and image.shape[1] % 32 == 0
        assert np.median(image) < 0.15 and np.percentile(image, 99) > 0.6
