"""Bad input never causes a 500: malformed bodies, invalid recipes (with field paths), limits."""

from __future__ import annotations

import pytest

from tests.server.helpers import API, TINY_RECIPE, create_run, error_paths

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
