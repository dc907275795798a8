"""The run lifecycle over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.server.helpers import API, BASE_LR, TINY_RECIPE, checkpoint_uri, create_run


def test_create_fills_defaults_and_starts_queued_in_stage_one(client):
    run = create_run(client, name="first", tags=["khmer", "tiny"])
    assert run["status"] == "queued"
    assert run["stage"] == {"index": 1, "name": "chars"}
    assert run["tags"] == ["khmer", "tiny"]
    assert run["recipe"]["optimizer"]["lr"] == BASE_LR  # default filled in
    assert run["lr"]["effective"] == BASE_LR
    assert run["max_restarts"] == 3


def test_empty_recipe_is_the_default_five_stage_recipe(client):
    response = client.post(f"{API}/runs", json={"name": "default"})
    assert response.status_code == 201
    stages = client.get(f"{API}/runs/{response.json()['id']}/stages").json()
    assert [s["name"] for s in stages["stages"]] == [
        "single_character", "simple_combinations", "complex_combinations", "word_level", "multi_word"]
    assert stages["current"] == {"index": 1, "name": "single_character"}
    assert stages["transitions"][0]["reason"] == "start"


def test_recipe_may_be_sent_as_yaml_text(client):
    response = client.post(f"{API}/runs", json={"name": "y", "recipe": "training:\n  max_epochs: 7\n"})
    assert response.status_code == 201, response.text
    assert response.json()["max_epochs"] == 7


def alias_bomb(levels: int) -> str:
    """The classic "billion laughs": each level lists the one before nine times, by alias."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_recipe_with_yaml_aliases_is_refused_before_it_expands(client):
    """Nine levels are under 500 bytes and 9^9 strings once expanded; six keep the test cheap where it fails."""
    for text in (alias_bomb(6), alias_bomb(9), "training: &t {max_epochs: 3}\nvalidation: *t\n",
                 "base: &b {lr: 0.1}\noptimizer: {<<: *b}\n"):
        answer = client.post(f"{API}/runs", json={"name": "bomb", "recipe": text})
        assert answer.status_code == 422, answer.text[:300]
        error = answer.json()["error"]
        assert "YAML alias" in error["message"] and error["details"][0]["path"] == "recipe"
    patched = client.post(f"{API}/runs/{create_run(client)['id']}/fork", json={"recipe_patch": {"x": 1}})
    assert patched.status_code == 422  # a JSON patch has no aliases to refuse: validated as before


def test_list_paginates_with_cursor_and_filters(client):
    ids = [create_run(client, name=f"r{i}", tags=["even" if i % 2 == 0 else "odd"])["id"] for i in range(7)]
    first = client.get(f"{API}/runs", params={"limit": 3}).json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:3]
    second = client.get(f"{API}/runs", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in second["items"]] == ids[::-1][3:6]
    third = client.get(f"{API}/runs", params={"limit": 3, "cursor": second["next_cursor"]}).json()
    assert [r["id"] for r in third["items"]] == ids[:1] and third["next_cursor"] is None
    even = client.get(f"{API}/runs", params={"tag": "even"}).json()["items"]
    assert sorted(r["id"] for r in even) == ids[0::2]
    client.post(f"{API}/runs/{ids[0]}/pause")
    paused = client.get(f"{API}/runs", params={"status": "paused"}).json()["items"]
    assert [r["id"] for r in paused] == [ids[0]]


def test_tag_filter_escapes_like_wildcards(client):
    create_run(client, name="a", tags=["a_b"])
    create_run(client, name="b", tags=["axb"])
    found = client.get(f"{API}/runs", params={"tag": "a_b"}).json()["items"]
    assert [r["name"] for r in found] == ["a"]


def test_pause_resume_stop_on_a_queued_run(client):
    run = create_run(client)
    paused = client.post(f"{API}/runs/{run['id']}/pause", json={"reason": "lunch"})
    assert paused.status_code == 202 and paused.json()["run"]["status"] == "paused"
    resumed = client.post(f"{API}/runs/{run['id']}/resume")
    assert resumed.status_code == 202 and resumed.json()["run"]["status"] == "queued"
    stopped = client.post(f"{API}/runs/{run['id']}/stop")
    assert stopped.status_code == 202 and stopped.json()["run"]["status"] == "stopped"
    assert client.get(f"{API}/runs/{run['id']}").json()["finished_at"] is not None
    kinds = [e["kind"] for e in client.get(f"{API}/runs/{run['id']}/events").json()["items"]]
    assert kinds == ["run_created", "paused", "resumed", "stopped"]


def test_wrong_state_requests_are_409_with_a_reason(client):
    run = create_run(client)
    answer = client.post(f"{API}/runs/{run['id']}/resume")
    assert answer.status_code == 409
    assert "already queued" in answer.json()["error"]["message"]
    client.post(f"{API}/runs/{run['id']}/stop")
    for path, body in [("stop", None), ("pause", None), ("stage/advance", None),
                       ("lr", {"scale": 0.5}), ("stage", {"to": 2}), ("checkpoint", None)]:
        answer = client.post(f"{API}/runs/{run['id']}/{path}", json=body)
        assert answer.status_code == 409, path
        assert "finished" in answer.json()["error"]["message"], path


def test_fork_copies_recipe_with_patch_and_links_parent(client):
    run = create_run(client)
    child = client.post(f"{API}/runs/{run['id']}/fork",
                        json={"recipe_patch": {"optimizer": {"lr": 0.01}}, "name": "hotter"})
    assert child.status_code == 201, child.text
    body = child.json()
    assert body["parent_run_id"] == run["id"] and body["name"] == "hotter"
    assert body["recipe"]["optimizer"]["lr"] == 0.01
    assert body["recipe"]["training"]["max_epochs"] == TINY_RECIPE["training"]["max_epochs"]
    bad = client.post(f"{API}/runs/{run['id']}/fork", json={"recipe_patch": {"optimizer": {"lr": -1}}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["path"] == "recipe_patch.optimizer.lr"
    missing = client.post(f"{API}/runs/{run['id']}/fork", json={"checkpoint_id": 999})
    assert missing.status_code == 404


def test_delete_finished_run_removes_it_and_its_rows(client):
    run = create_run(client)
    client.post(f"{API}/runs/{run['id']}/stop")
    assert client.delete(f"{API}/runs/{run['id']}").status_code == 204
    assert client.get(f"{API}/runs/{run['id']}").status_code == 404
    assert client.get(f"{API}/runs/{run['id']}/events").status_code == 404


def test_service_endpoints(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    run_id = create_run(client)["id"]
    metrics = client.get("/metrics").text
    assert 'sala_runs{status="queued"} 1.0' in metrics
    assert 'sala_http_requests_total{method="POST",route="/api/v1/runs",status="201"}' in metrics
    client.get(f"{API}/runs/{run_id}/stages")
    assert 'route="/api/v1/runs/{run_id}/stages"' in client.get("/metrics").text  # no ids in labels
    assert client.get("/openapi.json").json()["info"]["title"] == "Sala"
    assert client.get("/docs").status_code == 200


def _finished_run_with_a_checkpoint(client) -> tuple[dict, int]:
    from tests.server.test_worker_protocol import claim, register

    run = create_run(client, name="parent")
    lease = claim(client, register(client)).json()["lease_token"]
    cid = client.post(f"{API}/runs/{run['id']}/checkpoints", json={
        "lease_token": lease, "uri": checkpoint_uri(client, run["id"], "ck.pt"), "epoch": 1, "step": 2,
        "stage_index": 0, "sha256": "0" * 64, "size": 1}).json()["checkpoint_id"]
    client.post(f"{API}/runs/{run['id']}/finish", json={"lease_token": lease, "status": "stopped"})
    return run, cid


def test_a_run_whose_checkpoint_a_fork_needs_is_not_deleted(client):
    from tests.server.test_worker_protocol import claim, register

    parent, cid = _finished_run_with_a_checkpoint(client)
    fork = client.post(f"{API}/runs/{parent['id']}/fork", json={"checkpoint_id": cid}).json()
    student = create_run(client, name="student", recipe={
        **TINY_RECIPE, "loss": {"distillation": {"teacher_run": str(parent["id"])}}})
    refused = client.delete(f"{API}/runs/{parent['id']}")
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert f"run {fork['id']} (forked from checkpoint {cid})" in message
    assert f"run {student['id']} (distils from it)" in message
    claimed = claim(client, register(client)).json()  # the fork still starts from the parent's checkpoint
    assert claimed["run_id"] == fork["id"] and claimed["resume_checkpoint"]["id"] == cid
    client.post(f"{API}/runs/{fork['id']}/finish", json={"lease_token": claimed["lease_token"], "status": "failed"})
    client.post(f"{API}/runs/{student['id']}/stop")
    assert client.delete(f"{API}/runs/{parent['id']}").status_code == 204


def test_ids_are_never_reused_after_a_delete(client):
    """SQLite hands out the highest rowid + 1 unless told otherwise: a fork recorded against a
    deleted run's id, or an event stream's cursor, would then name another run's rows."""
    first, newest = create_run(client, name="a"), create_run(client, name="b")
    last_event = client.get(f"{API}/runs/{newest['id']}/events").json()["items"][-1]["id"]
    client.post(f"{API}/runs/{newest['id']}/stop")
    last_event += 1
    assert client.delete(f"{API}/runs/{newest['id']}").status_code == 204
    again = create_run(client, name="c")
    assert again["id"] > newest["id"] > first["id"]
    events = client.get(f"{API}/runs/{again['id']}/events").json()["items"]
    assert events[0]["id"] > last_event
