"""`sala export` round trips on a tiny trained checkpoint: ONNX and TorchScript files that read
sample lines as the checkpoint does (log-probs within the stated tolerance, the same text), read
back by `sala predict --model`, and an ONNX file read with onnxruntime and numpy alone."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from core.recipe import apply_patch
from sala.cli import app
from tests.worker.tiny import TINY
from worker.data import Renderer

runner = CliRunner()
TEXTS = ("ក", "កខ", "សាលា", "ខ្មែរ")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, list[Path]]:
    """A checkpoint one short epoch old, and line images of different widths."""
    root = tmp_path_factory.mktemp("export")
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(apply_patch(TINY, {"training": {"max_epochs": 1, "steps_per_epoch": 3},
                                                        "tasks": [{"type": "character_recognition"},
                                                                  {"type": "confidence_prediction"}]})))
    done = runner.invoke(app, ["train", str(recipe), "--out", str(root / "out"), "--no-progress"])
    assert done.exit_code == 0, done.output
    images = []
    for i, text in enumerate(TEXTS):
        images.append(root / f"line{i}.png")
        Renderer(None, 32).render(text, random.Random(i)).image.save(images[-1])
    return str(sorted((root / "out" / "checkpoints").iterdir())[-1]), images


def predictions(*args: str) -> list[tuple[str, str, float]]:
    result = runner.invoke(app, ["predict", *args])
    assert result.exit_code == 0, result.output
    return [(p, t, float(c)) for p, t, c in (line.split("\t") for line in result.output.splitlines())]


@pytest.mark.parametrize("fmt, name", [("onnx", "reader.onnx"), ("torchscript", "reader.pt")])
def test_export_reads_as_the_checkpoint_does(trained, tmp_path, fmt, name):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    checkpoint, images = trained
    out = tmp_path / name
    done = runner.invoke(app, ["export", "--checkpoint", checkpoint, "--format", fmt, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "8 sample lines" in done.output and "same text 8/8" in done.output and out.is_file()
    from worker.export import TOLERANCE

    assert float(done.output.split("max |Δ log-prob| ")[1].split(",")[0]) <= TOLERANCE
    exported = predictions("--model", str(out), *map(str, images))
    original = predictions("--checkpoint", checkpoint, "--decoder", "greedy", *map(str, images))  # as exported
    assert [(p, t) for p, t, _ in exported] == [(p, t) for p, t, _ in original]
    assert all(abs(a[2] - b[2]) < 1e-3 for a, b in zip(exported, original))


def test_export_verifies_on_given_images_and_refuses_a_mismatched_name(trained, tmp_path):
    checkpoint, images = trained
    out = tmp_path / "given.pt"
    done = runner.invoke(app, ["export", "--checkpoint", checkpoint, "--format", "torchscript", "--out", str(out),
                               *map(str, images)])
    assert done.exit_code == 0 and f"{len(images)} sample lines" in done.output, done.output
    wrong = runner.invoke(app, ["export", "--checkpoint", checkpoint, "--format", "onnx", "--out", str(out)])
    assert wrong.exit_code == 2 and "*.onnx" in wrong.output


STANDALONE = r'''
import importlib.abc, json, sys
class NoSala(importlib.abc.MetaPathFinder):
    def find_spec(self, name, *_):
        if name.split(".")[0] in ("worker", "core", "server", "client", "sala", "torch"):
            raise ImportError(f"{name} must not be needed")
sys.meta_path.insert(0, NoSala())
import numpy as np, onnxruntime
from PIL import Image
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = json.loads(session.get_modelmeta().custom_metadata_map["sala"])
height = meta["image_height"]
a = np.asarray(Image.open(sys.argv[2]).convert("L"))
# levels as training saw them: border median to 0, the ink tail (1st or 99th percentile) to 255
cdf = np.cumsum(np.bincount(a.ravel(), minlength=256))
dark, bright = (int(v) for v in np.searchsorted(cdf, [0.01 * a.size, 0.99 * a.size]))
border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
background = int(np.searchsorted(np.cumsum(np.bincount(border, minlength=256)), border.size / 2))
if background - dark > bright - background:
    a, background, bright = 255 - a, 255 - background, 255 - dark
lut = np.clip((np.arange(256) - background) * (255 / max(bright - background, 48)), 0, 255).round().astype(np.uint8)
image = Image.fromarray(lut[a])
width = max(1, round(image.width * height / image.height))
image = image.resize((width, height), Image.Resampling.BILINEAR)
pixels = np.zeros((1, 1, height, max(32, -(-width // 32) * 32)), np.float32)
pixels[0, 0, :, :width] = np.asarray(image, np.float32) / 255
log_probs, lengths, confidence = session.run(None, {"images": pixels, "widths": np.array([pixels.shape[-1]])})
best = log_probs[0, : lengths[0]].argmax(-1)
print(json.dumps({"text": "".join(meta["charset"][c] for i, c in enumerate(best) if c and (i == 0 or c != best[i - 1])),
                  "frames": int(lengths[0]), "confidence": float(confidence[0])}))
'''


def test_an_onnx_export_is_read_with_onnxruntime_and_numpy_alone(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    checkpoint, images = trained
    out = tmp_path / "alone.onnx"
    assert runner.invoke(app, ["export", "--checkpoint", checkpoint, "--format", "onnx", "--out", str(out)]).exit_code == 0
    read = subprocess.run([sys.executable, "-c", STANDALONE, str(out), str(images[2])], capture_output=True, text=True,
                          timeout=60)
    assert read.returncode == 0, read.stderr
    answer = json.loads(read.stdout)
    assert answer["frames"] >= 1 and 0 <= answer["confidence"] <= 1
    from worker.exported import ExportedReader

    text, confidence = ExportedReader(out).read(images[2])
    assert text == answer["text"] and abs(confidence - answer["confidence"]) < 1e-6
