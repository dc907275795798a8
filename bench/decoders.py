"""Greedy against beam search, with and without language-model fusion, on labelled line folders.

Runs the checkpoint's network once per line and every decoder on its outputs, so a sweep costs
little more than its decoding; scores as `sala eval` does (`worker.evaluation`). Tune on one
held-out folder (say `sala data bench --seed 1`) and report on another (the benchmark, seed 0),
so the chosen weights are not fitted to the lines they are judged on.

    python bench/decoders.py --checkpoint CKPT DIR [DIR ...] [--alphas 0.1,0.3] [--betas 0,1] [--json]

Each configuration is `greedy`, or `beam` with lm_weight (alpha) and length_bonus (beta): the
shallow-fusion score log P_ctc + alpha log P_lm + beta |y| (`worker.decode.beam_search`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from worker.evaluation import Reading, load_lines, score
from worker.khmer import decode
from worker.train_cli import Reader


def configurations(alphas: list[float], betas: list[float]) -> list[tuple[str, float, float]]:
    return [("greedy", 0.0, 0.0)] + [("beam", a, b) for a in [0.0, *alphas] for b in betas]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", help="folders with labels.jsonl")
    parser.add_argument("--checkpoint")
    parser.add_argument("--alphas", default="0.1,0.3,0.5,1.0", help="LM weights to try (0, no LM, always runs)")
    parser.add_argument("--betas", default="0,0.5,1,2", help="length bonuses to try")
    parser.add_argument("--beam-width", type=int, default=10)
    parser.add_argument("--limit", type=int, help="first N lines of each folder")
    parser.add_argument("--json", action="store_true", help="one JSON object per folder and configuration")
    args = parser.parse_args()
    if not (args.checkpoint and args.folders):  # `make bench` runs every script bare
        print("bench/decoders.py: nothing to measure without --checkpoint CKPT and folders")
        return
    torch.set_num_threads(1)
    reader = Reader(args.checkpoint, decoder="beam", beam_width=args.beam_width)
    configs = configurations([float(a) for a in args.alphas.split(",")], [float(b) for b in args.betas.split(",")])
    if not args.json:
        print(f"{'folder':<26}{'decoder':<8}{'alpha':>6}{'beta':>6}{'CER':>8}{'cluster':>9}{'line acc':>9}{'ms/line':>9}")
    for folder in args.folders:
        lines, _ = load_lines(folder, limit=args.limit)
        outputs = [reader.forward(line.image) for line in lines]
        for name, alpha, beta in configs:
            reader.decoder, reader.lm_weight, reader.length_bonus = name, alpha, beta
            readings = []
            for out in outputs:
                start = time.perf_counter()
                sequences, _ = reader.decode(out["logits"], out["lengths"])
                readings.append(Reading(decode(sequences[0]), time.perf_counter() - start))
            s = score(lines, readings)["overall"]
            row = {"folder": folder, "decoder": name, "alpha": alpha, "beta": beta} | s
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{'/'.join(Path(folder).parts[-2:])[:25]:<26}{name:<8}{alpha:>6g}{beta:>6g}{s['cer']:>8.4f}{s['cluster_cer']:>9.4f}"
                      f"{s['line_accuracy']:>9.3f}{s['ms_per_line']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
