"""Reads at the server's own ceiling: wrk against one `sala server` holding 50 runs × (130 epochs ×
6 metrics + 2,000 steps × 3 scalars), each read's req/s against the same server's /healthz in the
same bench run; optionally an MLflow tracking server holding the same data, side by side.

Reads (wrk -t2 -c50 for --seconds each; every request picks the next of the 50 runs):
  healthz                      GET /healthz (the server's own ceiling: no database, no auth read)
  history (130 epochs)         GET /runs/{id}/epochs                       (rows, all metrics)
  history, columns             GET /runs/{id}/epochs?format=columns
  history, 304                 the same with If-None-Match: the run's ETag
  steps (2,000 points)         GET /runs/{id}/steps?max_points=2000
  steps, columns               GET /runs/{id}/steps?max_points=2000&format=columns
  steps, gzip                  the same rows with Accept-Encoding: gzip
  runs list (50)               GET /runs?limit=50
  epochs poll (after=125)      GET /runs/{id}/epochs?after=125
MLflow (--mlflow BIN, e.g. a throwaway venv's `mlflow`; not a project dependency): get-history of
one epoch metric (130 points; one metric per call), of the step loss (2,000 points), runs search
(50 runs).

Usage: python bench/reads.py [--seconds 15] [--processes 1] [--backend sqlite|postgresql]
                             [--mlflow /path/to/venv/bin/mlflow]
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live import free_port, live_server  # noqa: E402

RUNS, EPOCHS, STEPS = 50, 130, 2000
EPOCH_METRICS = ("train_loss", "val_loss", "val_cer", "val_sequence_accuracy", "val_char_accuracy", "grad_norm")
STEP_SCALARS = ("loss", "lr", "grad_norm")


def epoch_metrics(e: int) -> dict[str, float]:
    return {k: round(1.0 / (e + i + 1), 6) for i, k in enumerate(EPOCH_METRICS)}


def step_values(s: int) -> dict[str, float]:
    return {"loss": round(2.0 / (1 + s / 500), 6), "lr": 1e-3, "grad_norm": round(1 + (s % 7) / 10, 3)}


def seed_sala(api: str, database_url: str) -> list[int]:
    from sqlalchemy import insert

    from server.db import make_engine
    from server.models import EpochReport, Run, StepScalar

    ids = [httpx.post(f"{api}/runs", json={"name": f"reads-{i}", "recipe": {"training": {"max_epochs": 1000}}},
                      timeout=30).raise_for_status().json()["id"] for i in range(RUNS)]
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for rid in ids:
            conn.execute(insert(EpochReport), [
                {"run_id": rid, "attempt": 1, "epoch": e, "stage_index": 0, "step": e * 100, "metrics": epoch_metrics(e),
                 "lr": {"schedule": 1e-3, "stage_multiplier": 1.0, "effective": 1e-3},
                 "duration_s": 12.5, "samples_per_s": 400.0, "superseded": False} for e in range(1, EPOCHS + 1)])
            conn.execute(insert(StepScalar), [{"run_id": rid, "step": s, "values": step_values(s)}
                                              for s in range(1, STEPS + 1)])
        # written around the ORM, so the version is bumped here (a server from before versions has none)
        bump = {"version": Run.__table__.c.version + 1} if "version" in Run.__table__.c else {}
        conn.execute(Run.__table__.update().values(epoch=EPOCHS, step=STEPS, **bump))
    engine.dispose()
    return ids


def wrk(url_base: str, ids: list, path: str, seconds: float, *, method: str = "GET", headers: dict | None = None,
        body: str | None = None) -> dict:
    """req/s, latency and bytes per answer, from wrk with a Lua script cycling through the runs."""
    lua = "\n".join([
        "local ids = {" + ", ".join(json.dumps(str(i)) for i in ids) + "}",
        "local headers = {" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()) + "}",
        f"local body = {json.dumps(body) if body is not None else 'nil'}",
        "local n = 0",
        "request = function()",
        "  n = n + 1",
        "  local id = ids[(n % #ids) + 1]",
        f"  return wrk.format({json.dumps(method)}, string.format({json.dumps(path)}, id), headers, body)",
        "end"])
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        out = subprocess.run(["wrk", "-t2", "-c50", f"-d{seconds:.0f}s", "--latency", "-s", script.name, url_base],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    transfer = re.search(r"requests in [\d.]+\w+, ([\d.]+)(\w+) read", out)
    size = float(transfer.group(1)) * {"B": 1, "KB": 1024, "MB": 2**20, "GB": 2**30}[transfer.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "bytes": size / max(1, total), "p99": p99.group(1) + p99.group(2),
            "bad": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def sala_reads(server, ids: list[int], seconds: float) -> dict[str, dict]:
    api = server.api
    one = ids[0]
    etags = [httpx.get(f"{api}/runs/{i}/epochs").headers.get("etag", "") for i in ids]
    results = {"healthz": wrk(server.url, ids, "/healthz", seconds)}
    prefix = "/api/v1"
    cases = [
        ("history (130 epochs)", f"{prefix}/runs/%s/epochs", {}),
        ("history, columns", f"{prefix}/runs/%s/epochs?format=columns", {}),
        ("steps (2,000 points)", f"{prefix}/runs/%s/steps?max_points=2000", {}),
        ("steps, columns", f"{prefix}/runs/%s/steps?max_points=2000&format=columns", {}),
        ("steps, gzip", f"{prefix}/runs/%s/steps?max_points=2000", {"Accept-Encoding": "gzip"}),
        ("runs list (50)", f"{prefix}/runs?limit=50", {}),
        ("epochs poll (after=125)", f"{prefix}/runs/%s/epochs?after=125", {}),
    ]
    for name, path, headers in cases:
        results[name] = wrk(server.url, ids, path, seconds, headers=headers)
    # a 304 needs the run's own ETag: cycle one run, so the header matches the path
    results["history, 304"] = wrk(server.url, [one], f"{prefix}/runs/%s/epochs", seconds,
                                  headers={"If-None-Match": etags[0]})
    n = len(httpx.get(f"{api}/runs/{one}/steps", params={"max_points": 2000}).json()["items"])
    results["steps (2,000 points)"]["points"] = n
    return results


def mlflow_reads(mlflow_bin: str, tmp: Path, seconds: float) -> dict[str, dict]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "mlflow.log", "w")
    proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"mlflow server did not start: {(tmp / 'mlflow.log').read_text()[-2000:]}")
            time.sleep(0.5)
        api = f"{base}/api/2.0/mlflow"
        with httpx.Client(timeout=60) as http:
            exp = http.post(f"{api}/experiments/create", json={"name": "reads"}).raise_for_status().json()["experiment_id"]
            run_ids = []
            for i in range(RUNS):
                run = http.post(f"{api}/runs/create", json={"experiment_id": exp, "run_name": f"reads-{i}",
                                                            "start_time": 0}).raise_for_status().json()
                rid = run["run"]["info"]["run_id"]
                run_ids.append(rid)
                metrics = [{"key": k, "value": v, "timestamp": e, "step": e}
                           for e in range(1, EPOCHS + 1) for k, v in epoch_metrics(e).items()]
                metrics += [{"key": f"step_{k}", "value": v, "timestamp": s, "step": s}
                            for s in range(1, STEPS + 1) for k, v in step_values(s).items()]
                for start in range(0, len(metrics), 1000):
                    http.post(f"{api}/runs/log-batch", json={"run_id": rid, "metrics": metrics[start:start + 1000]}
                              ).raise_for_status()
            search = json.dumps({"experiment_ids": [exp], "max_results": 50})
        results = {"healthz": wrk(base, run_ids, "/health", seconds)}
        results["history (130 epochs)"] = wrk(
            base, run_ids, "/api/2.0/mlflow/metrics/get-history?run_id=%s&metric_key=val_cer", seconds)
        results["steps (2,000 points)"] = wrk(
            base, run_ids, "/api/2.0/mlflow/metrics/get-history?run_id=%s&metric_key=step_loss&max_results=2000",
            seconds)
        results["runs list (50)"] = wrk(base, run_ids, "/api/2.0/mlflow/runs/search?_=%s", seconds, method="POST",
                                        headers={"Content-Type": "application/json"}, body=search)
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def report(title: str, results: dict[str, dict], against: dict[str, dict] | None = None) -> None:
    health = results["healthz"]["rps"]
    print(f"\n  {title}")
    print(f"  {'read':28s} {'req/s':>8s} {'× healthz':>10s} {'p99':>9s} {'bytes':>9s} {'non-2xx':>8s}"
          + (f" {'× MLflow':>9s}" if against else ""))
    for name, r in results.items():
        ratio = f"{r['rps'] / against[name]['rps']:9.1f}" if against and name in against and name != "healthz" else ""
        print(f"  {name:28s} {r['rps']:8.1f} {r['rps'] / health:10.3f} {r['p99']:>9s} {r['bytes']:9.0f} "
              f"{r['bad']:8d} {ratio}" + (f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--mlflow", help="an `mlflow` executable: measure its tracking server on the same data")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt install wrk)")
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"{os.cpu_count()} cores; wrk -t2 -c50 -d{args.seconds:.0f}s per read", flush=True)
    from tests.conftest import create_pg_database, drop_pg_database

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        url = f"sqlite:///{tmp / 'sala.db'}" if args.backend == "sqlite" else create_pg_database()
        env = {"SALA_DATABASE_URL": url, "SALA_LOG_LEVEL": "warning"}
        try:
            with live_server(tmp, env, args=("--processes", str(args.processes))) as server:
                deadline = time.monotonic() + 120
                while (server.output().count("Application startup complete") < args.processes
                       and time.monotonic() < deadline):
                    time.sleep(0.2)
                ids = seed_sala(server.api, url)
                sala = sala_reads(server, ids, args.seconds)
        finally:
            if args.backend != "sqlite":
                drop_pg_database(url)
        mlflow = mlflow_reads(args.mlflow, tmp, args.seconds) if args.mlflow else None
    report(f"Sala ({args.backend}, {args.processes} process(es)); steps answer "
           f"{sala['steps (2,000 points)'].get('points')} points", sala, mlflow)
    if mlflow:
        report("MLflow (same data)", mlflow)
    print(f"\nload after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
