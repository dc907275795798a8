import json

from PIL import Image

from worker.data import DataSources, build_train_dataset, collate, scan_folder


def _write(folder, rows):
    (folder / "labels.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _image(path, text_width=60):
    image = Image.new("L", (text_width, 20), 255)
    image.paste(0, (5, 5, text_width - 5, 15))
    image.save(path)


def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path, caplog):
    _image(tmp_path / "good.png")
    _image(tmp_path / "also.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    _write(tmp_path, [
        json.dumps({"image": "good.png", "text": "ខ្ញុំ ទៅ\u200b"}, ensure_ascii=False),  # 1 ok
        json.dumps({"image": "missing.png", "text": "ក"}),  # 2 missing file
        json.dumps({"image": "broken.png", "text": "ក"}),  # 3 unreadable
        json.dumps({"image": "good.png", "text": "   "}),  # 4 empty label
        json.dumps({"image": "good.png", "text": "hello"}),  # 5 no Khmer
        "{not json",  # 6
        "",  # 7 blank lines are ignored
        json.dumps({"image": "also.png"}),  # 8 no text
        json.dumps({"image": "also.png", "text": "ក\u0e01"}),  # 9 Thai letter: outside the charset
        json.dumps({"image": "also.png", "text": "កម្ពុជា"}, ensure_ascii=False),  # 10 ok
    ])
    report = scan_folder(tmp_path)
    assert [r.line for r in report.rows] == [1, 10]
    assert report.rows[0].text == "ខ្ញុំ ទៅ" and report.rows[0].level == 5 and report.rows[1].level == 4
    assert report.normalized == 1 and "1 of 2 labels changed by normalisation" in str(report)  # the ZWSP went
    reasons = {b.line: b.reason for b in report.bad}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 8, 9]
    assert "missing" in reasons[2] and "unreadable" in reasons[3] and "empty" in reasons[4]
    assert "no Khmer" in reasons[5] and "outside the charset" in reasons[9]
    assert "line 3" in caplog.text and "line 3" in str(report)


def test_missing_labels_file_is_a_report_not_a_crash(tmp_path):
    report = scan_folder(tmp_path)
    assert not report.rows and report.bad[0].line == 0


def test_real_rows_feed_their_stage(tmp_path):
    for i in range(40):
        _image(tmp_path / f"{i}.png", 40 + i)
    _write(tmp_path, [json.dumps({"image": f"{i}.png", "text": "កម្ពុជា"}, ensure_ascii=False) for i in range(40)])
    (tmp_path / "0.png").unlink()  # vanishes after the scan: the sample falls back to synthetic
    sources = DataSources.create(folders=[tmp_path], image_height=24, val_percent=0)
    assert sources.real_rows("words", "train") and not sources.real_rows("lines", "train")
    ds = build_train_dataset(sources, "words", epoch=0, seed=0, length=32, real_share=1.0)
    batch = collate([ds[i] for i in range(32)])
    real = [i for i, s in enumerate(batch["sources"]) if s == "real"]
    assert real and all(batch["texts"][i] == "កម្ពុជា" for i in real)
    assert not batch["has_boundaries"][real].any()
    assert batch["images"][real[0], 0, :, 0].max() < 0.1  # light paper became background 0
