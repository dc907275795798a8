"""`sala export`: a checkpoint's line reader as ONNX or TorchScript, verified before it is kept.

`LineReader` is the checkpoint's network as `sala predict` runs it, written so a trace keeps
every shape dynamic: the frame count is a tensor (a Python int would be frozen at the traced
width) and the BiLSTM always takes its ragged path (the same numbers as the flip it uses for
full-length lines; a graph cannot branch on the lengths it is given). The export then reads
sample lines with both the checkpoint and the exported file (`worker.exported`) and refuses the
file unless every log-probability agrees within TOLERANCE and every decoded line is the same.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from worker.export_cli import FORMATS
from worker.exported import EXTRA_FILE, FORMAT, METADATA_KEY, ExportedReader
TOLERANCE = 1e-4  # float32 kernels of onnxruntime and torch differ by ~1e-6 on these log-probs
OPSET = 17


class LineReader(nn.Module):
    """images `[B, 1, H, W]`, widths `[B]` → log_probs `[B, T, C]`, lengths `[B]`, confidence `[B]`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.eval()  # the exporter restores the mode it found, recursively: it must find eval

    def forward(self, images: Tensor, widths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        backbone, heads = self.model.backbone, self.model.heads
        seq = backbone.sequence(images)
        frames = torch.ones_like(widths) * seq.shape[0]
        lengths = torch.minimum(torch.clamp(widths // backbone.downsample, min=1), frames)
        features = backbone.bilstm(seq, lengths, ragged=True)
        logits = heads["character_recognition"](features)
        log_probs = logits.log_softmax(-1)
        if "confidence_prediction" in heads:
            confidence = torch.sigmoid(heads["confidence_prediction"](features, logits, lengths))
        else:  # the best path's mean probability per frame, as `sala predict` reports it
            valid = torch.arange(seq.shape[0])[:, None] < lengths[None, :]
            confidence = torch.exp((log_probs.max(-1).values * valid).sum(0) / lengths)
        return log_probs.transpose(0, 1), lengths, confidence


@dataclass(frozen=True)
class Check:
    lines: int
    max_diff: float
    confidence_diff: float
    same_text: int

    @property
    def ok(self) -> bool:
        return self.max_diff <= TOLERANCE and self.confidence_diff <= TOLERANCE and self.same_text == self.lines


def export(checkpoint: str, fmt: str, out: Path, *, images: list[Path] | None = None, samples: int = 8) -> Check:
    """Write the reader to `out` and check it on sample lines; a file that fails the check is removed."""
    from worker.trainer import load_model

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if (out.suffix == ".onnx") != (fmt == "onnx"):
        raise ValueError(f"name an ONNX file *.onnx and only an ONNX file (got {out.name} for {fmt})")
    model, state = load_model(checkpoint)
    reader = LineReader(model)
    batch, widths = sample_batch(state, images, samples)
    meta = json.dumps(metadata(state, checkpoint))
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes: the check below is what counts
        (_onnx if fmt == "onnx" else _torchscript)(reader, batch, widths, out, meta)
    check = verify(model, ExportedReader(out), batch, widths)
    if not check.ok:
        out.unlink()
    return check


def sample_batch(state: dict, images: list[Path] | None, count: int) -> tuple[Tensor, Tensor]:
    """Line images given, else the validation lines of the checkpoint's last stage: different
    widths in one padded batch, so padding and each line's own length are checked too."""
    from core.recipe import Recipe
    from worker.data.dataset import build_val_dataset, collate
    from worker.data.real import load_line_image
    from worker.trainer import data_sources

    height = state["model_config"]["image_height"]
    if images:
        arrays = [np.asarray(load_line_image(p, height, 32), np.float32) / 255.0 for p in images]
        widths = torch.tensor([a.shape[1] for a in arrays])
        batch = torch.zeros(len(arrays), 1, height, int(widths.max()))
        for i, a in enumerate(arrays):
            batch[i, 0, :, : a.shape[1]] = torch.from_numpy(a)
        return batch, widths
    recipe = Recipe.model_validate(state["recipe"])
    lines = build_val_dataset(data_sources(recipe), recipe.curriculum.stages[-1].content, seed=recipe.seed,
                              samples=count)
    batch = collate([lines[i] for i in range(count)])
    return batch["images"], batch["widths"]


def metadata(state: dict, checkpoint: str) -> dict:
    from worker.khmer.charset import INDEX_TO_CHAR, NUM_CLASSES

    config = state["model_config"]
    return {"format": FORMAT, "image_height": config["image_height"], "tasks": config["tasks"],
            "charset_version": config["charset"], "charset": [INDEX_TO_CHAR.get(i, "") for i in range(NUM_CLASSES)],
            "checkpoint": str(checkpoint), "epoch": state.get("position", {}).get("epoch")}


def verify(model: nn.Module, exported: ExportedReader, images: Tensor, widths: Tensor) -> Check:
    """The exported file against the checkpoint's own network, run as `sala predict` runs it."""
    with torch.no_grad():
        out = model(images, widths)
    ref = out["logits"].log_softmax(-1).transpose(0, 1).numpy()
    lengths = out["lengths"].numpy()
    log_probs, got_lengths, confidence = exported.run(images.numpy(), widths.numpy())
    if "confidence_logit" in out:
        ref_conf = torch.sigmoid(out["confidence_logit"]).numpy()
    else:
        ref_conf = np.array([np.exp(ref[b, :n].max(-1).sum() / n) for b, n in enumerate(lengths)])
    diffs = [np.abs(log_probs[b, :n] - ref[b, :n]).max() for b, n in enumerate(lengths)]
    same = sum(exported.decode(log_probs[b], n) == exported.decode(ref[b], n) for b, n in enumerate(lengths))
    if not np.array_equal(got_lengths, lengths):
        same = 0
    return Check(lines=len(lengths), max_diff=float(max(diffs)), confidence_diff=float(np.abs(confidence - ref_conf).max()),
                 same_text=int(same))


def _onnx(reader: LineReader, images: Tensor, widths: Tensor, out: Path, meta: str) -> None:
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx and onnxruntime packages: pip install 'sala[export]'") from None
    torch.onnx.export(reader, (images, widths), str(out), dynamo=False, opset_version=OPSET,
                      input_names=["images", "widths"], output_names=["log_probs", "lengths", "confidence"],
                      dynamic_axes={"images": {0: "batch", 3: "width"}, "widths": {0: "batch"},
                                    "log_probs": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
                                    "confidence": {0: "batch"}})
    graph = onnx.load(str(out))
    graph.metadata_props.add(key=METADATA_KEY, value=meta)
    onnx.save(graph, str(out))


def _torchscript(reader: LineReader, images: Tensor, widths: Tensor, out: Path, meta: str) -> None:
    traced = torch.jit.trace(reader, (images, widths), check_trace=False)
    torch.jit.save(traced, str(out), _extra_files={EXTRA_FILE: meta})
