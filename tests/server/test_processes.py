"""`sala server --processes 2`: two real server processes on one port and one database answer
alike: the same ETags, the same bodies, every change seen by both (server/processes.py)."""

from __future__ import annotations

import time

import httpx

from server.processes import default_processes
from tests.live import live_server
from tests.server.helpers import TINY_RECIPE

STARTUP_S = 120  # two interpreters importing the server on a loaded machine


def test_two_processes_serve_one_database_consistently(settings, tmp_path):
    env = {"SALA_DATABASE_URL": settings.database_url, "SALA_LEASE_SECONDS": "300"}
    with live_server(tmp_path, env, args=("--processes", "2"), startup_timeout=STARTUP_S) as server:
        deadline = time.monotonic() + STARTUP_S
        while server.output().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        api = server.api
        run = httpx.post(f"{api}/runs", json={"name": "p", "recipe": TINY_RECIPE}, timeout=30).json()
        worker = httpx.post(f"{api}/workers", json={"name": "w", "host": "h", "devices": ["cpu"]}, timeout=30).json()
        lease = httpx.post(f"{api}/workers/{worker['worker_id']}/claim", json={"wait_s": 0}, timeout=30).json()
        for n in range(1, 4):
            answer = httpx.post(f"{api}/runs/{run['id']}/epochs", timeout=30, json={
                "lease_token": lease["lease_token"], "epoch": n, "stage_index": 0, "step": 2 * n,
                "metrics": {"val_sequence_accuracy": 0.1, "val_cer": 0.9}, "lr": {"effective": 0.001}})
            assert answer.status_code == 200, answer.text
            # a fresh connection each time: the kernel hands them to either process
            seen = {(a.headers["etag"], a.content) for a in
                    (httpx.get(f"{api}/runs/{run['id']}/epochs", timeout=30) for _ in range(12))}
            assert len(seen) == 1, seen
            etag, body = seen.pop()
            assert [e["epoch"] for e in httpx.Response(200, content=body).json()["items"]] == list(range(1, n + 1))
            for _ in range(6):
                again = httpx.get(f"{api}/runs/{run['id']}/epochs", headers={"If-None-Match": etag}, timeout=30)
                assert again.status_code == 304
    assert server.process.returncode is not None
    assert server.output().count("Finished server process") == 2, server.output()


def test_sala_up_starts_half_the_cores_between_one_and_four():
    assert [default_processes(c) for c in (1, 2, 3, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, 4, 4]
