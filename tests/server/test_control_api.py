"""Stage and learning-rate overrides: recorded as events and reflected in the run."""

from __future__ import annotations

from tests.server.helpers import API, BASE_LR, create_run


def test_stage_jump_by_name_and_number_records_transition_and_event(client):
    run = create_run(client)
    answer = client.post(f"{API}/runs/{run['id']}/stage", json={"to": "combos", "reason": "easy"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["run"]["stage"] == {"index": 2, "name": "combos"}
    back = client.post(f"{API}/runs/{run['id']}/stage", json={"to": 1})
    assert back.json()["run"]["stage"]["index"] == 1
    stages = client.get(f"{API}/runs/{run['id']}/stages").json()
    moves = [(t["from_stage"], t["to_stage"], t["reason"]) for t in stages["transitions"]]
    assert moves == [(None, 1, "start"), (1, 2, "manual"), (2, 1, "rollback")]
    assert stages["transitions"][1]["actor"] == "admin:local"
    event = client.get(f"{API}/runs/{run['id']}/events").json()["items"][1]
    assert event["kind"] == "stage_set" and event["payload"]["to_name"] == "combos"
    assert event["payload"]["reason"] == "easy" and event["applied_at"] is None


def test_stage_errors_name_the_problem(client):
    run = create_run(client)
    unknown = client.post(f"{API}/runs/{run['id']}/stage", json={"to": "nope"})
    assert unknown.status_code == 422 and "chars, combos" in unknown.json()["error"]["details"][0]["message"]
    out_of_range = client.post(f"{API}/runs/{run['id']}/stage", json={"to": 9})
    assert out_of_range.status_code == 422 and "1–2" in out_of_range.json()["error"]["message"]
    same = client.post(f"{API}/runs/{run['id']}/stage", json={"to": 1})
    assert same.status_code == 409
    assert client.post(f"{API}/runs/{run['id']}/stage/advance").status_code == 202
    last = client.post(f"{API}/runs/{run['id']}/stage/advance")
    assert last.status_code == 409 and "last stage" in last.json()["error"]["message"]


def test_hold_flag(client):
    run = create_run(client)
    assert client.post(f"{API}/runs/{run['id']}/stage/hold", json={"hold": True}).status_code == 200
    assert client.get(f"{API}/runs/{run['id']}/stages").json()["held"] is True
    client.post(f"{API}/runs/{run['id']}/stage/hold", json={"hold": False})
    assert client.get(f"{API}/runs/{run['id']}").json()["stage_held"] is False


def test_lr_scale_set_clear_compose_with_stage_multiplier(client):
    run = create_run(client)
    rid = run["id"]
    assert client.post(f"{API}/runs/{rid}/lr", json={"scale": 0.5}).status_code == 202
    lr = client.get(f"{API}/runs/{rid}/lr").json()
    assert lr["override"] == {"scale": 0.5} and abs(lr["effective"] - BASE_LR * 0.5) < 1e-12
    client.post(f"{API}/runs/{rid}/stage", json={"to": 2})  # lr multiplier 0.5 in stage 2
    assert abs(client.get(f"{API}/runs/{rid}/lr").json()["effective"] - BASE_LR * 0.25) < 1e-12
    client.post(f"{API}/runs/{rid}/lr", json={"lr": 3e-4})
    lr = client.get(f"{API}/runs/{rid}/lr").json()
    assert lr["override"] == {"lr": 3e-4} and lr["effective"] == 3e-4
    client.post(f"{API}/runs/{rid}/lr", json={"clear": True})
    lr = client.get(f"{API}/runs/{rid}/lr").json()
    assert lr["override"] is None and abs(lr["effective"] - BASE_LR * 0.5) < 1e-12
    assert [e["kind"] for e in lr["history"]] == ["lr_scale", "lr_set", "lr_clear"]


def test_lr_body_must_name_exactly_one_change(client):
    run = create_run(client)
    for body in ({}, {"lr": 1e-3, "scale": 2}, {"lr": -1}, {"scale": 0}, {"clear": False}):
        answer = client.post(f"{API}/runs/{run['id']}/lr", json=body)
        assert answer.status_code == 422, body


def test_checkpoint_now_needs_a_worker(client):
    run = create_run(client)
    answer = client.post(f"{API}/runs/{run['id']}/checkpoint")
    assert answer.status_code == 409 and "no worker" in answer.json()["error"]["message"]


def test_a_scale_after_a_rollback_keeps_the_rollback_and_says_so(client):
    from tests.server.test_worker_protocol import claim, register

    run = create_run(client)
    rid = run["id"]
    lease = claim(client, register(client)).json()["lease_token"]
    client.post(f"{API}/runs/{rid}/alerts", json={"lease_token": lease, "kind": "nonfinite", "detail": {}})
    answer = client.post(f"{API}/runs/{rid}/lr", json={"scale": 0.5}).json()
    assert answer["run"]["lr"]["override"] == {"scale": 0.5} and answer["run"]["lr"]["auto_scale"] == 0.5
    assert abs(answer["run"]["lr"]["effective"] - BASE_LR * 0.5 * 0.5) < 1e-12
    lr = client.get(f"{API}/runs/{rid}/lr").json()
    assert [e["kind"] for e in lr["history"]] == ["lr_reduce", "lr_scale"]
    reduce, scale = lr["history"]
    assert reduce["actor"] == "server" and reduce["payload"]["factor"] == 0.5
    assert scale["payload"]["auto_scale"] == 0.5 and scale["payload"]["effective"] == answer["run"]["lr"]["effective"]
