"""Rendered + augmented text lines per second: per core for each stage, then through DataLoader workers.

Usage: python bench/data_throughput.py [--seconds S] [--workers N] [--height H]
Runs for about (5 stages × 2 + 1) × S seconds (S = 5 by default: about a minute).
"""

from __future__ import annotations

import argparse
import os
import time

from worker.data import DataSources, build_train_dataset, make_loader
from worker.data.cli import DEFAULT_AUGMENTATION
from worker.data.text import CONTENTS


def per_core(sources: DataSources, content: str, seconds: float) -> float:
    ds = build_train_dataset(sources, content, epoch=0, seed=0, length=10**9, augmentation=DEFAULT_AUGMENTATION[content])
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        ds[n]
        n += 1
    return n / (time.perf_counter() - start)


def with_workers(sources: DataSources, content: str, workers: int, seconds: float, batch: int = 64) -> float:
    ds = build_train_dataset(sources, content, epoch=0, seed=0, length=10**7, augmentation=DEFAULT_AUGMENTATION[content])
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
    args = parser.parse_args()
    sources = DataSources.create(image_height=args.height)
    print(f"height {args.height}, default augmentation per stage, {os.cpu_count()} cores")
    print(f"{'stage':<14}{'lines/s/core':>14}{f'lines/s, {args.workers} workers':>26}")
    for content in CONTENTS:
        one = per_core(sources, content, args.seconds)
        many = with_workers(sources, content, args.workers, args.seconds)
        print(f"{content:<14}{one:>14.0f}{many:>26.0f}", flush=True)


if __name__ == "__main__":
    main()
