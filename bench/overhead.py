"""Cost of being steerable: training samples/s of one recipe under a live server and worker
(`sala up`'s arrangement) divided by the same recipe under `sala train`. Goal ≥ 0.97.

    python bench/overhead.py [--epochs 4] [--steps 40] [--recipe tiny|default]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.conftest import TINY, Workers, wait_for  # noqa: E402
from tests.live import SALA, live_server, sala_env  # noqa: E402


def recipe_for(kind: str, epochs: int, steps: int) -> dict:
    base = json.loads(json.dumps(TINY)) if kind == "tiny" else {}
    base["training"] = {**base.get("training", {}), "steps_per_epoch": steps, "max_epochs": epochs}
    # hold the whole run in stage 1 so both sides train the same content
    base.setdefault("curriculum", {})["stages"] = [{"name": "only", "content": "words", "success_threshold": 1.0,
                                                    "min_epochs": epochs, "max_epochs": epochs, "patience": epochs}]
    return base


def rate(values: list[float]) -> float:
    return statistics.median(values[1:] if len(values) > 1 else values)  # first epoch warms caches


def local_rate(recipe: dict, tmp: Path) -> float:
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = Path(tempfile.mkdtemp(dir=tmp))
    subprocess.run([SALA, "train", str(path), "--out", str(out), "--no-progress"], check=True,
                   env={**sala_env(tmp), "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=3600)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return rate([json.loads(line)["samples_per_s"] for line in lines])


def served_rate(recipe: dict, tmp: Path) -> float:
    workers = Workers(tmp)
    try:
        with live_server(tmp) as server:
            rid = httpx.post(f"{server.api}/runs", json={"name": "overhead", "recipe": recipe}).json()["id"]
            workers.start(server.url, "bench")
            wait_for(lambda: httpx.get(f"{server.api}/runs/{rid}").json()["status"] == "completed", 3600,
                     "the served run", interval=1.0, diagnostics=workers.logs)
            epochs = httpx.get(f"{server.api}/runs/{rid}/epochs").json()["items"]
    finally:
        workers.stop_all()
    return rate([e["samples_per_s"] for e in epochs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--recipe", choices=("tiny", "default"), default="tiny")
    parser.add_argument("--rounds", type=int, default=2, help="alternate local/served this many times")
    args = parser.parse_args()
    recipe = recipe_for(args.recipe, args.epochs, args.steps)
    local, served = [], []
    for _ in range(args.rounds):  # alternating keeps a busy machine from favouring one side
        with tempfile.TemporaryDirectory() as tmp:
            local.append(local_rate(recipe, Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            served.append(served_rate(recipe, Path(tmp)))
    local, served = statistics.median(local), statistics.median(served)
    print(f"recipe={args.recipe} epochs={args.epochs} steps/epoch={args.steps} rounds={args.rounds} "
          "(both sides on one thread)")
    print(f"sala train: {local:.1f} samples/s   served: {served:.1f} samples/s   ratio {served / local:.3f}")


if __name__ == "__main__":
    main()
