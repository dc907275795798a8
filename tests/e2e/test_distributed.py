"""Distributed runs with real processes on CPU: a real server, a real `sala worker`, torchrun and two
gloo ranks of a tiny recipe. Overrides reach both ranks at the same optimizer step and are
acknowledged once; the ranks end with identical parameters; kill -9 of a rank restarts the group
from its last checkpoint; a checkpoint written by two ranks resumes with one."""

from __future__ import annotations

import os
import re
import signal

import httpx

from tests.e2e.conftest import get, tiny, wait_for
from tests.live import live_server

FAST = {"SALA_HEARTBEAT_SECONDS": "0.5"}


def two_ranks(max_epochs: int, steps: int = 4, **overrides) -> dict:
    stages = [dict(s) for s in tiny()["curriculum"]["stages"]]
    stages[1].update(min_epochs=max_epochs, max_epochs=max_epochs, patience=max_epochs)
    return tiny(training={"batch_size": 4, "steps_per_epoch": steps, "max_epochs": max_epochs, "precision": "fp32",
                          "device": "cpu"},
                curriculum={"stages": stages}, resources={"processes_per_node": 2, "nodes": 1},
                validation={"samples_per_stage": 4, "overall_samples": 0}, **overrides)


def run_of(api: str, rid: int) -> dict:
    return get(api, f"/runs/{rid}")


def rank_lines(log: str, pattern: str) -> list[tuple[int, re.Match]]:
    """(rank, match) for each line a rank logged that matches `pattern`."""
    found = []
    for line in log.splitlines():
        rank = re.search(r" rank (\d+)/2 ", line)
        match = re.search(pattern, line)
        if rank and match:
            found.append((int(rank.group(1)), match))
    return found


def test_two_ranks_apply_overrides_at_the_same_step_and_end_identical(tmp_path, workers):
    with live_server(tmp_path, FAST) as server:
        api = server.api
        rid = httpx.post(f"{api}/runs", json={"name": "ddp", "recipe": two_ranks(max_epochs=200)}).json()["id"]
        httpx.post(f"{api}/runs/{rid}/stage/hold", json={"hold": True})  # stay in stage 1 until the jump
        worker = workers.start(server.url, "w1", "--once")
        wait_for(lambda: run_of(api, rid)["step"] >= 2, 90, "both ranks to train", diagnostics=workers.logs)
        scale = httpx.post(f"{api}/runs/{rid}/lr", json={"scale": 0.5}).json()["event_id"]
        jump = httpx.post(f"{api}/runs/{rid}/stage", json={"to": 2}).json()["event_id"]
        wait_for(lambda: _applied(api, rid, scale, jump), 60, "both overrides to be applied",
                 diagnostics=workers.logs)
        after = run_of(api, rid)["epoch"] + 1
        wait_for(lambda: run_of(api, rid)["epoch"] >= after, 60, "an epoch after the overrides", diagnostics=workers.logs)
        httpx.post(f"{api}/runs/{rid}/stop")
        wait_for(lambda: run_of(api, rid)["status"] == "stopped", 60, "the stop",
                 diagnostics=lambda: workers.logs() + server.output()[-3000:])
        worker.wait(timeout=60)
        run = run_of(api, rid)
        events = {e["id"]: e for e in get(api, f"/runs/{rid}/events", limit=500)["items"]}
        epochs = get(api, f"/runs/{rid}/epochs")["items"]
    log = worker.log_path.read_text()
    assert run["attempt"] == 1 and run["stage"]["index"] == 2
    assert [e["epoch"] for e in epochs] == list(range(1, len(epochs) + 1))
    assert epochs[-1]["stage"]["index"] == 2 and epochs[-1]["lr"]["override_scale"] == 0.5
    assert epochs[-1]["samples_per_s"] > 0
    applied: dict[int, dict[int, int]] = {}
    for rank, match in rank_lines(log, r"applied events ([\d,]+) at step (\d+)"):
        for event_id in map(int, match.group(1).split(",")):
            assert event_id not in applied.get(rank, {}), f"rank {rank} applied event {event_id} twice"
            applied.setdefault(rank, {})[event_id] = int(match.group(2))
    for event_id in (scale, jump):
        assert applied[0][event_id] == applied[1][event_id] == events[event_id]["applied_step"], (event_id, applied)
    digests = {rank: m.group(1) for rank, m in rank_lines(log, r"final parameters sha256 ([0-9a-f]{64})")}
    assert set(digests) == {0, 1} and digests[0] == digests[1], digests
    # the leader alone spoke to the server: one heartbeat thread, one acknowledgement per event
    assert all(events[i]["applied_at"] is not None for i in (scale, jump))


def _applied(api: str, rid: int, *event_ids: int) -> bool:
    events = {e["id"]: e for e in get(api, f"/runs/{rid}/events", limit=500)["items"]}
    return all(events[i]["applied_at"] for i in event_ids)


def test_kill_9_of_a_rank_restarts_the_group_from_its_last_checkpoint(tmp_path, workers):
    with live_server(tmp_path, FAST) as server:
        api = server.api
        rid = httpx.post(f"{api}/runs", json={"name": "ddp-kill", "recipe": two_ranks(max_epochs=6)}).json()["id"]
        worker = workers.start(server.url, "w1")

        def checkpointed():  # the first one: five epochs are left to train when the rank is killed
            return any(c["kept"] for c in get(api, f"/runs/{rid}/checkpoints"))
        wait_for(checkpointed, 120, "a first checkpoint", interval=0.1, diagnostics=workers.logs)
        pids = {m.group(1): int(m.group(2)) for _, m in rank_lines(worker.log_path.read_text(),
                                                                   r"rank (\d) of 2 \(pid (\d+)")}
        os.kill(pids["1"], signal.SIGKILL)
        wait_for(lambda: run_of(api, rid)["status"] == "completed", 150, "the run to complete after the kill",
                 diagnostics=lambda: workers.logs() + server.output()[-3000:])
        run = run_of(api, rid)
        epochs = get(api, f"/runs/{rid}/epochs")["items"]
        kinds = [e["kind"] for e in get(api, f"/runs/{rid}/events", limit=500)["items"]]
        alerts = [e for e in get(api, f"/runs/{rid}/events", limit=500)["items"] if e["kind"] == "alert"]
    assert run["attempt"] == 2 and run["restarts"] == 1, run
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6]  # unique and gap-free across the attempts
    assert kinds.count("claimed") == 2
    assert [a["payload"]["alert"] for a in alerts] == ["rank_failed"]


def test_a_checkpoint_of_two_ranks_resumes_with_one(tmp_path, workers):
    with live_server(tmp_path, FAST) as server:
        api = server.api
        parent = httpx.post(f"{api}/runs", json={"name": "two", "recipe": two_ranks(max_epochs=2)}).json()["id"]
        workers.start(server.url, "w1")
        wait_for(lambda: run_of(api, parent)["status"] == "completed", 120, "the two-rank run",
                 diagnostics=workers.logs)
        last = max((c for c in get(api, f"/runs/{parent}/checkpoints") if c["kept"]), key=lambda c: c["step"])
        patch = {"resources": {"processes_per_node": 1}, "training": {"max_epochs": 3}}
        child = httpx.post(f"{api}/runs/{parent}/fork", json={"checkpoint_id": last["id"], "recipe_patch": patch})
        assert child.status_code == 201, child.text
        cid = child.json()["id"]
        wait_for(lambda: run_of(api, cid)["status"] == "completed", 120, "the one-rank fork",
                 diagnostics=workers.logs)
        epochs = get(api, f"/runs/{cid}/epochs")["items"]
    assert last["epoch"] == 2
    assert [e["epoch"] for e in epochs] == [3]  # it went on from the two ranks' checkpoint
    assert epochs[0]["step"] == last["step"] + 4
