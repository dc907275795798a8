"""Fault campaign on loopback: 20 tiny runs while workers are SIGKILLed and restarted, the server is
restarted twice and once stays down longer than a lease, one checkpoint file is truncated, and
(with --backend postgresql) PostgreSQL is restarted. Bounded in time (--minutes) and count.

Faults are triggered by progress (so they land mid-campaign whatever the machine's speed), at a
random moment and on a random busy worker:
  kill      SIGKILL a worker that holds a running run, start a fresh one in its place
  server    stop the server (SIGKILL once, SIGTERM once) and start it again on the same port/db
  outage    stop the server (SIGTERM) for twice the lease, then start it again: the workers were
            only waiting, so no run they held may be re-queued for it
  postgres  stop PostgreSQL for twice the lease, then start it again (a throwaway cluster of the
            campaign's own, never the machine's): requests meanwhile get 503, no run is re-queued
  truncate  SIGKILL a worker whose run has ≥ 2 kept checkpoints, cut its newest checkpoint file in
            half, start a fresh worker: the next attempt must detect it and resume from the one before

At the end it prints, per promise, the counts: runs completed; epochs unique and gap-free; stage
transitions consistent (a chain from `start`, each epoch trained in the stage then in force, no
duplicate move, `completed` last); the corrupt checkpoint detected and the previous one used; runs
held through an outage (server or database) that kept their lease. Exit status 0 only if every
promise held.

Usage: python bench/chaos.py [--runs 20] [--workers 3] [--minutes 8] [--seed N] [--keep DIR]
                             [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live import SALA, free_port, sala_env  # noqa: E402
from tests.pg_cluster import Cluster  # noqa: E402

from tests.e2e.test_worker_e2e import epochs_long  # noqa: E402

# long enough (≈ 10 s of CPU) that faults land mid-run: 25 steps an epoch, and stage 2 takes every
# epoch left, so each run trains exactly max_epochs epochs (as tests/e2e epochs_long does)
TINY = {**epochs_long(6, steps=25), "name": "tiny-chaos"}
LEASE_S = 3.0
ENV = {"SALA_LEASE_SECONDS": str(LEASE_S), "SALA_REAPER_SECONDS": "0.5", "SALA_HEARTBEAT_SECONDS": "0.5"}
# after an outage no lease expires for a lease plus a worker's longest retry interval (server/reaper.py)
GRACE_S = LEASE_S + 5.0
TERMINAL = {"completed", "failed", "stopped"}


class Stack:
    """One `sala server` (restartable on its port and database) and N `sala worker` processes."""

    def __init__(self, tmp: Path, workers: int, database_url: str | None = None):
        self.tmp, self.port = tmp, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self.env = sala_env(tmp, {**ENV, **({"SALA_DATABASE_URL": database_url} if database_url else {})})
        self.server: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.started = 0
        self.server_log = open(tmp / "server.log", "ab")
        self.start_server()
        for _ in range(workers):
            self.start_worker()

    def start_server(self) -> None:
        self.server = subprocess.Popen([SALA, "server", "--port", str(self.port)], env=self.env, cwd=self.tmp,
                                       stdout=self.server_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def restart_server(self, sig: int, down_s: float = 1.0) -> float:
        started = time.monotonic()
        self.server.send_signal(sig)
        self.server.wait(timeout=30)
        time.sleep(down_s)
        self.start_server()
        return time.monotonic() - started

    def start_worker(self) -> str:
        self.started += 1
        name = f"w{self.started}"
        log = open(self.tmp / f"{name}.log", "wb")
        self.workers[name] = subprocess.Popen(
            [SALA, "worker", "--server", self.url, "--name", name], env={**self.env, "OMP_NUM_THREADS": "1"},
            cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)
        return name

    def kill_worker(self, name: str) -> None:
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def get(self, path: str, **params):
        for _ in range(100):  # the server may be restarting
            try:
                answer = httpx.get(self.api + path, params=params, timeout=10)
                answer.raise_for_status()
                return answer.json()
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"GET {path} kept failing")

    def close(self) -> None:
        for name in list(self.workers):
            self.kill_worker(name)
        if self.server and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=30)
        self.server_log.close()


@dataclass
class Campaign:
    faults: Counter = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    corrupt: dict | None = None  # run, corrupt checkpoint id, previous checkpoint id
    outages: list[dict] = field(default_factory=list)  # kind, runs held, from, until (UTC)
    cluster: Cluster | None = None

    def note(self, t0: float, text: str) -> None:
        line = f"[{time.monotonic() - t0:6.1f}s] {text}"
        self.log.append(line)
        print(line, flush=True)


def busy_worker(stack: Stack, rng: random.Random, *, min_checkpoints: int = 0):
    """(worker name, run id) of a live worker training a run, with enough kept checkpoints."""
    names = {w["id"]: w["name"] for w in stack.get("/workers")}
    running = [r for r in stack.get("/runs", status="running", limit=500)["items"]
               if names.get(r["worker_id"]) in stack.workers]
    rng.shuffle(running)
    for run in running:
        if min_checkpoints:
            kept = [c for c in stack.get(f"/runs/{run['id']}/checkpoints") if c["kept"]]
            if len(kept) < min_checkpoints or run["epoch"] >= run["max_epochs"] - 1:
                continue
        return names[run["worker_id"]], run["id"]
    return None


def inject(kind: str, stack: Stack, rng: random.Random, campaign: Campaign, t0: float) -> bool:
    if kind == "server":
        sig = signal.SIGKILL if campaign.faults["server"] == 0 else signal.SIGTERM
        took = stack.restart_server(sig)
        campaign.note(t0, f"server restarted ({signal.Signals(sig).name}), down {took:.1f}s")
        return True
    if kind in ("outage", "postgres"):
        return outage(kind, stack, campaign, t0)
    target = busy_worker(stack, rng, min_checkpoints=2 if kind == "truncate" else 0)
    if target is None:
        return False
    name, run_id = target
    stack.kill_worker(name)
    if kind == "truncate":
        kept = sorted((c for c in stack.get(f"/runs/{run_id}/checkpoints") if c["kept"]),
                      key=lambda c: (c["step"], c["id"]))
        newest, previous = kept[-1], kept[-2]
        path = Path(newest["uri"].removeprefix("file://"))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        campaign.corrupt = {"run": run_id, "corrupt": newest["id"], "previous": previous["id"],
                            "epoch": newest["epoch"], "previous_epoch": previous["epoch"]}
        campaign.note(t0, f"SIGKILL {name} (run {run_id}); truncated checkpoint {newest['id']} "
                          f"(epoch {newest['epoch']}) to {len(data) // 2} of {len(data)} bytes")
    else:
        campaign.note(t0, f"SIGKILL {name} while training run {run_id}")
    campaign.note(t0, f"started {stack.start_worker()}")
    return True


def outage(kind: str, stack: Stack, campaign: Campaign, t0: float) -> bool:
    """The server, or its database, away for twice the lease while workers train; the runs they
    hold then must keep their lease (checked at the end, in `outage_outcome`)."""
    names = {w["id"]: w["name"] for w in stack.get("/workers")}
    held = {r["id"] for r in stack.get("/runs", status="running", limit=500)["items"]
            if names.get(r["worker_id"]) in stack.workers}  # held by a live worker, not a killed one
    if not held:
        return False
    began = dt.datetime.now(dt.UTC)
    if kind == "outage":
        took = stack.restart_server(signal.SIGTERM, down_s=2 * LEASE_S)
    else:
        started = time.monotonic()
        campaign.cluster.stop()
        refused = httpx.get(f"{stack.api}/runs", timeout=30)
        time.sleep(2 * LEASE_S)
        campaign.cluster.start()
        took = time.monotonic() - started
        campaign.note(t0, f"while PostgreSQL was down: GET /runs → {refused.status_code} "
                          f"{refused.json().get('error', {}).get('code')}")
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=GRACE_S + 2)
    campaign.outages.append({"kind": kind, "held": held, "from": began, "until": until})
    campaign.note(t0, f"{'server' if kind == 'outage' else 'PostgreSQL'} down {took:.1f}s "
                      f"(lease {LEASE_S:g}s) while {len(held)} runs trained")
    return True


def outage_outcome(stack: Stack, outages: list[dict]) -> dict[str, object]:
    """Runs held when an outage began that lost their lease to it (a `lease_expired` event between
    the outage and the end of the grace that follows it)."""
    held = punished = 0
    for o in outages:
        for rid in o["held"]:
            held += 1
            expired = [e for e in stack.get(f"/runs/{rid}/events", limit=5000)["items"]
                       if e["kind"] == "lease_expired"
                       and o["from"] <= dt.datetime.fromisoformat(e["created_at"]) <= o["until"]]
            punished += bool(expired)
    return {"held": held, "kept_lease": held - punished}


def check_run(stack: Stack, run: dict) -> dict[str, object]:
    rid = run["id"]
    epochs = stack.get(f"/runs/{rid}/epochs", limit=5000)["items"]
    stages = stack.get(f"/runs/{rid}/stages")
    transitions = stages["transitions"]
    numbers = [e["epoch"] for e in epochs]
    gap_free = numbers == list(range(1, len(numbers) + 1)) and (not numbers or numbers[-1] == run["epoch"])
    chain = bool(transitions) and transitions[0]["reason"] == "start" and all(
        b["from_stage"] == a["to_stage"] for a, b in zip(transitions, transitions[1:], strict=False))
    moves = [(t["from_stage"], t["to_stage"], t["reason"]) for t in transitions[1:] if t["reason"] != "completed"]
    duplicate_moves = len(moves) - len(set(moves))
    in_force = []
    for e in epochs:  # the stage an epoch must have trained in: after every move made before it
        stage = transitions[0]["to_stage"]
        for t in transitions[1:]:
            if t["epoch"] < e["epoch"] and t["reason"] != "completed":
                stage = t["to_stage"]
        in_force.append(stage == e["stage"]["index"])
    completed_last = run["status"] != "completed" or transitions[-1]["reason"] == "completed"
    return {"gap_free": gap_free, "chain": chain, "duplicate_moves": duplicate_moves,
            "epochs_in_stage": all(in_force), "completed_last": completed_last,
            "attempts": run["attempt"], "epochs": len(numbers),
            "stage_mismatch": [(e["epoch"], e["stage"]["index"]) for e, ok in zip(epochs, in_force, strict=True)
                               if not ok]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--keep", type=Path, help="copy the database and logs here at the end")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite",
                        help="postgresql: a throwaway cluster of the campaign's own, restarted once")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"chaos: {args.runs} runs, {args.workers} workers, ≤ {args.minutes} min, seed {args.seed}, "
          f"{args.backend}", flush=True)

    # progress-triggered faults: (completed runs needed, kind); each fires after a random 0–4 s more
    n = args.runs
    plan = sorted([(max(1, n // 20), "kill"), (n // 5, "server"), (n // 4, "outage"), (n // 3, "truncate"),
                   (n // 2, "kill"), (2 * n // 3, "server"), (4 * n // 5, "kill")]
                  + ([(3 * n // 5, "postgres")] if args.backend == "postgresql" else []))
    tmp = Path(tempfile.mkdtemp(prefix="sala-chaos-"))
    campaign = Campaign()
    database_url = None
    if args.backend == "postgresql":
        campaign.cluster = Cluster(Cluster.binaries()).init()
        campaign.cluster.start()
        database_url = campaign.cluster.create_database("chaos")
    stack = Stack(tmp, args.workers, database_url)
    t0 = time.monotonic()
    deadline = t0 + args.minutes * 60
    try:
        for i in range(args.runs):
            httpx.post(f"{stack.api}/runs", json={"name": f"chaos-{i:02d}", "recipe": TINY, "max_restarts": 20},
                       timeout=10).raise_for_status()
        due_at: float | None = None
        while time.monotonic() < deadline:
            runs = stack.get("/runs", limit=500)["items"]
            done = sum(r["status"] in TERMINAL for r in runs)
            if done == args.runs:
                break
            if plan and done >= plan[0][0]:
                due_at = due_at or time.monotonic() + rng.uniform(0, 4)
                if time.monotonic() >= due_at and inject(plan[0][1], stack, rng, campaign, t0):
                    kind = plan.pop(0)[1]
                    campaign.faults[kind] += 1
                    # after an outage, no other fault until its grace is over, so that a lease
                    # expiring in that window can only be the outage's doing
                    due_at = time.monotonic() + GRACE_S + 2 if kind in ("outage", "postgres") else None
            for name, proc in list(stack.workers.items()):  # a worker that died by itself is a finding
                if proc.poll() is not None:
                    campaign.note(t0, f"worker {name} exited by itself ({proc.returncode}); replaced")
                    stack.workers.pop(name)
                    campaign.faults["unplanned_worker_exit"] += 1
                    stack.start_worker()
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        runs = sorted(stack.get("/runs", limit=500)["items"], key=lambda r: r["id"])
        checks = {r["id"]: check_run(stack, r) for r in runs}
        corrupt_report = corrupt_outcome(stack, campaign.corrupt)
        outage_report = outage_outcome(stack, campaign.outages)
    finally:
        stack.close()
        if campaign.cluster is not None:
            campaign.cluster.destroy()
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
        worker_logs = "\n".join(p.read_text(errors="replace") for p in tmp.glob("w*.log"))
        server_log = (tmp / "server.log").read_text(errors="replace")
        shutil.rmtree(tmp, ignore_errors=True)

    statuses = Counter(r["status"] for r in runs)
    total = len(runs)
    ok = {
        "completed": statuses["completed"] == total,
        "gap_free": all(c["gap_free"] for c in checks.values()),
        "transitions": all(c["chain"] and not c["duplicate_moves"] and c["epochs_in_stage"] and c["completed_last"]
                           for c in checks.values()),
        "corrupt": bool(corrupt_report.get("detected") and corrupt_report.get("previous_used")),
        "outages": outage_report["held"] > 0 and outage_report["kept_lease"] == outage_report["held"],
        "faults": campaign.faults["kill"] >= 2 and campaign.faults["server"] == 2 and campaign.faults["truncate"] == 1
        and campaign.faults["outage"] == 1 and campaign.faults["postgres"] == (args.backend == "postgresql"),
    }
    print(f"\n== chaos results (seed {args.seed}, {elapsed:.0f}s) ==")
    print(f"faults injected: {dict(campaign.faults)}")
    print(f"runs: {total}; by status: {dict(statuses)}")
    print(f"runs completed: {statuses['completed']}/{total}")
    print(f"epochs unique and gap-free: {sum(c['gap_free'] for c in checks.values())}/{total}")
    print(f"stage chain intact (start → … → completed): "
          f"{sum(c['chain'] and c['completed_last'] for c in checks.values())}/{total}")
    print(f"no duplicated stage move: {sum(not c['duplicate_moves'] for c in checks.values())}/{total}")
    print(f"every epoch trained in the stage then in force: {sum(c['epochs_in_stage'] for c in checks.values())}/{total}")
    print(f"attempts per run: {dict(sorted(Counter(c['attempts'] for c in checks.values()).items()))}")
    for rid, c in checks.items():
        if c["stage_mismatch"] or not c["gap_free"] or c["duplicate_moves"]:
            print(f"  run {rid}: gap_free={c['gap_free']} duplicate_moves={c['duplicate_moves']} "
                  f"epochs in another stage={c['stage_mismatch']}")
    for r in runs:
        if r["status"] != "completed":
            print(f"  run {r['id']} {r['status']}: {(r['error'] or '').splitlines()[:1]}")
    print(f"corrupt checkpoint: {corrupt_report}")
    print(f"runs held through an outage longer than the lease that kept their lease: "
          f"{outage_report['kept_lease']}/{outage_report['held']}")
    print(f"worker log lines mentioning 'corrupt': {worker_logs.count('corrupt')}; "
          f"server 5xx/tracebacks: {server_log.count('Traceback')}")
    print("RESULT: " + ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in ok.items()))
    return 0 if all(ok.values()) else 1


def corrupt_outcome(stack: Stack, corrupt: dict | None) -> dict[str, object]:
    if corrupt is None:
        return {"injected": False}
    rid = corrupt["run"]
    run = stack.get(f"/runs/{rid}")
    events = stack.get(f"/runs/{rid}/events", limit=5000)["items"]
    claims = [e for e in events if e["kind"] == "claimed"]
    resumed_from = [e["payload"].get("resume_checkpoint_id") for e in claims]
    after = resumed_from[resumed_from.index(corrupt["corrupt"]):] if corrupt["corrupt"] in resumed_from else []
    detected = "corrupt" in (run["error"] or "") or any("corrupt" in str(e["payload"]) for e in events)
    return {"run": rid, "status": run["status"], "corrupt_checkpoint": corrupt["corrupt"],
            "previous_checkpoint": corrupt["previous"], "claims_resumed_from": resumed_from,
            "detected": detected, "previous_used": corrupt["previous"] in after,
            "error": (run["error"] or "").splitlines()[:1]}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
