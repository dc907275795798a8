"""Dashboard load: 100 pollers against 50 running runs holding 10^6 step scalars, on SQLite and
PostgreSQL, while simulated workers heartbeat and report epochs.

For each backend: start `sala server`, create 50 runs and claim them all (so they are `running`),
bulk-insert 10^6 step scalars (20,000 per run) and 200 epochs per run through SQLAlchemy core, then:
  phase "paced"  100 pollers offering --rate requests/s in total (the goal: p99 ≤ 50 ms at 200/s)
  phase "flat"   the same pollers as fast as they can (the server's ceiling)
A poller loops over a random run: GET /runs, GET /runs/{id}/epochs?after=<latest-5>,
GET /runs/{id}/steps?after=<latest-500>&max_points=500 (incremental polls), and one time in ten a
first-open GET /runs/{id}/steps?max_points=1000 (all 20,000 points thinned). Ten simulated workers
heartbeat every second (20 scalars each) and report an epoch every 5 s; their latency is measured
too (the goal: they land within a second). Ends with the query plans (EXPLAIN) of the statements
each endpoint runs, captured from the app itself.

Pollers send If-None-Match once they hold an answer's ETag, as the dashboard does (`--no-etags`: never).

Usage: python bench/api_load.py [--backend sqlite --backend postgresql] [--seconds 30] [--rate 200]
                                [--processes N] [--no-etags]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode, urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live import live_server  # noqa: E402

RUNS, STEPS_PER_RUN, EPOCHS_PER_RUN, POLLERS, WORKERS = 50, 20_000, 200, 100, 10
ETAGS = True
RECIPE = {"training": {"max_epochs": 100_000, "steps_per_epoch": 100}}


def seed(api: str, database_url: str) -> list[dict]:
    """50 running runs, each with 200 epochs and 20,000 step scalars written straight to the db."""
    from sqlalchemy import insert

    from server.db import make_engine
    from server.models import EpochReport, Run, StepScalar

    runs = [httpx.post(f"{api}/runs", json={"name": f"load-{i}", "recipe": RECIPE}, timeout=30)
            .raise_for_status().json() for i in range(RUNS)]
    worker = httpx.post(f"{api}/workers", json={"name": "seeder"}, timeout=30).json()["worker_id"]
    leases = {}
    for _ in runs:
        claim = httpx.post(f"{api}/workers/{worker}/claim", json={"wait_s": 0}, timeout=30).json()
        leases[claim["run_id"]] = claim["lease_token"]
    started = time.perf_counter()
    engine = make_engine(database_url)
    rng = random.Random(0)
    with engine.begin() as conn:
        for run in runs:
            rid = run["id"]
            conn.execute(insert(EpochReport), [
                {"run_id": rid, "attempt": 1, "epoch": e, "stage_index": 0, "step": e * 100,
                 "metrics": {"train_loss": 2 / e, "val_cer": 0.5 / e, "val_sequence_accuracy": 1 - 1 / e},
                 "lr": {"schedule": 1e-3, "stage_multiplier": 1.0, "effective": 1e-3},
                 "duration_s": 1.0, "samples_per_s": 100.0, "superseded": False}
                for e in range(1, EPOCHS_PER_RUN + 1)])
            conn.execute(insert(StepScalar), [
                {"run_id": rid, "step": s, "values": {"loss": 2 * math.exp(-s / 5000) + 0.1 * rng.random(),
                                                      "lr": 1e-3, "grad_norm": 1 + rng.random()}}
                for s in range(1, STEPS_PER_RUN + 1)])
        # written around the ORM, so the version is bumped here (server/models.py does it for the ORM)
        conn.execute(Run.__table__.update().values(epoch=EPOCHS_PER_RUN, step=STEPS_PER_RUN,
                                                   version=Run.__table__.c.version + 1))
    engine.dispose()
    print(f"  seeded {RUNS} runs, {RUNS * STEPS_PER_RUN:,} step scalars, {RUNS * EPOCHS_PER_RUN:,} epochs "
          f"in {time.perf_counter() - started:.0f}s", flush=True)
    return [{"id": r["id"], "lease": leases[r["id"]]} for r in runs]


def warm_up(api: str, runs: list[dict]) -> None:
    """Each run opened once, untimed, as a dashboard opening it would: the phases then measure
    polls of a running server, not the first build of every run's answers right after the bulk seed."""
    started = time.perf_counter()
    with httpx.Client(base_url=api, timeout=120) as client:
        client.get("/runs", params={"limit": 50})
        for run in runs:
            rid = run["id"]
            client.get(f"/runs/{rid}/epochs", params={"after": EPOCHS_PER_RUN - 5})
            client.get(f"/runs/{rid}/steps", params={"after": STEPS_PER_RUN - 500, "max_points": 500})
            client.get(f"/runs/{rid}/steps", params={"max_points": 1000})
    print(f"  warmed up: each run opened once in {time.perf_counter() - started:.0f}s", flush=True)


class RawConnection:
    """One keep-alive HTTP/1.1 connection for GETs on asyncio streams. httpx costs 1–2 ms of CPU a
    request; with 100 pollers on the server's own 2 cores that made the load generator, not the
    server, the bottleneck (`--client httpx` still measures that way)."""

    def __init__(self, api: str):
        url = urlsplit(api)
        self.host, self.port, self.prefix = url.hostname, url.port or 80, url.path.rstrip("/")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, params: dict | None = None, headers: dict | None = None) -> SimpleNamespace:
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            target = self.prefix + path + ("?" + urlencode(params) if params else "")
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n{extra}\r\n".encode())
            await self.writer.drain()
            status = int((await self.reader.readline()).split()[1])
            length, chunked, etag = 0, False, None
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "etag":
                    etag = value.strip()
                elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                while (size := int((await self.reader.readline()).strip(), 16)):
                    await self.reader.readexactly(size + 2)
                await self.reader.readline()
            else:
                await self.reader.readexactly(length)
            return SimpleNamespace(status_code=status, headers={"etag": etag} if etag else {})
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            if self.writer is not None:
                self.writer.close()
            self.reader = self.writer = None
            raise httpx.TransportError(str(exc)) from exc


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.unfinished = 0
        self.not_modified = 0

    def add(self, name: str, seconds: float, ok: bool) -> None:
        self.latency[name].append(seconds)
        if not ok:
            self.errors[name] += 1


async def poller(client: httpx.AsyncClient, runs: list[dict], stats: Stats, stop: float,
                 interval: float | None, rng: random.Random) -> None:
    """As the dashboard polls: with If-None-Match once it holds an answer's ETag (unless --no-etags)."""
    steps_after = STEPS_PER_RUN - 500
    etags: dict[str, str] = {}
    while time.monotonic() < stop:
        run = rng.choice(runs)["id"]
        requests = [("GET /runs", "/runs", {"limit": 50}),
                    ("GET /epochs?after", f"/runs/{run}/epochs", {"after": EPOCHS_PER_RUN - 5}),
                    ("GET /steps?after (poll)", f"/runs/{run}/steps", {"after": steps_after, "max_points": 500})]
        if rng.random() < 0.1:
            requests.append(("GET /steps (first open)", f"/runs/{run}/steps", {"max_points": 1000}))
        for name, path, params in requests:
            began = time.monotonic()
            key = f"{path}?{urlencode(params)}"
            headers = {"If-None-Match": etags[key]} if ETAGS and key in etags else {}
            try:
                answer = await client.get(path, params=params, headers=headers)
                ok = answer.status_code in (200, 304)
                if answer.headers.get("etag"):
                    etags[key] = answer.headers["etag"]
                stats.not_modified += answer.status_code == 304
            except httpx.HTTPError:
                ok = False
            stats.add(name, time.monotonic() - began, ok)
            if interval:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)) * rng.uniform(0.5, 1.5))


async def worker(client: httpx.AsyncClient, run: dict, stats: Stats, stop: float, index: int) -> None:
    step, epoch, last_epoch = STEPS_PER_RUN + index * 7, EPOCHS_PER_RUN, time.monotonic()
    await asyncio.sleep(index * 0.1)
    while time.monotonic() < stop:
        began = time.monotonic()
        scalars = [{"step": step + i, "loss": 0.5, "lr": 1e-3} for i in range(1, 21)]
        step += 20
        try:
            answer = await client.post(f"/runs/{run['id']}/heartbeat", json={
                "lease_token": run["lease"], "epoch": epoch, "step": step, "scalars": scalars})
            ok = answer.status_code == 200
        except httpx.HTTPError:
            ok = False
        stats.add("POST heartbeat (worker)", time.monotonic() - began, ok)
        if time.monotonic() - last_epoch >= 5:
            epoch += 1
            last_epoch = began = time.monotonic()
            try:
                answer = await client.post(f"/runs/{run['id']}/epochs", json={
                    "lease_token": run["lease"], "epoch": epoch, "stage_index": 0, "step": step,
                    "metrics": {"train_loss": 0.5, "val_cer": 0.1}})
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            stats.add("POST epoch (worker)", time.monotonic() - began, ok)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))


async def phase(api: str, runs: list[dict], seconds: float, rate: float | None,
                raw: bool = True) -> tuple[Stats, float]:
    stats = Stats()
    limits = httpx.Limits(max_connections=POLLERS + WORKERS, max_keepalive_connections=POLLERS + WORKERS)
    per_poller = None if rate is None else POLLERS / rate  # seconds between one poller's requests
    async with httpx.AsyncClient(base_url=api, limits=limits, timeout=60) as pollers, \
            httpx.AsyncClient(base_url=api, timeout=60) as workers:
        stop = time.monotonic() + seconds
        began = time.monotonic()
        tasks = [asyncio.ensure_future(t) for t in (
            *(poller(RawConnection(api) if raw else pollers, runs, stats, stop, per_poller, random.Random(i))
              for i in range(POLLERS)),
            *(worker(workers, runs[i], stats, stop, i) for i in range(WORKERS)))]
        _, pending = await asyncio.wait(tasks, timeout=seconds + 35)  # bounded, however slow the server
        for task in pending:
            task.cancel()
        stats.unfinished = len(pending)
        elapsed = time.monotonic() - began
    return stats, elapsed


def table(title: str, stats: Stats, elapsed: float) -> None:
    polled = sum(len(v) for k, v in stats.latency.items() if "worker" not in k)
    print(f"\n  {title}: {polled / elapsed:.0f} poller requests/s over {elapsed:.0f}s, "
          f"{stats.not_modified / max(1, polled):.0%} answered 304"
          + (f" ({stats.unfinished} clients still waiting at the end, cancelled)" if stats.unfinished else ""))
    print(f"  {'endpoint':28s} {'count':>7s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'errors':>6s}")
    for name, values in sorted(stats.latency.items()):
        values = sorted(values)
        p = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1000  # noqa: E731
        print(f"  {name:28s} {len(values):7d} {len(values) / elapsed:7.1f} {statistics.median(values) * 1000:8.1f} "
              f"{p(0.99):8.1f} {values[-1] * 1000:8.1f} {stats.errors[name]:6d}")


def explain(database_url: str, run_id: int) -> None:
    """The statements each endpoint runs, captured from the app in process, and their plans."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from server.app import create_app
    from server.settings import Settings

    app = create_app(Settings(database_url=database_url, host="127.0.0.1"))
    captured: list[tuple[str, str, object]] = []
    current = {"name": ""}

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "api_tokens" not in statement:
            captured.append((current["name"], statement, parameters))

    event.listen(app.state.engine, "before_cursor_execute", record)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for name, path, params in [("GET /runs", "/runs", {"limit": 50}),
                                   ("GET /epochs?after", f"/runs/{run_id}/epochs", {"after": EPOCHS_PER_RUN - 5}),
                                   ("GET /steps?after", f"/runs/{run_id}/steps", {"after": STEPS_PER_RUN - 500,
                                                                                 "max_points": 500}),
                                   ("GET /steps (first open)", f"/runs/{run_id}/steps", {"max_points": 1000})]:
            current["name"] = name
            client.get(f"/api/v1{path}", params=params).raise_for_status()
    event.remove(app.state.engine, "before_cursor_execute", record)
    sqlite = database_url.startswith("sqlite")
    with app.state.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for name, statement, parameters in captured:
            if "FROM runs" in statement and "WHERE runs.id =" in statement and "runs" not in name:
                continue  # the run lookup by primary key every endpoint does
            cursor = raw.cursor()
            if sqlite:
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                plan = [row[-1] for row in cursor.fetchall()]
            else:
                started = time.perf_counter()
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) " + statement, parameters)
                plan = [row[0] for row in cursor.fetchall()]
            one_line = " ".join(statement.split())
            print(f"\n  [{name}] {one_line[:220]}{'…' if len(one_line) > 220 else ''}")
            for line in plan:
                print(f"      {line}")
    app.state.engine.dispose()


def bench(backend: str, seconds: float, rate: float, raw: bool, processes: int = 1) -> None:
    from tests.conftest import create_pg_database, drop_pg_database

    print(f"\n== {backend} ==", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = f"sqlite:///{tmp / 'sala.db'}" if backend == "sqlite" else create_pg_database()
        env = {"SALA_DATABASE_URL": url, "SALA_LEASE_SECONDS": "3600", "SALA_LOG_LEVEL": "warning"}
        try:
            with live_server(tmp, env, args=("--processes", str(processes))) as server:
                _wait_processes(server, processes)
                runs = seed(server.api, url)
                warm_up(server.api, runs)
                for title, offered in ((f"paced ({rate:.0f} req/s offered)", rate), ("flat out", None)):
                    stats, elapsed = asyncio.run(phase(server.api, runs, seconds, offered, raw))
                    table(title, stats, elapsed)
                errors = Counter(line.split(": ", 1)[-1][:160] for line in server.output().splitlines()
                                 if "Error" in line and not line.startswith(" "))
                for line, n in errors.most_common(5):
                    print(f"  server log ×{n}: {line}")
            explain(url, runs[0]["id"])
        finally:
            if backend != "sqlite":
                drop_pg_database(url)


def _wait_processes(server, processes: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while server.output().count("Application startup complete") < processes and time.monotonic() < deadline:
        time.sleep(0.2)


def main() -> int:
    global POLLERS, ETAGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--pollers", type=int, default=POLLERS)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="pollers' HTTP client: raw asyncio streams (cheap) or httpx")
    parser.add_argument("--processes", type=int, default=1, help="server processes (sala server --processes)")
    parser.add_argument("--no-etags", action="store_true", help="pollers never send If-None-Match")
    args = parser.parse_args()
    POLLERS, ETAGS = args.pollers, not args.no_etags
    print(f"{POLLERS} pollers ({args.client} client, {'with' if ETAGS else 'without'} ETags), {WORKERS} workers, "
          f"{args.processes} server process(es), {args.seconds:.0f}s per phase", flush=True)
    for backend in args.backend or ["sqlite", "postgresql"]:
        bench(backend, args.seconds, args.rate, args.client == "raw", args.processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
