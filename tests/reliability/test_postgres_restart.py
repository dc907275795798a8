"""PostgreSQL restarted under a training run (a cluster of the test's own, never the machine's):
requests meanwhile answer 503 and /readyz says not ready; the worker keeps its run, retries what
it could not deliver and is not reaped for the outage, though it outlasts the lease; and once the
database is back nothing is lost: epochs and steps gap-free, every event delivered to a stream
that was open throughout."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import get, wait_for, workers  # noqa: F401 - workers is a fixture
from tests.e2e.test_worker_e2e import epochs_long
from tests.live import Stream, live_server
from tests.pg_cluster import Cluster

pytestmark = pytest.mark.skipif(Cluster.unusable() is not None, reason=str(Cluster.unusable()))
LEASE_S = 2


@pytest.fixture
def cluster():
    made = Cluster(Cluster.binaries()).init()
    made.start()
    yield made
    made.destroy()


def test_a_postgresql_restart_under_a_training_run_loses_nothing(tmp_path, cluster, workers):
    env = {"SALA_DATABASE_URL": cluster.create_database("sala"), "SALA_LEASE_SECONDS": str(LEASE_S),
           "SALA_REAPER_SECONDS": "0.2", "SALA_HEARTBEAT_SECONDS": "0.5"}
    recipe = epochs_long(4, steps=8)
    with live_server(tmp_path, env) as server:
        api = server.api
        rid = httpx.post(f"{api}/runs", json={"name": "pg", "recipe": recipe}, timeout=10).json()["id"]
        stream = Stream(f"{api}/events/stream?after=0")
        worker = workers.start(server.url, "w1")
        wait_for(lambda: get(api, f"/runs/{rid}/epochs")["items"], 180, "a first epoch", diagnostics=workers.logs)

        cluster.stop()
        during = httpx.get(f"{api}/runs/{rid}", timeout=30)
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
        wait_for(lambda: "(HTTP 503); retrying" in worker.log_path.read_text(), 120,
                 "the worker to find the database away", diagnostics=workers.logs)
        time.sleep(LEASE_S + 1)  # the fault itself: an outage longer than the lease
        cluster.start()

        wait_for(lambda: get(api, f"/runs/{rid}")["status"] == "completed", 240, "the run to complete",
                 diagnostics=lambda: workers.logs() + server.output()[-3000:])
        run = get(api, f"/runs/{rid}")
        epochs = [e["epoch"] for e in get(api, f"/runs/{rid}/epochs")["items"]]
        steps = {p["step"] for p in get(api, f"/runs/{rid}/steps", max_points=10_000)["items"]}
        logged = [e["id"] for e in get(api, f"/runs/{rid}/events", limit=5000)["items"]]
        wait_for(lambda: [e["id"] for e in stream.events] == logged, 30, "the stream to catch up",
                 diagnostics=lambda: f"stream {[e['id'] for e in stream.events]}\nlog {logged}")
    assert during.status_code == 503 and during.json()["error"]["code"] == "database_unavailable", during.text
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
    assert epochs == [1, 2, 3, 4]
    assert steps == set(range(1, 4 * 8 + 1))
    assert run["attempt"] == 1 and run["restarts"] == 0
    assert worker.poll() is None  # still serving, not crashed by the outage
