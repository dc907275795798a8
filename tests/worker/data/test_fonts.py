from pathlib import Path

import pytest

from worker.data import fonts
from worker.data.fonts import HELD_OUT, SYSTEM, plan, resolve

HAVE_HELD_OUT = Path("/usr/share/fonts/truetype/khmeros/KhmerOSsiemreap.ttf").is_file()
needs_debian_fonts = pytest.mark.skipif(not HAVE_HELD_OUT, reason="Debian's Khmer fonts are not installed")


@needs_debian_fonts
def test_the_default_plan_trains_on_many_designs_and_validates_on_held_out_ones():
    p = plan(["noto-sans-khmer", SYSTEM], [HELD_OUT])
    train = {f.family for f in p.train}
    val = {f.family for f in p.val}
    assert p.held_out and not p.warnings
    assert len({f.design for f in p.train}) >= 10
    assert {"Khmer OS Siemreap", "Khmer Busra", "Khmer Busra MOE", "Noto Serif Khmer"} <= val
    assert not train & val
    assert not any(f.family.startswith(fonts.HELD_OUT_FAMILIES) for f in p.train)
    assert {f.design for f in p.val} == set(fonts.HELD_OUT_FAMILIES)
    # faces that draw text other than it is written (a dotted KA, visible spaces) are never used
    assert not any(f.family in fonts.MISDRAWN for f in p.train + p.val)


@needs_debian_fonts
def test_validation_fonts_never_train_even_when_listed_for_training():
    everything = ["/usr/share/fonts/truetype", "/usr/share/fonts/opentype", "noto-sans-khmer"]
    p = plan(everything, [HELD_OUT])
    assert not {f.path for f in p.train} & {f.path for f in p.val}
    # the whole design of a validation face is kept out: Busra Bold and Busra MOE beside Busra Regular
    p = plan(everything, ["/usr/share/fonts/opentype/mondulkiri/Busra-R.ttf"])
    assert not any(f.family.startswith("Khmer Busra") for f in p.train)
    assert any(f.family == "Khmer Mondulkiri" for f in p.train)
    assert any(f.family == "Khmer OS Siemreap" for f in p.train)


@needs_debian_fonts
def test_a_variable_face_replaces_static_files_of_its_family():
    faces = resolve(["noto-sans-khmer", "/usr/share/fonts/truetype/noto"])
    sans = [f for f in faces if f.family == "Noto Sans Khmer"]
    assert len(sans) == 1 and sans[0].axes


def test_one_training_design_is_warned_about():
    p = plan(["noto-sans-khmer"], None)
    assert not p.held_out and p.val == p.train
    assert len(p.warnings) == 1 and "one design (Noto Sans Khmer)" in p.warnings[0]


def test_missing_validation_fonts_fall_back_to_the_training_fonts_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(fonts, "system_font_files", lambda: [])
    p = plan(["noto-sans-khmer"], [HELD_OUT])
    assert not p.held_out and p.val == p.train
    assert any("validation uses the training fonts" in w for w in p.warnings)


def test_missing_fonts_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a bundled font"):
        resolve([tmp_path / "nope.ttf"])


def test_fonts_without_khmer_are_skipped():
    latin = Path("/usr/share/fonts/truetype/dejavu")
    if not latin.is_dir():
        pytest.skip("no Debian DejaVu fonts here")
    assert resolve([latin]) == []
    with pytest.raises(ValueError, match="draws Khmer"):
        plan([latin], None)
    assert len(resolve([latin, "noto-sans-khmer"])) == 1
