"""The agent and its HttpController against a live server: alerts roll back then fail a run,
a lost lease stops the worker at once, and scalars/acks survive a failed heartbeat."""

from __future__ import annotations

import logging
import threading

import httpx
import pytest

from tests.e2e.conftest import get
from tests.live import live_server
from worker import agent as agent_module
from worker.agent import Agent, HttpController
from client import LeaseLost, SalaClient
from core.protocol import Directive, WorkerHello

RECIPE = {"training": {"max_rollbacks": 1, "nonfinite_patience": 2}}
CONTINUE = Directive(action="continue", stage_index=0)


class DivergingTrainer:
    """Stands in for the torch trainer: every attempt sees non-finite losses at once."""

    def __init__(self, recipe, controller, **_):
        self.controller = controller

    def run(self, resume=None):
        self.controller.alert("nonfinite", {"consecutive": 2, "step": 5, "loss": float("nan")})
        return "completed"


def test_nonfinite_alerts_roll_back_once_then_fail(tmp_path, monkeypatch):
    import worker.trainer

    monkeypatch.setattr(worker.trainer, "Trainer", DivergingTrainer)
    with live_server(tmp_path) as server:
        rid = httpx.post(f"{server.api}/runs", json={"name": "nan", "recipe": RECIPE}).json()["id"]
        worker = Agent(server.url, None, "t", claim_wait_s=1)
        info = worker.client.register(WorkerHello(name="t"))
        worker.worker_id, worker.heartbeat_s, worker.artifacts_url = info.worker_id, 5.0, info.artifacts_url
        outcomes = [worker.train(worker.claim()) for _ in range(2)]
        run = get(server.api, f"/runs/{rid}")
        kinds = [e["kind"] for e in get(server.api, f"/runs/{rid}/events")["items"]]
    assert outcomes == ["queued", "failed"]
    assert run["status"] == "failed" and "non-finite" in run["error"]
    assert run["lr"]["override"] is None and run["lr"]["auto_scale"] == 0.5 and run["attempt"] == 2
    assert kinds.count("rollback") == 1 and "rollback_exhausted" in kinds


class PausesWhenAsked:
    """Stands in for the torch trainer: as it does, checkpoints and returns "paused" once the
    controller's poll says pause (which a worker told to shut down always does)."""

    def __init__(self, recipe, controller, **_):
        self.controller = controller

    def run(self, resume=None):
        assert self.controller.poll(1, 0).action == "pause"
        return "paused"


def test_a_pause_pending_when_the_worker_gets_sigterm_is_not_lost(tmp_path, monkeypatch):
    import worker.trainer

    monkeypatch.setattr(worker.trainer, "Trainer", PausesWhenAsked)
    with live_server(tmp_path) as server:
        rid = httpx.post(f"{server.api}/runs", json={"name": "pausing"}).json()["id"]
        agent = Agent(server.url, None, "t", claim_wait_s=1)
        info = agent.client.register(WorkerHello(name="t"))
        agent.worker_id, agent.heartbeat_s, agent.artifacts_url = info.worker_id, 5.0, info.artifacts_url
        claim = agent.claim()
        assert httpx.post(f"{server.api}/runs/{rid}/pause").json()["run"]["status"] == "pausing"
        agent.shutdown.set()  # what SIGTERM does
        agent.train(claim)
        run = get(server.api, f"/runs/{rid}")
        kinds = [e["kind"] for e in get(server.api, f"/runs/{rid}/events")["items"]]
    assert run["status"] == "paused" and kinds[-1] == "run_paused", (run["status"], kinds)


def test_lost_lease_raises_on_next_poll(tmp_path):
    with live_server(tmp_path) as server:
        client = SalaClient(server.url)
        client.create_run(name="x")
        claim = client.claim(client.register(WorkerHello(name="w")).worker_id)
        controller = HttpController(client, claim.run_id, "f" * 32, CONTINUE, 60.0, threading.Event())
        with pytest.raises(LeaseLost):
            controller.beat()
        with pytest.raises(LeaseLost):
            controller.poll(1, 0)
        controller.close()


def test_undelivered_scalars_and_acks_are_kept_for_the_next_beat(tmp_path):
    with live_server(tmp_path) as server:
        client = SalaClient(server.url)
        rid = client.create_run(name="x").id
        claim = client.claim(client.register(WorkerHello(name="w")).worker_id)
        event_id = client.set_lr(rid, scale=0.5).event_id
        controller = HttpController(client, rid, claim.lease_token, CONTINUE, 60.0, threading.Event())
        controller.log_step(1, {"loss": 2.0})
        controller.acknowledge((event_id,), 1)
        broken = SalaClient("http://127.0.0.1:9", retry_for=0.1)
        controller.client = broken
        with pytest.raises(ConnectionError):
            controller.beat()
        controller.client = client
        controller.beat()
        controller.close()
        steps = get(server.api, f"/runs/{rid}/steps")["items"]
        event = [e for e in get(server.api, f"/runs/{rid}/events")["items"] if e["id"] == event_id][0]
    assert steps == [{"step": 1, "loss": 2.0}]
    assert event["applied_step"] == 1


def test_agent_module_reports_cpu_device():
    assert agent_module._devices() == ["cpu"]


class CrashingTrainer:
    """Stands in for the torch trainer: prints, logs, then fails the way a bug would."""

    def __init__(self, recipe, controller, **_):
        pass

    def run(self, resume=None):
        print("loading fonts from /no/such/folder")
        logging.getLogger("sala.trainer").warning("no font covers U+17D2")
        raise RuntimeError("the renderer gave up")


def test_a_failed_runs_last_lines_reach_the_server(tmp_path, monkeypatch):
    import worker.trainer

    monkeypatch.setattr(worker.trainer, "Trainer", CrashingTrainer)
    with live_server(tmp_path) as server:
        client = SalaClient(server.url)
        rid = client.create_run(name="crash").id
        worker = Agent(server.url, None, "t", claim_wait_s=1)
        info = worker.client.register(WorkerHello(name="t"))
        worker.worker_id, worker.heartbeat_s, worker.artifacts_url = info.worker_id, 60.0, info.artifacts_url
        assert worker.train(worker.claim()) == "failed"
        lines = list(client.logs(rid))
    assert [(line.source, line.message) for line in lines[:2]] == [
        ("stdout", "loading fonts from /no/such/folder"), ("sala.trainer", "no font covers U+17D2")]
    last = lines[-1]
    assert last.source == "sala.worker" and last.level == "ERROR" and last.attempt == 1
    assert "RuntimeError: the renderer gave up" in last.message and "Traceback" in last.message
