"""Observing endpoints: checkpoint download inside the store only, step downsampling, SSE."""

from __future__ import annotations

import hashlib
import json
import threading

import httpx

from tests.live import live_server
from tests.server.helpers import API, create_run
from tests.server.test_worker_protocol import claim, register


def report_checkpoint(client, run_id, lease, uri, data=b"x"):
    return client.post(f"{API}/runs/{run_id}/checkpoints", json={
        "lease_token": lease, "uri": uri, "epoch": 1, "step": 2, "stage_index": 0,
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})


def test_checkpoint_download_streams_bytes_with_checksum(client, settings, tmp_path):
    run = create_run(client)
    root = settings.artifacts_url.removeprefix("file://")
    path = f"{root}/run-{run['id']}/ck.pt"
    import os
    os.makedirs(os.path.dirname(path))
    open(path, "wb").write(b"weights" * 1000)
    lease = claim(client, register(client)).json()["lease_token"]
    cid = report_checkpoint(client, run["id"], lease, f"file://{path}", b"weights" * 1000).json()["checkpoint_id"]
    answer = client.get(f"{API}/runs/{run['id']}/checkpoints/{cid}/file")
    assert answer.status_code == 200 and answer.content == b"weights" * 1000
    assert answer.headers["x-checksum-sha256"] == hashlib.sha256(answer.content).hexdigest()


def test_checkpoint_download_cannot_leave_the_store(client, settings, tmp_path):
    root = settings.artifacts_url.removeprefix("file://")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    link = f"{root}/link.pt"
    import os
    os.symlink(secret, link)
    run = create_run(client)
    lease = claim(client, register(client)).json()["lease_token"]
    for uri in (f"file://{root}/../secret.txt", f"file://{secret}", f"file://{link}"):
        answer = report_checkpoint(client, run["id"], lease, uri)  # refused when reported, so never served
        assert answer.status_code == 403, uri


def test_steps_are_downsampled_to_max_points(client):
    run = create_run(client)
    lease = claim(client, register(client)).json()["lease_token"]
    scalars = [{"step": s, "loss": 1.0 / (s + 1)} for s in range(1000)]
    client.post(f"{API}/runs/{run['id']}/heartbeat", json={"lease_token": lease, "epoch": 0, "step": 999,
                                                         "scalars": scalars})
    points = client.get(f"{API}/runs/{run['id']}/steps", params={"max_points": 100}).json()["items"]
    assert len(points) <= 101 and points[0]["step"] == 0 and points[-1]["step"] == 999
    later = client.get(f"{API}/runs/{run['id']}/steps", params={"after": 989}).json()["items"]
    assert [p["step"] for p in later] == list(range(990, 1000))


def test_event_stream_delivers_new_events(tmp_path):
    with live_server(tmp_path) as server:
        run = httpx.post(f"{server.api}/runs", json={"name": "s"}).json()
        received: list[dict] = []

        def listen():
            with httpx.stream("GET", f"{server.api}/events/stream", timeout=10) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received.append(json.loads(line[6:]))
                        return

        listener = threading.Thread(target=listen)
        listener.start()
        import time
        time.sleep(1.0)
        httpx.post(f"{server.api}/runs/{run['id']}/pause")
        listener.join(timeout=10)
    assert received and received[0]["kind"] == "paused" and received[0]["run_id"] == run["id"]
