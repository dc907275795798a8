"""Our checkpoint against Tesseract's `khm` model on the same held-out-font validation lines.

For each curriculum stage, renders N validation lines (the trainer's own fixed validation set:
`build_val_dataset`, never augmented) in fonts given by --font (fonts the checkpoint never trained
on), writes each as a dark-on-light PNG, and reads it with

- ours: `worker.train_cli.Reader` (what `sala predict` runs), greedy or LM beam decoding, on the
  line rendered at the checkpoint's own height (32 px by default);
- Tesseract: `tesseract IMG stdout -l khm --psm 7` (one text line), on the *same text in the same
  font* rendered at --tesseract-height (96 px by default, with a white margin). Tesseract is weak on
  32 px lines, so it gets the resolution it prefers: the comparison favours it, not us.

Scores are over Unicode code points after NFC, with zero-width characters dropped and runs of
whitespace collapsed to one space (`CER`), and again with every space dropped (`CER nospace`):
Khmer writes no spaces between words, so a reader that splits or joins phrases differently is not
wrong about the letters. Sequence accuracy is exact match after the same normalisation.

    python bench/compare_tesseract.py --checkpoint CKPT --font /usr/share/fonts/truetype/khmeros/KhmerOS.ttf [-n 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from worker.data import DataSources, build_val_dataset
from worker.data.text import CONTENTS
from worker.metrics import edit_distance

ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")


def normalise(text: str, spaces: bool = True) -> str:
    text = ZERO_WIDTH.sub("", unicodedata.normalize("NFC", text))
    text = " ".join(text.split())
    return text if spaces else text.replace(" ", "")


def save_png(pixels, path: Path, margin: int = 0) -> None:
    """A sample's ``[1, H, W]`` bright-on-dark tensor as a dark-on-light greyscale PNG."""
    array = (255 - np.clip(pixels[0].numpy() * 255.0, 0, 255)).astype(np.uint8)
    image = Image.fromarray(array)
    if margin:
        image = ImageOps.expand(image, margin, fill=255)
    image.save(path)


def tesseract(path: Path, lang: str, psm: int) -> str:
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    done = subprocess.run(["tesseract", str(path), "stdout", "-l", lang, "--psm", str(psm)],
                          capture_output=True, text=True, env=env, check=False)
    return done.stdout.strip()


def score(pairs: list[tuple[str, str]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, spaces in (("cer", True), ("cer_nospace", False)):
        refs = [normalise(r, spaces) for r, _ in pairs]
        hyps = [normalise(h, spaces) for _, h in pairs]
        errors = sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True))
        out[key] = errors / max(1, sum(len(r) for r in refs))
        if spaces:
            out["seq_acc"] = sum(h == r for h, r in zip(hyps, refs, strict=True)) / max(1, len(refs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint path or URL (e.g. a sala train run's best)")
    parser.add_argument("--font", action="append", required=True, help="held-out font file(s) to render in")
    parser.add_argument("-n", "--samples", type=int, default=100, help="validation lines per stage")
    parser.add_argument("--content", action="append", choices=CONTENTS, help="stage content(s) (default: all five)")
    parser.add_argument("--seed", type=int, default=1234, help="validation seed (the recipe's seed)")
    parser.add_argument("--tesseract-height", type=int, default=96, help="pixel height of Tesseract's renders")
    parser.add_argument("--lang", default="khm", help="Tesseract language")
    parser.add_argument("--psm", type=int, default=7, help="Tesseract page segmentation mode (7: one line)")
    parser.add_argument("--decoder", default="greedy", choices=["greedy", "beam"])
    parser.add_argument("--keep", help="folder to keep the images and a readings.jsonl in")
    parser.add_argument("--json", action="store_true", help="one JSON object per stage")
    args = parser.parse_args()

    from worker.train_cli import Reader

    reader = Reader(args.checkpoint, decoder=args.decoder)
    has_tesseract = shutil.which("tesseract") is not None
    if not has_tesseract:
        print("tesseract not found: scoring our model only (apt-get install tesseract-ocr tesseract-ocr-khm)",
              file=sys.stderr)
    ours_sources = DataSources.create(val_fonts=args.font, image_height=reader.height)
    tess_sources = DataSources.create(val_fonts=args.font, image_height=args.tesseract_height)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sala-vs-tesseract-"))
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "readings.jsonl").open("w", encoding="utf-8")
    if not args.json:
        print(f"{args.samples} held-out-font lines per stage; fonts: {', '.join(Path(f).name for f in args.font)}")
        print(f"{'stage':<14}{'engine':<11}{'CER':>8}{'CER nospace':>13}{'seq acc':>9}{'ms/line':>9}")
    try:
        for content in args.content or CONTENTS:
            ours_set = build_val_dataset(ours_sources, content, seed=args.seed, samples=args.samples)
            tess_set = build_val_dataset(tess_sources, content, seed=args.seed, samples=args.samples)
            readings: dict[str, list[tuple[str, str]]] = {"sala": [], "tesseract": []}
            seconds = {"sala": 0.0, "tesseract": 0.0}
            for i in range(args.samples):
                ours, tess = ours_set[i], tess_set[i]
                assert ours["text"] == tess["text"], "the two renders must carry the same text"
                ours_png, tess_png = folder / f"{content}-{i:04d}.png", folder / f"{content}-{i:04d}-t.png"
                save_png(ours["image"], ours_png)
                start = time.perf_counter()
                text, _ = reader.read(ours_png)
                seconds["sala"] += time.perf_counter() - start
                readings["sala"].append((ours["text"], text))
                row = {"content": content, "i": i, "truth": ours["text"], "sala": text}
                if has_tesseract:
                    save_png(tess["image"], tess_png, margin=args.tesseract_height // 4)
                    start = time.perf_counter()
                    row["tesseract"] = tesseract(tess_png, args.lang, args.psm)
                    seconds["tesseract"] += time.perf_counter() - start
                    readings["tesseract"].append((ours["text"], row["tesseract"]))
                log.write(json.dumps(row, ensure_ascii=False) + "\n")
            for engine, pairs in readings.items():
                if not pairs:
                    continue
                s = score(pairs) | {"ms_per_line": 1000 * seconds[engine] / len(pairs)}
                if args.json:
                    print(json.dumps({"content": content, "engine": engine, "samples": len(pairs)} | s))
                else:
                    print(f"{content:<14}{engine:<11}{s['cer']:>8.3f}{s['cer_nospace']:>13.3f}{s['seq_acc']:>9.3f}"
                          f"{s['ms_per_line']:>9.1f}", flush=True)
    finally:
        log.close()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
