"""The typed client against a live server: pagination as iterators, error answers as exceptions
with the API's code, and what it sends (JSON content type on writes, If-None-Match with an ETag)."""

from __future__ import annotations

import httpx
import pytest

from client import Conflict, NotFound, SalaClient, Unreachable, ValidationFailed
from client.transport import Transport
from core.api import RunOut
from tests.live import live_server


@pytest.fixture(scope="module")
def sala(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("client")) as server, SalaClient(server.url) as client:
        yield client


def test_runs_page_through_every_match_newest_first(sala):
    made = [sala.create_run({"training": {"max_epochs": 3}}, name=f"p{i}", tags=["paged"]).id for i in range(5)]
    first = sala.list_runs(tag="paged", limit=2)
    assert [r.id for r in first.items] == made[::-1][:2] and first.next_cursor
    every = list(sala.runs(tag="paged", page_size=2))
    assert [r.id for r in every] == made[::-1] and all(isinstance(r, RunOut) for r in every)
    assert [r.id for r in sala.runs(tag="paged", status=["queued", "paused"])] == made[::-1]


def test_events_iterate_across_pages(sala):
    run = sala.create_run(name="events")
    for scale in (0.5, 0.25, 0.125):
        sala.set_lr(run.id, scale=scale)
    events = list(sala.events(run.id, page_size=2))
    assert [e.kind for e in events] == ["run_created", "lr_scale", "lr_scale", "lr_scale"]
    assert [e.payload["scale"] for e in sala.events(run.id, after=events[1].id, page_size=1)] == [0.25, 0.125]


def test_error_answers_carry_the_api_code_and_details(sala):
    with pytest.raises(NotFound) as missing:
        sala.run(999_999)
    assert missing.value.status == 404 and missing.value.code == "not_found" and "999999" in missing.value.message
    run = sala.create_run(name="errors")
    with pytest.raises(Conflict) as conflict:
        sala.resume(run.id)
    assert conflict.value.code == "conflict" and "already queued" in conflict.value.message
    with pytest.raises(ValidationFailed) as invalid:
        sala.set_stage(run.id, 9)
    assert [d["path"] for d in invalid.value.details] == ["to"]
    with pytest.raises(ValidationFailed) as bad_recipe:
        sala.create_run({"training": {"batch_size": -1}}, name="bad")
    assert "recipe.training.batch_size" in [d["path"] for d in bad_recipe.value.details]


def test_update_run_changes_only_what_is_given(sala):
    run = sala.create_run(name="before", tags=["a"])
    after = sala.update_run(run.id, note="# Notes\nlr looks high")
    assert (after.name, after.tags, after.note) == ("before", ["a"], "# Notes\nlr looks high")
    assert sala.update_run(run.id, name="after", tags=["b", "a"]).tags == ["a", "b"]


def test_an_unreachable_server_raises_after_retry_for():
    with SalaClient("http://127.0.0.1:9", retry_for=0.3) as dead, pytest.raises(Unreachable, match="no answer"):
        dead.run(1)


def test_writes_say_json_and_reads_reuse_an_answer_on_304():
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            if request.headers.get("If-None-Match") == '"v1"':
                return httpx.Response(304)
            return httpx.Response(200, json={"n": 1}, headers={"ETag": '"v1"'})
        return httpx.Response(202, json={})

    transport = Transport("http://sala.test", "tok", timeout=5, retry_for=0, max_backoff=1)
    transport.http = httpx.Client(base_url="http://sala.test", transport=httpx.MockTransport(answer))
    assert transport.request("GET", "/x") == {"n": 1} and transport.request("GET", "/x") == {"n": 1}
    transport.request("POST", "/runs/1/resume")
    transport.request("DELETE", "/runs/1")
    assert seen[1].headers["If-None-Match"] == '"v1"'
    assert [r.headers.get("Content-Type") for r in seen[2:]] == ["application/json"] * 2


def test_the_client_polls_a_real_server_conditionally(sala):
    run = sala.create_run(name="conditional")
    statuses = []
    sala._http.http.event_hooks["response"].append(lambda r: statuses.append(r.status_code))
    try:
        first, second = sala.run(run.id), sala.run(run.id)
        assert first == second and statuses[-2:] == [200, 304]
        sala.set_lr(run.id, scale=0.5)
        assert sala.run(run.id).lr.override == {"scale": 0.5} and statuses[-1] == 200
    finally:
        sala._http.http.event_hooks["response"].clear()
