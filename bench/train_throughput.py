"""Training throughput (samples/s) of the default recipe, through the real trainer loop.

CPU always; CUDA with AMP (the recipe's `precision: auto`, bf16 or fp16) when a GPU is present.
Each measurement trains a bounded number of optimizer steps on one stage content (line width,
and so cost, grows from characters to lines), skips the first few as warm-up, and prints figures.

    python bench/train_throughput.py [--steps 20] [--warmup 3] [--content characters --content lines]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import torch

from core.protocol import CheckpointReport, Directive, EpochReport
from core.recipe import Recipe, apply_patch, load_recipe
from worker.trainer import Trainer

CONTINUE = Directive(action="continue", stage_index=0)


class Stopwatch:
    """A controller that times optimizer steps and stops the run after ``steps``."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.times: list[float] = []
        self.samples: list[float] = []

    def poll(self, step: int, epoch: int) -> Directive:
        return CONTINUE.model_copy(update={"action": "stop"}) if step >= self.steps else CONTINUE

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        self.times.append(time.perf_counter())
        self.samples.append(scalars["samples_per_s"])

    def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None: ...
    def report_epoch(self, summary: EpochReport) -> Directive: return CONTINUE
    def report_checkpoint(self, saved: CheckpointReport) -> list[str]: return []
    def alert(self, kind: str, detail: dict[str, Any]) -> None: ...
    def finish(self, status: str, error: str | None = None) -> None: ...


def measure(base: Recipe, content: str, device: str, steps: int, warmup: int) -> dict[str, Any]:
    stage = base.curriculum.stages[[s.content for s in base.curriculum.stages].index(content)]
    recipe = load_recipe(apply_patch(base.model_dump(mode="json"), {
        "training": {"steps_per_epoch": steps + warmup + 1, "max_epochs": 1, "device": device},
        "curriculum": {"stages": [stage.model_dump(mode="json")]},
        "checkpoint": {"compression": "none"},
    }))
    watch = Stopwatch(steps + warmup)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(recipe, watch, out)
        trainer.run()
    timed = watch.times[warmup:]
    per_step = recipe.training.batch_size * recipe.training.accumulation_steps
    seconds = timed[-1] - watch.times[warmup - 1] if warmup else timed[-1] - timed[0]
    n = len(timed) if warmup else len(timed) - 1
    return {"device": device, "precision": str(trainer.amp.dtype).removeprefix("torch."), "content": content,
            "batch_size": per_step, "steps": n, "samples_per_s": round(n * per_step / seconds, 1),
            "ms_per_step": round(1000 * seconds / n, 1), "threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in trainer.model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--content", action="append", help="stage content(s) to measure (default characters, lines)")
    parser.add_argument("--recipe", help="recipe file (default: the default recipe)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    base = load_recipe(args.recipe) if args.recipe else Recipe()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for content in args.content or ["characters", "lines"]:
            row = measure(base, content, device, args.steps, args.warmup)
            print(json.dumps(row) if args.json else
                  f"{row['device']:5} {row['precision']:9} {row['content']:12} batch {row['batch_size']:4} "
                  f"{row['samples_per_s']:8.1f} samples/s  {row['ms_per_step']:8.1f} ms/step  "
                  f"({row['parameters'] / 1e6:.2f}M params, {row['threads']} threads)")


if __name__ == "__main__":
    main()
