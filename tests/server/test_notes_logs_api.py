"""A run's name, tags and note changed over PATCH (audited), and the worker's log lines: stored per
attempt, capped with the oldest dropped and counted, read back by cursor."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.server.helpers import API, create_run


def test_patch_changes_name_tags_and_note_and_records_what_they_were(client):
    run = create_run(client, name="old", tags=["a"])
    answer = client.patch(f"{API}/runs/{run['id']}", json={"name": "new", "tags": ["b", "b", "c"],
                                                            "note": "**lr** too high?"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["name"], answer.json()["tags"], answer.json()["note"]) == ("new", ["b", "c"], "**lr** too high?")
    events = client.get(f"{API}/runs/{run['id']}/events").json()["items"]
    updated = [e for e in events if e["kind"] == "run_updated"]
    assert len(updated) == 1 and updated[0]["actor"] == "admin:local"
    assert updated[0]["payload"]["name"] == {"from": "old", "to": "new"}
    assert updated[0]["payload"]["tags"] == {"from": ["a"], "to": ["b", "c"]}
    assert updated[0]["payload"]["note"] == {"from": "", "to": "**lr** too high?"}
    assert [r["id"] for r in client.get(f"{API}/runs?tag=c").json()["items"]] == [run["id"]]
    assert client.get(f"{API}/runs?tag=a").json()["items"] == []
    client.patch(f"{API}/runs/{run['id']}", json={"name": "new"})  # no change: no event
    assert len(client.get(f"{API}/runs/{run['id']}/events").json()["items"]) == len(events)


@pytest.mark.parametrize("body, path", [({}, "body"), ({"name": ""}, "name"), ({"tags": None}, "body"),
                                        ({"tags": ["a,b"]}, "tags[0]"), ({"note": "x" * 20_001}, "note"),
                                        ({"status": "completed"}, "status")])
def test_patch_refuses_bad_fields(client, body, path):
    run = create_run(client)
    answer = client.patch(f"{API}/runs/{run['id']}", json=body)
    assert answer.status_code == 422 and path in [d["path"] for d in answer.json()["error"]["details"]]


def test_patch_works_on_a_finished_run(client):
    run = create_run(client)
    client.post(f"{API}/runs/{run['id']}/stop")
    assert client.patch(f"{API}/runs/{run['id']}", json={"note": "stopped: wrong fonts"}).status_code == 200


def claimed(client) -> tuple[int, str, int]:
    run = create_run(client)
    worker = client.post(f"{API}/workers", json={"name": "w"}).json()["worker_id"]
    claim = client.post(f"{API}/workers/{worker}/claim", json={}).json()
    return run["id"], claim["lease_token"], claim["attempt"]


def batch(token: str, messages: list[str], dropped: int = 0) -> dict:
    now = dt.datetime.now(dt.UTC).isoformat()
    return {"lease_token": token, "dropped": dropped,
            "lines": [{"ts": now, "level": "INFO", "source": "sala.trainer", "message": m} for m in messages]}


@pytest.fixture
def capped(settings):
    from fastapi.testclient import TestClient

    from server.app import create_app

    app = create_app(settings.model_copy(update={"log_lines": 100}))
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client
    app.state.engine.dispose()


def test_logs_keep_the_newest_lines_up_to_the_cap_and_count_the_rest(capped):
    run_id, token, attempt = claimed(capped)
    first = capped.post(f"{API}/runs/{run_id}/logs", json=batch(token, [f"line {i}" for i in range(80)], dropped=3))
    assert first.json() == {"stored": 80, "dropped": 3}
    second = capped.post(f"{API}/runs/{run_id}/logs", json=batch(token, [f"line {i}" for i in range(80, 150)]))
    assert second.json() == {"stored": 70, "dropped": 53}
    page = capped.get(f"{API}/runs/{run_id}/logs", params={"limit": 60}).json()
    assert [line["message"] for line in page["items"]] == [f"line {i}" for i in range(50, 110)]
    assert page["dropped"] == {str(attempt): 53} and page["next_cursor"]
    rest = capped.get(f"{API}/runs/{run_id}/logs", params={"after": page["next_cursor"]}).json()
    assert [line["message"] for line in rest["items"]] == [f"line {i}" for i in range(110, 150)]
    assert rest["next_cursor"] is None
    assert capped.get(f"{API}/runs/{run_id}/logs", params={"attempt": attempt + 1}).json()["items"] == []


def test_logs_need_the_lease(client):
    run_id, _, _ = claimed(client)
    answer = client.post(f"{API}/runs/{run_id}/logs", json=batch("f" * 32, ["x"]))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "stale_lease"


def test_a_log_line_with_nul_bytes_is_kept_with_them_shown(client):
    """PostgreSQL text cannot hold NUL: a process that prints one must not lose its batch (a 500)."""
    run_id, token, _ = claimed(client)
    answer = client.post(f"{API}/runs/{run_id}/logs", json=batch(token, ["before\x00after", "plain"]))
    assert answer.status_code == 200, answer.text
    lines = client.get(f"{API}/runs/{run_id}/logs").json()["items"]
    assert [line["message"] for line in lines] == ["before\ufffdafter", "plain"]
    bad_level = batch(token, ["x"])
    bad_level["lines"][0]["level"] = "IN\x00FO"
    assert client.post(f"{API}/runs/{run_id}/logs", json=bad_level).status_code == 422
