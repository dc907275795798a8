"""Distributed training throughput: samples/s of 1 rank against N ranks, through the real trainer
loop under torchrun (the launcher a worker uses), and the ratio.

Each rank trains `--batch-size` samples per optimizer step on its own slice of the data, so N ranks
train N times the samples per step; perfect scaling is a ratio of N. On CPU the ranks are gloo
processes sharing the machine's cores, each with the same intra-op threads in every measurement
(cores / the largest rank count; OMP_NUM_THREADS overrides), so the ratio is the ranks' and not
a thread count's (on a busy machine a rank with more threads than free cores is several times
slower: docs/TRAINING.md, Throughput); on CUDA one rank per GPU with NCCL, and the GPU count is
printed.

    python bench/ddp_throughput.py [--ranks 1 --ranks 2] [--steps 20] [--warmup 3] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> None:
    """One rank: train `warmup + steps` optimizer steps; the leader prints the timing as JSON."""
    import torch

    from core.protocol import CheckpointReport, Directive, EpochReport
    from core.recipe import Recipe, apply_patch, load_recipe
    from worker.distributed import RankController, join
    from worker.trainer import Trainer, resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    group = join(300, device)
    total = args.warmup + args.steps
    go = Directive(action="continue", stage_index=0)

    class Stopwatch:
        def __init__(self) -> None:
            self.times: list[float] = []

        def poll(self, step: int, epoch: int) -> Directive:
            return go.model_copy(update={"action": "stop"}) if step >= total else go

        def log_step(self, step: int, scalars: dict[str, float]) -> None:
            self.times.append(time.perf_counter())

        def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None: ...
        def report_epoch(self, summary: EpochReport) -> Directive: return go
        def report_checkpoint(self, saved: CheckpointReport) -> list[str]: return []
        def alert(self, kind: str, detail: dict[str, Any]) -> None: ...
        def finish(self, status: str, error: str | None = None) -> None: ...

    base = Recipe()
    stage = base.curriculum.stages[0]
    recipe = load_recipe(apply_patch(base.model_dump(mode="json"), {
        "training": {"steps_per_epoch": total + 1, "max_epochs": 1, "batch_size": args.batch_size,
                     "device": device.type},
        "data": {"workers": 0},
        "curriculum": {"stages": [stage.model_dump(mode="json")]},
        "checkpoint": {"compression": "none"},
    }))
    watch = Stopwatch() if group.is_leader else None
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(recipe, RankController(watch, group), out, device=device, group=group)
        trainer.run()
    if watch is not None:
        timed = watch.times[args.warmup:]
        seconds = timed[-1] - timed[0]
        samples = (len(timed) - 1) * args.batch_size * group.world
        print("RESULT " + json.dumps({"ranks": group.world, "steps": len(timed) - 1, "seconds": round(seconds, 3),
                                      "samples_per_s": round(samples / seconds, 1),
                                      "step_ms": round(1000 * seconds / (len(timed) - 1), 1),
                                      "device": device.type}), flush=True)


def measure(ranks: int, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               "--nproc-per-node", str(ranks), __file__, "--child", "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--device", args.device]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{ranks} rank(s) failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, action="append", help="rank counts to measure (default 1 and 2)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="samples per rank per optimizer step")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    import torch

    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}")
    else:
        print(f"CPU only: {len(os.sched_getaffinity(0))} cores available")
    counts = args.ranks or [1, 2]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, cores // max(counts)))
    print(f"{threads} intra-op thread(s) per rank")
    results = [measure(n, threads, args) for n in counts]
    for r in results:
        print(json.dumps(r))
    base = results[0]
    for r in results[1:]:
        print(f"{r['ranks']} ranks / {base['ranks']}: samples/s ratio {r['samples_per_s'] / base['samples_per_s']:.2f} "
              f"(ideal {r['ranks'] / base['ranks']:.0f})")


if __name__ == "__main__":
    main()
