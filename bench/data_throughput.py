"""Rendered + augmented text lines per second: per core for each stage, then through DataLoader workers.

"Per core" is lines per CPU-second of this process (`time.process_time`), the figure docs/DATA.md
compares with the model's samples per CPU-second; on a shared machine wall-clock mostly measures
the neighbours. The workers column is wall-clock through a DataLoader.

Usage: python bench/data_throughput.py [--seconds S] [--workers N] [--height H] [--augmentation P]
Runs for about (5 stages × 2 + 1) × S seconds (S = 5 by default: about a minute).
"""

from __future__ import annotations

import argparse
import os
import time

from worker.data import DataSources, build_train_dataset, make_loader
from worker.data.cli import DEFAULT_AUGMENTATION
from worker.data.text import CONTENTS


def per_core(sources: DataSources, content: str, augmentation: float, seconds: float) -> float:
    ds = build_train_dataset(sources, content, epoch=0, seed=0, length=10**9, augmentation=augmentation)
    start, n = time.process_time(), 0
    while time.process_time() - start < seconds:
        ds[n]
        n += 1
    return n / (time.process_time() - start)


def with_workers(sources: DataSources, content: str, augmentation: float, workers: int, seconds: float,
                 batch: int = 64) -> float:
    ds = build_train_dataset(sources, content, epoch=0, seed=0, length=10**7, augmentation=augmentation)
    loader = iter(make_loader(ds, batch_size=batch, workers=workers))
    next(loader)  # worker start-up is not throughput
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        n += len(next(loader)["texts"])
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--augmentation", type=float, default=None, help="one probability for all stages")
    args = parser.parse_args()
    sources = DataSources.create(image_height=args.height)
    which = "default augmentation per stage" if args.augmentation is None else f"augmentation {args.augmentation}"
    print(f"height {args.height}, {which}, {os.cpu_count()} cores")
    print(f"{'stage':<14}{'lines/CPU-s':>14}{f'lines/s, {args.workers} workers':>26}")
    for content in CONTENTS:
        p = DEFAULT_AUGMENTATION[content] if args.augmentation is None else args.augmentation
        one = per_core(sources, content, p, args.seconds)
        many = with_workers(sources, content, p, args.workers, args.seconds)
        print(f"{content:<14}{one:>14.0f}{many:>26.0f}", flush=True)


if __name__ == "__main__":
    main()
