"""Bad input never causes a 500: malformed bodies, invalid recipes (with field paths), limits."""

from __future__ import annotations

import pytest

from tests.server.helpers import API, TINY_RECIPE, checkpoint_uri, create_run, error_paths

INVALID_RECIPES = [
    ({"curriculum": {"stages": [{"name": "a", "success_threshold": 1.5}]}},
     "recipe.curriculum.stages[0].success_threshold"),
    ({"training": {"accumulation_steps": 9}}, "recipe.training.accumulation_steps"),
    ({"training": {"precision": "fp8"}}, "recipe.training.precision"),
    ({"model": {"hiden_size": 128}}, "recipe.model.hiden_size"),
    ({"optimizer": {"lr": -0.1}}, "recipe.optimizer.lr"),
    ({"tasks": [{"type": "character_recognition"}, {"type": "telepathy"}]}, "recipe.tasks[1].type"),
    ({"scheduler": {"name": "zigzag"}}, "recipe.scheduler.name"),
    ({"checkpoint": {"compression": "rar"}}, "recipe.checkpoint.compression"),
    ({"curriculum": {"stages": [{"name": "a", "content": "paragraphs"}]}},
     "recipe.curriculum.stages[0].content"),
    ({"task_weighting": "random"}, "recipe.task_weighting"),
    ({"training": {"batch_size": 0}}, "recipe.training.batch_size"),
    ({"curriculum": {"stages": [{"name": "a", "min_epochs": 9, "max_epochs": 2}]}},
     "recipe.curriculum.stages[0]"),
]


@pytest.mark.parametrize(("recipe", "path"), INVALID_RECIPES, ids=[p for _, p in INVALID_RECIPES])
def test_invalid_recipe_reports_field_path(client, recipe, path):
    answer = client.post(f"{API}/runs", json={"name": "bad", "recipe": recipe})
    assert answer.status_code == 422, answer.text
    body = answer.json()["error"]
    assert body["code"] == "validation_error"
    assert any(p.startswith(path) for p in error_paths(answer)), error_paths(answer)
    assert client.get(f"{API}/runs").json()["items"] == []  # nothing half-stored


def test_every_problem_is_reported_at_once(client):
    recipe = {"optimizer": {"lr": -1}, "training": {"batch_size": 0}, "model": {"hiden_size": 1}}
    paths = error_paths(client.post(f"{API}/runs", json={"name": "bad", "recipe": recipe}))
    assert {"recipe.optimizer.lr", "recipe.training.batch_size", "recipe.model.hiden_size"} <= set(paths)


def test_malformed_json_is_400(client):
    answer = client.post(f"{API}/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "malformed"


def test_yaml_that_is_not_a_mapping_is_422(client):
    answer = client.post(f"{API}/runs", json={"name": "x", "recipe": "- a\n- b\n"})
    assert answer.status_code == 422 and error_paths(answer) == ["recipe"]
    broken = client.post(f"{API}/runs", json={"name": "x", "recipe": "a: [1, 2"})
    assert broken.status_code == 422 and "YAML" in broken.json()["error"]["message"]


def test_request_field_limits(client):
    for body, path in [({"name": ""}, "name"), ({"name": "x" * 201}, "name"),
                       ({"name": "x", "tags": ["t"] * 21}, "tags"), ({"name": "x", "tags": ["a,b"]}, "tags[0]"),
                       ({"name": "x", "priority": 10**9}, "priority"), ({"name": "x", "colour": "red"}, "colour")]:
        answer = client.post(f"{API}/runs", json=body)
        assert answer.status_code == 422, body
        assert path in error_paths(answer), (body, error_paths(answer))


def test_body_too_large_is_413(client, settings):
    huge = {"name": "x", "recipe": {"name": "y" * (settings.max_body_bytes + 10)}}
    answer = client.post(f"{API}/runs", json=huge)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "payload_too_large"


def test_unknown_ids_are_404(client):
    for method, path in [("get", "/runs/999"), ("post", "/runs/999/stop"), ("post", "/runs/999/pause"),
                         ("post", "/runs/999/resume"), ("post", "/runs/999/fork"), ("delete", "/runs/999"),
                         ("get", "/runs/999/stages"), ("get", "/runs/999/lr"), ("get", "/runs/999/events"),
                         ("get", "/runs/999/epochs"), ("get", "/runs/999/steps"),
                         ("get", "/runs/999/checkpoints"), ("get", "/runs/999/checkpoints/1/file")]:
        answer = getattr(client, method)(f"{API}{path}")
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "not_found"


def test_bad_cursor_and_status_filters(client):
    create_run(client)
    assert client.get(f"{API}/runs", params={"cursor": "garbage!"}).status_code == 422
    assert client.get(f"{API}/runs", params={"status": "sleeping"}).status_code == 422
    assert client.get(f"{API}/runs", params={"limit": 0}).status_code == 422
    assert client.get(f"{API}/runs/abc").status_code == 422


def test_delete_while_running_is_refused(client, app):
    run = create_run(client, recipe=TINY_RECIPE)
    with app.state.sessionmaker() as db, db.begin():
        from server.models import Run
        db.get(Run, run["id"]).status = "running"
    answer = client.delete(f"{API}/runs/{run['id']}")
    assert answer.status_code == 409 and "stop it first" in answer.json()["error"]["message"]


def test_out_of_range_ids_are_refused_not_500(client):
    run = create_run(client)
    huge = 99999999999999999999
    for method, path, body in [("get", f"/runs/{huge}", None), ("post", f"/runs/{2**31}/stop", None),
                               ("get", f"/runs/{run['id']}/events?after={huge}", None),
                               ("post", f"/runs/{run['id']}/fork", {"checkpoint_id": 2**31}),
                               ("get", f"/runs/{run['id']}/checkpoints/{huge}/file", None)]:
        answer = client.request(method.upper(), API + path, json=body)
        assert answer.status_code == 422, (path, answer.text)


def test_stage_target_must_be_a_name_or_number(client):
    run = create_run(client)
    for to in (True, 1.5, None, [], ""):
        answer = client.post(f"{API}/runs/{run['id']}/stage", json={"to": to})
        assert answer.status_code == 422, to
        assert error_paths(answer) == ["to"], (to, error_paths(answer))


def test_a_cursor_past_the_id_range_is_a_422(client):
    import base64

    create_run(client)
    for value in (2**31, 10**30, 0, -5):
        cursor = base64.urlsafe_b64encode(f"run:{value}".encode()).decode().rstrip("=")
        answer = client.get(f"{API}/runs", params={"cursor": cursor})
        assert answer.status_code == 422, (value, answer.text)
        assert error_paths(answer) == ["cursor"]


def _held(client) -> tuple[int, str]:
    from tests.server.test_worker_protocol import claim, register

    run = create_run(client)
    return run["id"], claim(client, register(client)).json()["lease_token"]


def test_nul_characters_are_refused_alike_on_every_database(client):
    """PostgreSQL text cannot hold NUL (a 500 there), SQLite can: both refuse it now."""
    run_id, lease = _held(client)
    for method, path, body, where in [
        ("POST", "/runs", {"name": "a\x00b"}, "name"),
        ("POST", "/runs", {"name": "a", "tags": ["t\x00"]}, "tags[0]"),
        ("POST", f"/runs/{run_id}/fork", {"name": "f\x00"}, "name"),
        ("POST", f"/runs/{run_id}/lr", {"scale": 0.5, "reason": "r\x00"}, "reason"),
        ("POST", "/tokens", {"name": "t\x00", "role": "viewer"}, "name"),
        ("POST", "/workers", {"name": "w", "host": "h\x00"}, "host"),
        ("POST", f"/runs/{run_id}/finish", {"lease_token": lease, "status": "failed", "error": "e\x00"}, "error"),
        ("POST", f"/runs/{run_id}/checkpoints", {"lease_token": lease, "uri": "file:///x\x00", "epoch": 1,
                                                 "step": 2, "stage_index": 0, "sha256": "0" * 64, "size": 1}, "uri"),
        ("GET", "/runs?tag=a%00b", None, "tag"),
    ]:
        answer = client.request(method, API + path, json=body)
        assert answer.status_code == 422, (path, where, answer.status_code, answer.text[:200])
        assert where in error_paths(answer) and "NUL" in answer.text, (where, answer.text[:300])
    assert client.get(f"{API}/runs/{run_id}").json()["status"] == "running"


def test_a_lease_token_that_is_not_one_the_server_made_is_a_422(client):
    run_id, _ = _held(client)
    for lease in ("é" * 10, "lease token", "x" * 65):
        answer = client.post(f"{API}/runs/{run_id}/heartbeat", json={"lease_token": lease, "epoch": 0, "step": 1})
        assert answer.status_code == 422, (lease, answer.text)


NONFINITE = b'{"lease_token": "%s", "epoch": 1, "stage_index": 0, "step": 2, "metrics": {"val_cer": NaN, ' \
            b'"train_loss": Infinity, "val_loss": 0.5}, "lr": {"schedule": -Infinity}}'


def test_non_finite_metrics_are_stored_as_null_and_counted_on_every_database(client):
    """Python's JSON parser reads NaN and Infinity; PostgreSQL's JSON refuses them (a 500 there),
    SQLite stored them. Both store null now, and /metrics counts what was nulled."""
    run_id, lease = _held(client)
    raw = {"Content-Type": "application/json"}
    sent = [
        ("heartbeat", b'{"lease_token": "%s", "epoch": 0, "step": 1, "scalars": [{"step": 1, "loss": NaN}]}'),
        ("epochs", NONFINITE),
        ("alerts", b'{"lease_token": "%s", "kind": "note", "detail": {"loss": -Infinity, "step": 3}}'),
        ("checkpoints", b'{"lease_token": "%s", "uri": "' + checkpoint_uri(client, run_id, "c.pt").encode()
         + b'", "epoch": 1, "step": 2, "stage_index": 0, "sha256": "' + b"0" * 64 + b'", "size": 1, '
         b'"metrics": {"val_cer": NaN}}'),
    ]
    for path, body in sent:
        answer = client.post(f"{API}/runs/{run_id}/{path}", content=body % lease.encode(), headers=raw)
        assert answer.status_code in (200, 201), (path, answer.text)
    epoch = client.get(f"{API}/runs/{run_id}/epochs").json()["items"][0]
    assert epoch["metrics"] == {"val_cer": None, "train_loss": None, "val_loss": 0.5}
    assert client.get(f"{API}/runs/{run_id}/steps").json()["items"] == [{"step": 1, "loss": None}]
    assert client.get(f"{API}/runs/{run_id}/checkpoints").json()[0]["metrics"] == {"val_cer": None}
    alert = [e for e in client.get(f"{API}/runs/{run_id}/events").json()["items"] if e["kind"] == "alert"][0]
    assert alert["payload"].get("loss") is None and alert["payload"]["step"] == 3
    metrics = client.get("/metrics").text
    for message, n in (("heartbeat", 1), ("epoch", 3), ("alert", 1), ("checkpoint", 1)):
        assert f'sala_nonfinite_values_total{{message="{message}"}} {n}.0' in metrics, message


def test_an_infinite_schedule_lr_or_duration_is_a_422(client):
    run_id, lease = _held(client)
    raw = {"Content-Type": "application/json"}
    beat = b'{"lease_token": "%s", "epoch": 0, "step": 1, "lr_schedule": Infinity}' % lease.encode()
    assert client.post(f"{API}/runs/{run_id}/heartbeat", content=beat, headers=raw).status_code == 422
    epoch = b'{"lease_token": "%s", "epoch": 1, "stage_index": 0, "step": 2, "metrics": {}, ' \
            b'"duration_s": Infinity}' % lease.encode()
    assert client.post(f"{API}/runs/{run_id}/epochs", content=epoch, headers=raw).status_code == 422
    recipe = b'{"name": "x", "recipe": {"curriculum": {"stages": [{"name": "a", "content": "words", ' \
             b'"success_threshold": NaN}]}}}'
    assert client.post(f"{API}/runs", content=recipe, headers=raw).status_code == 422
    assert client.get(f"{API}/runs/{run_id}").json()["lr"]["effective"] is not None


def test_a_500_is_answered_in_the_apis_shape_and_keeps_the_connection(app):
    """Starlette's last-resort handler re-raises after answering, and uvicorn then drops the
    kept-alive connection (its clients reconnect, or fail where they cannot)."""
    import http.client
    import json

    from tests.live import serve_in_thread

    def boom() -> dict:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    with serve_in_thread(app) as url:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        connection.request("GET", "/boom")
        first = connection.getresponse()
        body = first.read()
        socket_used = connection.sock
        connection.request("GET", "/healthz")
        second = connection.getresponse()
        second.read()
        same_socket = connection.sock is socket_used
        connection.close()
    assert first.status == 500 and json.loads(body)["error"]["code"] == "internal", body
    assert second.status == 200 and same_socket
