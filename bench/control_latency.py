"""Override → applied latency with a real worker: p50/p95 of (applied_at − created_at) for lr
overrides sent with curl-equivalent requests while a run trains.

    python bench/control_latency.py [--count 30] [--recipe default|tiny]

The default recipe's optimizer step takes most of a second on 2 CPU cores, so it bounds how soon
an override can take effect; `tiny` shows the protocol's own share."""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.conftest import TINY, Workers, wait_for  # noqa: E402
from tests.live import live_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--recipe", choices=("tiny", "default"), default="tiny")
    args = parser.parse_args()
    recipe = dict(TINY) if args.recipe == "tiny" else {}
    recipe["training"] = {**recipe.get("training", {}), "steps_per_epoch": 100_000, "max_epochs": 2}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        workers = Workers(tmp_path)
        try:
            with live_server(tmp_path) as server:
                api = server.api
                rid = httpx.post(f"{api}/runs", json={"name": "latency", "recipe": recipe}).json()["id"]
                workers.start(server.url, "bench")
                wait_for(lambda: httpx.get(f"{api}/runs/{rid}").json()["step"] > 2, 300, "training to start")
                delays = [measure(api, rid, 0.5 + (i % 5) / 10) for i in range(args.count)]
        finally:
            workers.stop_all()
    delays.sort()
    p50 = statistics.median(delays)
    p95 = delays[min(len(delays) - 1, int(round(0.95 * (len(delays) - 1))))]
    print(f"recipe={args.recipe} overrides={len(delays)}  p50={p50:.3f}s  p95={p95:.3f}s  max={delays[-1]:.3f}s")


def measure(api: str, rid: int, scale: float) -> float:
    event_id = httpx.post(f"{api}/runs/{rid}/lr", json={"scale": scale}).json()["event_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for event in httpx.get(f"{api}/runs/{rid}/events", params={"after": event_id - 1}).json()["items"]:
            if event["id"] == event_id and event["applied_at"]:
                applied = dt.datetime.fromisoformat(event["applied_at"])
                created = dt.datetime.fromisoformat(event["created_at"])
                time.sleep(0.3)
                return (applied - created).total_seconds()
        time.sleep(0.05)
    raise TimeoutError(f"event {event_id} was not applied within 60 s")


if __name__ == "__main__":
    main()
