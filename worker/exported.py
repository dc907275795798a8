"""Reading line images with a model made by `sala export`, without Sala's training code.

The file carries what reading needs besides the network: the image height and the charset (class
index → character, 0 the CTC blank), as ONNX metadata (`sala`) or a TorchScript extra file
(`sala.json`). The network takes `images [B, 1, H, W]` (float, ink bright on dark, 0–1) and
`widths [B]` (int64 pixels before padding) and gives `log_probs [B, T, C]`, `lengths [B]` and
`confidence [B]`; a greedy CTC decode (argmax, collapse repeats, drop blanks) is the rest.
A line image is prepared as `worker.data.real.load_line_image` does: grey, inverted when its
border is light, scaled to the height, right-padded with 0 to a multiple of 32 pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT = "sala-line-reader/1"
METADATA_KEY = "sala"
EXTRA_FILE = "sala.json"
WIDTH_BUCKET = 32


class ExportedReader:
    """An exported model: ONNX (`.onnx`, through onnxruntime) or TorchScript (anything else)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if self.path.suffix == ".onnx":
            self._run, meta = _onnx(self.path)
        else:
            self._run, meta = _torchscript(self.path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a model `sala export` wrote (format {meta.get('format')!r})")
        self.meta = meta
        self.height: int = meta["image_height"]
        self.charset: list[str] = meta["charset"]

    def run(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(log_probs [B, T, C], lengths [B], confidence [B])` for a padded batch."""
        return self._run(np.ascontiguousarray(images, np.float32), np.asarray(widths, np.int64))

    def decode(self, log_probs: np.ndarray, length: int) -> str:
        """Greedy CTC over one line's own frames."""
        best = log_probs[:length].argmax(-1)
        kept = [int(c) for i, c in enumerate(best) if c != 0 and (i == 0 or c != best[i - 1])]
        return "".join(self.charset[c] for c in kept)

    def read(self, path: Path) -> tuple[str, float]:
        """One line image's text and confidence, the image prepared as `sala predict` prepares it."""
        from worker.data.real import load_line_image

        image = load_line_image(Path(path), self.height, WIDTH_BUCKET)
        pixels = np.asarray(image, np.float32)[None, None] / 255.0
        log_probs, lengths, confidence = self.run(pixels, np.array([pixels.shape[-1]]))
        return self.decode(log_probs[0], int(lengths[0])), float(confidence[0])


def _onnx(path: Path):
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("reading an ONNX model needs onnxruntime: pip install 'sala[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}"))

    def run(images, widths):
        return tuple(session.run(None, {"images": images, "widths": widths}))
    return run, meta


def _torchscript(path: Path):
    import warnings

    import torch

    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript still loads; the file is what we have
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra[EXTRA_FILE] or "{}")

    def run(images, widths):
        with torch.no_grad():
            out = module(torch.from_numpy(images), torch.from_numpy(widths))
        return tuple(t.numpy() for t in out)
    return run, meta
