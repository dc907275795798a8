"""Observing endpoints: checkpoint download inside the store only, step downsampling, SSE."""

from __future__ import annotations

import hashlib
import time

import httpx

from tests.e2e.conftest import wait_for
from tests.live import Stream, live_server, serve_in_thread
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


def test_event_stream_delivers_new_events(app, client):
    run = create_run(client)
    with serve_in_thread(app) as url:
        stream = Stream(f"{url}{API}/events/stream")
        wait_for(lambda: stream.comments, 30, "the stream to open")
        client.post(f"{API}/runs/{run['id']}/pause")
        wait_for(lambda: stream.events, 30, "the pause event")
    assert stream.events[0]["kind"] == "paused" and stream.events[0]["run_id"] == run["id"]
    assert stream.events[0]["sse"] == {"event": "paused", "id": str(stream.events[0]["id"])}


def test_a_reconnecting_browser_resumes_after_its_last_event_id(app, client):
    run = create_run(client)
    for action in ("pause", "resume", "stop"):
        client.post(f"{API}/runs/{run['id']}/{action}")
    ids = [e["id"] for e in client.get(f"{API}/runs/{run['id']}/events").json()["items"]]
    with serve_in_thread(app) as url:
        stream = Stream(f"{url}{API}/events/stream", {"Last-Event-ID": str(ids[1])})
        wait_for(lambda: len(stream.events) >= 2, 30, "the events after the last one seen")
        both = Stream(f"{url}{API}/events/stream?after={ids[0]}", {"Last-Event-ID": str(ids[2])})
        wait_for(lambda: both.events, 30, "the events after the header's id")
        refused = httpx.get(f"{url}{API}/events/stream", headers={"Last-Event-ID": "x"}, timeout=10)
    assert [e["id"] for e in stream.events] == ids[2:]
    assert [e["id"] for e in both.events] == ids[3:]  # the browser's header wins over the URL
    assert refused.status_code == 422


def test_an_idle_stream_gets_keep_alive_comments(app, monkeypatch):
    from server.routes import observe

    monkeypatch.setattr(observe, "KEEPALIVE_S", 0.5, raising=False)
    with serve_in_thread(app) as url:
        stream = Stream(f"{url}{API}/events/stream")
        wait_for(lambda: len(stream.comments) >= 3, 30, "two keep-alive comments after the opening one")
    assert stream.comments[0] == ": sala event stream" and set(stream.comments[1:]) == {": keep-alive"}


def test_a_stream_ends_when_its_token_is_revoked(app, client):
    from server import auth

    with app.state.write_sessionmaker() as db, db.begin():
        _, admin = auth.create_token(db, "admin", "admin")
        viewer_row, viewer = auth.create_token(db, "viewer", "viewer")
        viewer_id = viewer_row.id
    with serve_in_thread(app) as url:
        stream = Stream(f"{url}{API}/events/stream", {"Authorization": f"Bearer {viewer}"})
        wait_for(lambda: stream.comments, 30, "the stream to open")
        revoked = client.delete(f"{API}/tokens/{viewer_id}", headers={"Authorization": f"Bearer {admin}"})
        assert revoked.status_code == 200
        assert stream.ended.wait(30), stream.error


def test_an_open_stream_does_not_hold_up_shutdown(tmp_path):
    with live_server(tmp_path) as server:
        stream = Stream(f"{server.api}/events/stream")
        wait_for(lambda: stream.comments, 30, "the stream to open")
        began = time.monotonic()
        server.process.terminate()
        server.process.wait(timeout=30)
        took = time.monotonic() - began
    assert took < 8, f"sala server took {took:.1f}s to stop with a stream open (its grace period is 10 s)"
    assert stream.ended.wait(10)
