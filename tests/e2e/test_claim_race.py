"""Four workers racing over fifty queued runs against a live server claim each run exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.live import live_server


def test_fifty_runs_four_workers_each_claimed_once(tmp_path, database_env):
    with live_server(tmp_path, database_env) as server:
        with httpx.Client(base_url=server.api, timeout=30) as http:
            created = [http.post("/runs", json={"name": f"r{i}"}).json()["id"] for i in range(50)]

        ready = threading.Barrier(4)

        def drain(n: int) -> list[int]:
            with httpx.Client(base_url=server.api, timeout=30) as http:
                worker = http.post("/workers", json={"name": f"w{n}"}).json()["worker_id"]
                ready.wait(60)  # all four claim from the start, however slowly each thread got going
                claimed = []
                while (answer := http.post(f"/workers/{worker}/claim", json={"wait_s": 0})).status_code == 200:
                    claimed.append(answer.json()["run_id"])
                assert answer.status_code == 204, answer.text
                return claimed

        with ThreadPoolExecutor(4) as pool:
            per_worker = list(pool.map(drain, range(4)))
    counts = Counter(run for runs in per_worker for run in runs)
    assert sorted(counts) == sorted(created)
    assert set(counts.values()) == {1}
    assert sum(1 for runs in per_worker if runs) >= 2  # they really raced


def test_long_poll_claim_returns_soon_after_a_run_is_created(tmp_path):
    """The claim waits for the run (nothing is queued when it starts) and returns when it comes,
    not at its deadline: measured against the deadline, so a slow machine cannot fail it."""
    import time

    wait_s = 30
    with live_server(tmp_path) as server, httpx.Client(base_url=server.api, timeout=wait_s + 30) as http:
        worker = http.post("/workers", json={"name": "w"}).json()["worker_id"]
        timer = threading.Timer(1.0, lambda: httpx.post(f"{server.api}/runs", json={"name": "late"}))
        started = time.monotonic()
        timer.start()
        answer = http.post(f"/workers/{worker}/claim", json={"wait_s": wait_s})
        waited = time.monotonic() - started
        timer.join()
    assert answer.status_code == 200 and answer.json()["run_name"] == "late"
    assert waited < wait_s / 2, waited
