"""The worker half of the API: claims, leases and fencing, reports, curriculum, retention, reaper."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from server import leases
from server.models import utcnow
from tests.server.helpers import API, TINY_RECIPE, checkpoint_uri, create_run


def register(client, name="w1") -> int:
    answer = client.post(f"{API}/workers", json={"name": name, "host": "h", "devices": ["cpu"]})
    assert answer.status_code == 201, answer.text
    return answer.json()["worker_id"]


def claim(client, worker_id, wait_s=0.0):
    return client.post(f"{API}/workers/{worker_id}/claim", json={"wait_s": wait_s})


def epoch(client, run_id, lease, n, stage, acc, **extra):
    """Report epoch n, trained in `stage` (a position from 0, as on the wire)."""
    body = {"lease_token": lease, "epoch": n, "stage_index": stage, "step": n * 2,
            "metrics": {"val_sequence_accuracy": acc, "val_cer": 1 - acc},
            "lr": {"schedule": 0.001, "stage_multiplier": 1.0, "effective": 0.001}, **extra}
    return client.post(f"{API}/runs/{run_id}/epochs", json=body)


def test_claim_gives_lease_and_directive_then_204_when_empty(client):
    wid = register(client)
    assert claim(client, wid).status_code == 204
    run = create_run(client)
    answer = claim(client, wid)
    assert answer.status_code == 200
    body = answer.json()
    assert body["run_id"] == run["id"] and body["attempt"] == 1
    assert body["directive"]["action"] == "continue" and body["recipe"]["training"]["max_epochs"] == 6
    assert body["directive"]["stage_index"] == 0 and body["resume_checkpoint"] is None
    assert client.get(f"{API}/runs/{run['id']}").json()["status"] == "running"
    assert claim(client, wid).status_code == 204


def test_claim_order_is_priority_then_age(client):
    wid = register(client)
    low = create_run(client, name="low")
    high = create_run(client, name="high", priority=5)
    assert claim(client, wid).json()["run_id"] == high["id"]
    assert claim(client, wid).json()["run_id"] == low["id"]


def test_a_claim_hands_out_only_runs_the_worker_can_launch(client):
    """recipe.resources: a one-machine worker never gets a two-machine run; a GPU worker never more
    ranks per machine than its GPUs; a CPU worker (no limit) any number of ranks."""
    wid = register(client)
    two_nodes = create_run(client, name="two-nodes", priority=9,
                           recipe={**TINY_RECIPE, "resources": {"nodes": 2, "processes_per_node": 1}})
    four_ranks = create_run(client, name="four-ranks", priority=5,
                            recipe={**TINY_RECIPE, "resources": {"processes_per_node": 4}})
    plain = create_run(client, name="plain")

    def ask(**capacity):
        return client.post(f"{API}/workers/{wid}/claim", json={"wait_s": 0, **capacity})
    assert ask(processes_per_node=2).json()["run_id"] == plain["id"]
    assert ask(processes_per_node=2).status_code == 204
    assert ask().json()["run_id"] == four_ranks["id"]  # a CPU worker
    assert ask(nodes=3).status_code == 204  # torchrun needs every node it was started with
    answer = ask(nodes=2).json()
    assert answer["run_id"] == two_nodes["id"] and answer["recipe"]["resources"] == {"processes_per_node": 1, "nodes": 2}
    assert client.post(f"{API}/workers/{wid}/claim", json={"nodes": 0}).status_code == 422


def test_curriculum_advances_on_threshold_after_min_epochs_and_completes(client):
    wid = register(client)
    run = create_run(client)
    lease = claim(client, wid).json()["lease_token"]
    first = epoch(client, run["id"], lease, 1, 0, 0.9).json()["directive"]
    assert first["stage_index"] == 1 and first["action"] == "continue"  # min_epochs 1, threshold 0.5
    again = epoch(client, run["id"], lease, 1, 0, 0.9)
    assert again.status_code == 200 and again.json()["epoch"] == 1  # idempotent
    done = epoch(client, run["id"], lease, 2, 1, 0.95).json()["directive"]
    assert done["action"] == "complete"
    assert client.get(f"{API}/runs/{run['id']}").json()["curriculum_complete"] is True
    stages = client.get(f"{API}/runs/{run['id']}/stages").json()
    assert [(t["from_stage"], t["to_stage"], t["reason"]) for t in stages["transitions"]] == [
        (None, 1, "start"), (1, 2, "threshold"), (2, 2, "completed")]
    assert stages["transitions"][1]["metrics"]["value"] == 0.9
    epochs = client.get(f"{API}/runs/{run['id']}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    fin = client.post(f"{API}/runs/{run['id']}/finish", json={"lease_token": lease, "status": "completed"})
    assert fin.status_code == 200 and fin.json() == {"run_id": run["id"], "status": "completed"}


def test_overrides_reach_the_worker_and_are_acknowledged_with_the_step(client):
    wid = register(client)
    run = create_run(client)
    lease = claim(client, wid).json()["lease_token"]
    event_id = client.post(f"{API}/runs/{run['id']}/lr", json={"scale": 0.5}).json()["event_id"]
    beat = client.post(f"{API}/runs/{run['id']}/heartbeat", json={
        "lease_token": lease, "epoch": 0, "step": 3, "scalars": [{"step": 3, "loss": 2.5}]}).json()
    assert beat["directive"]["lr"] == {"scale": 0.5, "absolute": None, "auto_scale": 1.0}
    assert beat["directive"]["event_ids"] == [event_id]
    client.post(f"{API}/runs/{run['id']}/heartbeat", json={
        "lease_token": lease, "epoch": 0, "step": 4, "applied": [{"id": event_id, "step": 4}]})
    event = [e for e in client.get(f"{API}/runs/{run['id']}/events").json()["items"] if e["id"] == event_id][0]
    assert event["applied_step"] == 4 and event["applied_at"] is not None
    steps = client.get(f"{API}/runs/{run['id']}/steps").json()["items"]
    assert steps == [{"step": 3, "loss": 2.5}]


def test_pause_and_stop_directives_and_release(client):
    wid = register(client)
    run = create_run(client)
    lease = claim(client, wid).json()["lease_token"]
    client.post(f"{API}/runs/{run['id']}/pause")
    beat = client.post(f"{API}/runs/{run['id']}/heartbeat", json={"lease_token": lease, "epoch": 0, "step": 1})
    assert beat.json()["directive"]["action"] == "pause"
    client.post(f"{API}/runs/{run['id']}/finish", json={"lease_token": lease, "status": "paused"})
    assert client.get(f"{API}/runs/{run['id']}").json()["status"] == "paused"
    client.post(f"{API}/runs/{run['id']}/resume")
    second = claim(client, wid).json()
    assert second["attempt"] == 2
    client.post(f"{API}/runs/{run['id']}/stop")
    beat = client.post(f"{API}/runs/{run['id']}/heartbeat",
                       json={"lease_token": second["lease_token"], "epoch": 0, "step": 1})
    assert beat.json()["directive"]["action"] == "stop"


@pytest.mark.parametrize("request_, ends", [("pause", "paused"), ("stop", "stopped")])
def test_a_release_carries_out_a_pending_pause_or_stop(client, request_, ends):
    """A worker releasing the run for its own reasons (SIGTERM, a rollback) does not lose what a
    person asked for while it was on its way out."""
    run = create_run(client)
    lease = claim(client, register(client)).json()["lease_token"]
    client.post(f"{API}/runs/{run['id']}/{request_}")
    client.post(f"{API}/runs/{run['id']}/finish", json={"lease_token": lease, "status": "queued"})
    assert client.get(f"{API}/runs/{run['id']}").json()["status"] == ends
    events = client.get(f"{API}/runs/{run['id']}/events").json()["items"]
    assert [e for e in events if e["kind"] == f"{request_}_requested"][0]["applied_at"] is not None
    assert events[-1]["kind"] == f"run_{ends}"


def test_stale_lease_is_fenced_with_409(client, app):
    wid = register(client)
    run = create_run(client)
    old = claim(client, wid).json()["lease_token"]
    _expire(app, run["id"])
    new = claim(client, register(client, "w2")).json()
    assert new["attempt"] == 2
    for path, body in [("heartbeat", {"epoch": 0, "step": 1}), ("finish", {"status": "completed"}),
                       ("epochs", {"epoch": 1, "stage_index": 0, "step": 2, "metrics": {}})]:
        answer = client.post(f"{API}/runs/{run['id']}/{path}", json={"lease_token": old, **body})
        assert answer.status_code == 409, path
        assert answer.json()["error"]["code"] == "stale_lease"


def test_checkpoint_retention_keeps_last_and_best(client):
    recipe = {**TINY_RECIPE, "checkpoint": {"keep_last": 1, "keep_best": 1, "best_metric": "val_cer"}}
    wid = register(client)
    run = create_run(client, recipe=recipe)
    lease = claim(client, wid).json()["lease_token"]
    ids, deleted = [], []
    for n, cer in enumerate([0.5, 0.2, 0.4, 0.3], start=1):
        answer = client.post(f"{API}/runs/{run['id']}/checkpoints", json={
            "lease_token": lease, "uri": checkpoint_uri(client, run["id"], f"c{n}.pt"), "epoch": n, "step": n * 2,
            "stage_index": 0, "sha256": hashlib.sha256(str(n).encode()).hexdigest(), "size": 10,
            "metrics": {"val_cer": cer}})
        assert answer.status_code == 201
        ids.append(answer.json()["checkpoint_id"])
        deleted += answer.json()["delete"]
    assert sorted(deleted) == [ids[0], ids[2]]
    listed = {c["id"]: c["kept"] for c in client.get(f"{API}/runs/{run['id']}/checkpoints").json()}
    assert listed == {ids[0]: False, ids[1]: True, ids[2]: False, ids[3]: True}


def test_a_retried_checkpoint_report_is_stored_once(client):
    """A report whose answer was lost (the database or server went away after the commit) is sent
    again: two rows of one file would let retention delete a file that a kept row names."""
    run = create_run(client, recipe={**TINY_RECIPE, "checkpoint": {"keep_last": 1, "keep_best": 0}})
    lease = claim(client, register(client)).json()["lease_token"]
    report = {"lease_token": lease, "uri": checkpoint_uri(client, run["id"], "c1.pt"), "epoch": 1, "step": 2,
              "stage_index": 0, "sha256": "1" * 64, "size": 10}
    first, again = (client.post(f"{API}/runs/{run['id']}/checkpoints", json=report).json() for _ in range(2))
    assert again == {**first, "delete": [], "delete_uris": []}
    assert [c["id"] for c in client.get(f"{API}/runs/{run['id']}/checkpoints").json()] == [first["checkpoint_id"]]


def test_resume_supersedes_reports_after_the_checkpoint(client, app):
    wid = register(client)
    run = create_run(client, recipe={**TINY_RECIPE, "training": {"max_epochs": 20}})
    lease = claim(client, wid).json()["lease_token"]
    epoch(client, run["id"], lease, 1, 0, 0.1)
    client.post(f"{API}/runs/{run['id']}/checkpoints", json={
        "lease_token": lease, "uri": checkpoint_uri(client, run["id"], "x.pt"), "epoch": 1, "step": 2, "stage_index": 0,
        "sha256": "0" * 64, "size": 1})
    epoch(client, run["id"], lease, 2, 0, 0.2)
    _expire(app, run["id"])
    again = claim(client, wid).json()
    assert again["resume_checkpoint"]["epoch"] == 1 and again["resume_checkpoint"]["stage_index"] == 0
    assert [e["epoch"] for e in client.get(f"{API}/runs/{run['id']}/epochs").json()["items"]] == [1]
    epoch(client, run["id"], again["lease_token"], 2, 0, 0.25)
    epochs = client.get(f"{API}/runs/{run['id']}/epochs").json()["items"]
    assert [(e["epoch"], e["attempt"]) for e in epochs] == [(1, 1), (2, 2)]


def test_reaper_requeues_then_fails_past_max_restarts(client, app):
    wid = register(client)
    run = create_run(client, max_restarts=1)
    claim(client, wid)
    assert _expire(app, run["id"]) == "queued"
    claim(client, wid)
    assert _expire(app, run["id"]) == "failed"
    body = client.get(f"{API}/runs/{run['id']}").json()
    assert "max_restarts" in body["error"]
    kinds = [e["kind"] for e in client.get(f"{API}/runs/{run['id']}/events").json()["items"]]
    assert kinds.count("lease_expired") == 2


def test_worker_protocol_needs_worker_rights(client, app):
    from server import auth

    with app.state.sessionmaker() as db, db.begin():
        _, viewer = auth.create_token(db, "v", "viewer")
        _, operator = auth.create_token(db, "o", "operator")
    for token in (viewer, operator):
        answer = client.post(f"{API}/workers", json={"name": "x"}, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 403


def _expire(app, run_id: int) -> str:
    with app.state.write_sessionmaker() as db, db.begin():
        from server.models import Run
        run = db.get(Run, run_id)
        run.lease_expires_at = utcnow() - dt.timedelta(seconds=1)
    with app.state.write_sessionmaker() as db, db.begin():
        leases.reap(db, utcnow(), stop_deadline_seconds=60)
    with app.state.sessionmaker() as db:
        return db.get(Run, run_id).status


def test_nonfinite_alert_rolls_back_with_half_lr_then_fails(client):
    recipe = {**TINY_RECIPE, "training": {**TINY_RECIPE["training"], "max_rollbacks": 1}}
    wid = register(client)
    run = create_run(client, recipe=recipe)
    lease = claim(client, wid).json()["lease_token"]
    alert = {"lease_token": lease, "kind": "nonfinite", "detail": {"consecutive": 10, "step": 7}}
    first = client.post(f"{API}/runs/{run['id']}/alerts", json=alert).json()
    assert first["action"] == "rollback" and first["directive"]["lr"]["auto_scale"] == 0.5
    client.post(f"{API}/runs/{run['id']}/finish", json={"lease_token": lease, "status": "queued"})
    lease = claim(client, wid).json()["lease_token"]
    second = client.post(f"{API}/runs/{run['id']}/alerts", json={**alert, "lease_token": lease}).json()
    assert second["action"] == "fail"
    client.post(f"{API}/runs/{run['id']}/finish", json={"lease_token": lease, "status": "failed"})
    body = client.get(f"{API}/runs/{run['id']}").json()
    assert body["status"] == "failed" and "non-finite" in body["error"]
    kinds = [e["kind"] for e in client.get(f"{API}/runs/{run['id']}/events").json()["items"]]
    assert kinds.count("alert") == 2 and "rollback" in kinds and "rollback_exhausted" in kinds


def test_a_failed_rank_restarts_the_group_as_a_counted_restart_then_fails(client):
    wid = register(client)
    run = create_run(client, max_restarts=1)
    for attempt, expected in ((1, "rollback"), (2, "fail")):
        answer = claim(client, wid).json()
        assert answer["attempt"] == attempt
        alert = {"lease_token": answer["lease_token"], "kind": "rank_failed", "detail": {"exit_code": 1}}
        assert client.post(f"{API}/runs/{run['id']}/alerts", json=alert).json()["action"] == expected
        status = "queued" if expected == "rollback" else "failed"
        client.post(f"{API}/runs/{run['id']}/finish", json={"lease_token": answer["lease_token"], "status": status})
    body = client.get(f"{API}/runs/{run['id']}").json()
    assert body["status"] == "failed" and body["restarts"] == 1 and "a rank failed" in body["error"]


def test_step_scalars_roll_up_beyond_the_horizon(app, client):
    from server.models import StepScalar
    from sqlalchemy import func, select

    run = create_run(client)
    lease = claim(client, register(client)).json()["lease_token"]
    app.state.settings.step_horizon = 200
    app.state.settings.step_rollup_bucket = 10
    for start in range(0, 1000, 100):
        scalars = [{"step": s, "loss": float(s)} for s in range(start, start + 100)]
        client.post(f"{API}/runs/{run['id']}/heartbeat",
                    json={"lease_token": lease, "epoch": 0, "step": start + 99, "scalars": scalars})
    with app.state.sessionmaker() as db:
        rows = db.scalar(select(func.count()).select_from(StepScalar).where(StepScalar.run_id == run["id"]))
    assert rows < 400  # 1000 points stored as ≤ ~250 raw + rollups of 10
    points = client.get(f"{API}/runs/{run['id']}/steps", params={"max_points": 5000}).json()["items"]
    steps = [p["step"] for p in points]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 999
    first = points[0]
    assert first["points"] == 10 and first["loss"] == sum(range(10)) / 10  # a rollup is the bucket's mean


def test_recommendations_are_shown_and_opted_in_ones_applied_once(client):
    stages = [dict(s, success_threshold=0.99, min_epochs=1, max_epochs=20, patience=20)
              for s in TINY_RECIPE["curriculum"]["stages"]]
    recipe = {**TINY_RECIPE, "training": {**TINY_RECIPE["training"], "max_epochs": 30},
              "curriculum": {"stages": stages}, "auto_apply": ["plateau"]}
    plain = {**recipe, "auto_apply": []}
    wid = register(client)
    auto = create_run(client, name="auto", recipe=recipe, priority=1)
    advice = create_run(client, name="advice", recipe=plain)
    auto_lease = claim(client, wid).json()["lease_token"]
    advice_lease = claim(client, wid).json()["lease_token"]
    for n in range(1, 6):  # five flat epochs: a plateau
        last_auto = epoch(client, auto["id"], auto_lease, n, 0, 0.3).json()["directive"]
        last_advice = epoch(client, advice["id"], advice_lease, n, 0, 0.3).json()["directive"]
    assert last_auto["stage_index"] == 1 and last_advice["stage_index"] == 0
    shown = client.get(f"{API}/runs/{advice['id']}/stages").json()["recommendations"]
    assert [r["kind"] for r in shown] == ["plateau"] and shown[0]["evidence"]["spread"] == 0
    assert shown[0]["evidence"]["stage"] == 1  # the API counts stages from 1
    moves = client.get(f"{API}/runs/{auto['id']}/stages").json()["transitions"]
    assert moves[-1]["from_stage"] == 1 and moves[-1]["to_stage"] == 2 and moves[-1]["actor"] == "curriculum"
    kinds = [e["kind"] for e in client.get(f"{API}/runs/{auto['id']}/events").json()["items"]]
    assert kinds.count("auto_action") == 1
