import json

from typer.testing import CliRunner

from worker.data.cli import app
from worker.data.real import scan_folder

runner = CliRunner()


def test_preview_writes_a_dataset_that_stats_reads_back(tmp_path):
    result = runner.invoke(app, ["preview", "--stage", "3", "--count", "6", "--out", str(tmp_path), "--seed", "2",
                                 "--height", "24"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and all((tmp_path / r["image"]).is_file() for r in rows)
    report = scan_folder(tmp_path)
    assert len(report.rows) == 6 and not report.bad and {r.level for r in report.rows} == {3}
    result = runner.invoke(app, ["stats", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "6 good rows, 0 bad" in result.output and "complex" in result.output
    assert "0 of 6 labels changed by normalisation" in result.output  # generated labels are canonical
    rows[0]["text"] = "\u200b" + rows[0]["text"]  # an invisible space the picture cannot show
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["stats", str(tmp_path)])
    assert "1 of 6 labels changed by normalisation" in result.output, result.output


def test_preview_takes_content_names_and_refuses_unknown_stages(tmp_path):
    assert runner.invoke(app, ["preview", "--stage", "words", "--count", "2", "--out", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["preview", "--stage", "9", "--count", "2", "--out", str(tmp_path)]).exit_code != 0


def test_preview_sheet_shows_every_sample_and_the_files_load_back_as_the_samples(tmp_path):
    """The previews are dark-on-light files; the real-image loader reads each back as the tensor trained on."""
    import numpy as np
    from PIL import Image

    from core.recipe import Recipe
    from worker.data import DataSources, build_train_dataset
    from worker.data.real import load_line_image

    assert runner.invoke(app, ["preview", "--stage", "5", "--count", "8", "--out", str(tmp_path), "--seed", "3",
                               "--height", "24", "--augmentation", "1"]).exit_code == 0
    images = [Image.open(tmp_path / f"lines_{i:05d}.png") for i in range(8)]
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert sheet.size >= sum(i.width * i.height for i in images) and (sheet < 100).sum() > 0
    default = Recipe()
    sources = DataSources.create(fonts=default.data.synthetic.fonts, val_fonts=default.validation.fonts, image_height=24)
    dataset = build_train_dataset(sources, "lines", epoch=0, seed=3, length=8, augmentation=1.0)
    for i in range(8):
        loaded = np.asarray(load_line_image(tmp_path / f"lines_{i:05d}.png", 24, 32), np.float32) / 255
        assert np.abs(loaded - dataset[i]["image"][0].numpy()).mean() < 0.03
