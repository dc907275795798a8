"""Conditional, cached poll reads (server/reads.py): ETags from the run's version, 304s without the
rows read, a bounded cache of encoded bodies, gzip, the columns format, step thinning."""

from __future__ import annotations

import gzip

import pytest
from pydantic import TypeAdapter

from core.api import EpochColumns, EpochOut, Page, StepColumns
from server import reads, reports, runs, steps
from server.models import EpochReport, Run
from server.reads import Body, BodyCache
from tests.server.helpers import API, create_run
from tests.server.test_worker_protocol import claim, epoch, register

POLLS = ("/runs", "/runs/{id}", "/runs/{id}/epochs", "/runs/{id}/steps", "/runs/{id}/stages",
         "/runs/{id}/lr", "/runs/{id}/events", "/runs/{id}/checkpoints")


def started(client) -> tuple[dict, str]:
    run = create_run(client)
    lease = claim(client, register(client)).json()["lease_token"]
    return run, lease


def heartbeat(client, run_id, lease, scalars, step=None):
    answer = client.post(f"{API}/runs/{run_id}/heartbeat", json={
        "lease_token": lease, "epoch": 0, "step": step if step is not None else scalars[-1]["step"],
        "scalars": scalars})
    assert answer.status_code == 200, answer.text


def test_every_poll_endpoint_answers_304_to_its_etag_and_a_new_body_after_a_report(client, monkeypatch):
    run, lease = started(client)
    assert epoch(client, run["id"], lease, 1, 0, 0.1).status_code == 200
    heartbeat(client, run["id"], lease, [{"step": 1, "loss": 2.0}])
    first = {}
    for path in POLLS:
        url = API + path.format(id=run["id"])
        answer = client.get(url)
        assert answer.status_code == 200 and answer.headers["etag"].startswith('W/"'), url
        first[path] = answer
        again = client.get(url, headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304 and again.content == b"", url
        assert again.headers["etag"] == answer.headers["etag"]

    # a 304 is answered from the run's version alone: no history is read, no run loaded
    def unread(*_args, **_kwargs):
        raise AssertionError("a 304 read the rows")
    for name in ("get_run", "list_runs", "runs_by_id", "transitions", "lr_history"):
        monkeypatch.setattr(runs, name, unread)
    monkeypatch.setattr(reports, "epochs", unread)
    monkeypatch.setattr(reports, "checkpoints", unread)
    monkeypatch.setattr(steps, "thinned", unread)
    for path in POLLS:
        answer = client.get(API + path.format(id=run["id"]), headers={"If-None-Match": first[path].headers["etag"]})
        assert answer.status_code == 304, path
    monkeypatch.undo()

    assert epoch(client, run["id"], lease, 2, 0, 0.2).status_code == 200
    for path in POLLS:
        answer = client.get(API + path.format(id=run["id"]), headers={"If-None-Match": first[path].headers["etag"]})
        assert answer.status_code == 200, path
        assert answer.headers["etag"] != first[path].headers["etag"], path
    epochs = client.get(f"{API}/runs/{run['id']}/epochs").json()["items"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert client.get(f"{API}/runs/{run['id']}").json()["epoch"] == 2


def test_a_control_request_and_a_new_run_change_the_etags(client):
    run, _ = started(client)
    run_etag = client.get(f"{API}/runs/{run['id']}/lr").headers["etag"]
    list_etag = client.get(f"{API}/runs").headers["etag"]
    assert client.post(f"{API}/runs/{run['id']}/lr", json={"scale": 0.5}).status_code == 202
    answer = client.get(f"{API}/runs/{run['id']}/lr", headers={"If-None-Match": run_etag})
    assert answer.status_code == 200 and answer.json()["override"] == {"scale": 0.5}
    create_run(client, name="another")
    answer = client.get(f"{API}/runs", headers={"If-None-Match": list_etag})
    assert answer.status_code == 200 and len(answer.json()["items"]) == 2


def test_a_history_row_written_without_its_run_loaded_bumps_the_version(app, client):
    run = create_run(client)
    with app.state.write_sessionmaker() as db, db.begin():
        before = runs.version_of(db, run["id"])[0]
    with app.state.write_sessionmaker() as db, db.begin():
        db.add(EpochReport(run_id=run["id"], attempt=1, epoch=1, stage_index=0, step=1, metrics={}, lr={}))
    with app.state.write_sessionmaker() as db, db.begin():
        assert runs.version_of(db, run["id"])[0] == before + 1
        loaded = db.get(Run, run["id"])
        loaded.lease_expires_at = None  # a column no read shows: the version stays
        db.flush()
        assert runs.version_of(db, run["id"])[0] == before + 1
        loaded.priority = 7
        db.flush()
        assert runs.version_of(db, run["id"])[0] == before + 2


def test_large_answers_are_gzipped_for_callers_that_accept_it(client):
    run, lease = started(client)
    heartbeat(client, run["id"], lease, [{"step": s, "loss": 1.0 / (s + 1)} for s in range(500)])
    url = f"{API}/runs/{run['id']}/steps"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    packed = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
    assert packed.json() == plain.json()  # httpx decoded it
    assert len(gzip.compress(plain.content)) < len(plain.content)


def test_the_cache_keeps_within_its_byte_budget():
    cache = BodyCache(max_bytes=10_000)
    for i in range(100):
        cache.put(i, Body(b"x" * 1000))
        assert cache.bytes <= 10_000
    assert len(cache) == 10 and cache.get(0) is None and cache.get(99) is not None
    cache.get(90)  # used: the least recently used go first
    cache.put("new", Body(b"y" * 1000))
    assert cache.get(90) is not None and cache.get(91) is None
    assert cache.put("huge", Body(b"z" * 3000)).raw == b"z" * 3000 and cache.get("huge") is None
    body = cache.get(99)
    assert gzip.decompress(cache.gzip(99, body)) == body.raw  # the gzipped form counts too
    assert cache.bytes == sum(b.size for b in cache._items.values()) <= 10_000


def test_a_server_keeps_its_cache_within_the_setting(settings):
    from fastapi.testclient import TestClient

    from server.app import create_app

    app = create_app(settings.model_copy(update={"read_cache_bytes": 40_000}))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        run, lease = started(client)
        heartbeat(client, run["id"], lease, [{"step": s, "loss": 0.5} for s in range(300)])
        for max_points in range(2, 60):
            assert client.get(f"{API}/runs/{run['id']}/steps", params={"max_points": max_points}).status_code == 200
            assert app.state.bodies.bytes <= 40_000
        assert 0 < len(app.state.bodies) < 58
    app.state.engine.dispose()


def test_epochs_in_columns_equal_epochs_in_rows(client):
    run, lease = started(client)
    for n in range(1, 6):
        extra = {"duration_s": 1.5 * n} if n % 2 else {"samples_per_s": 10.0 * n}
        assert epoch(client, run["id"], lease, n, 0, 0.1 * n, **extra).status_code == 200
    for query in ({}, {"after": 2}, {"limit": 2}):
        rows = Page.model_validate(client.get(f"{API}/runs/{run['id']}/epochs", params=query).json())
        columns = EpochColumns.model_validate(
            client.get(f"{API}/runs/{run['id']}/epochs", params={**query, "format": "columns"}).json())
        assert columns.next_cursor == rows.next_cursor
        assert [e.model_dump() for e in _epoch_rows(columns)] == \
            [EpochOut.model_validate(r).model_dump() for r in rows.items]


def _epoch_rows(c: EpochColumns) -> list[EpochOut]:
    return [EpochOut(epoch=c.epoch[i], attempt=c.attempt[i], stage={"index": c.stage[i], "name": c.stage_names[str(c.stage[i])]},
                     step=c.step[i], metrics={k: v[i] for k, v in c.metrics.items() if v[i] is not None},
                     lr={k: v[i] for k, v in c.lr.items() if v[i] is not None}, duration_s=c.duration_s[i],
                     samples_per_s=c.samples_per_s[i], created_at=c.created_at[i]) for i in range(len(c.epoch))]


def test_steps_in_columns_equal_steps_in_rows(client):
    run, lease = started(client)
    heartbeat(client, run["id"], lease, [{"step": s, "loss": 1.0 / (s + 1), **({"acc": s / 100} if s % 3 else {})}
                                         for s in range(100)])
    for query in ({}, {"max_points": 7}, {"after": 50}):
        rows = client.get(f"{API}/runs/{run['id']}/steps", params=query).json()
        columns = StepColumns.model_validate(
            client.get(f"{API}/runs/{run['id']}/steps", params={**query, "format": "columns"}).json())
        rebuilt = [{"step": s, **{k: v[i] for k, v in columns.values.items() if v[i] is not None}}
                   for i, s in enumerate(columns.step)]
        assert rebuilt == rows["items"] and columns.next_cursor == rows["next_cursor"]


def test_max_points_is_a_bound_and_keeps_the_first_and_newest_point(client):
    run, lease = started(client)
    for start in range(0, 5001, 2000):  # 5,001 points in three heartbeats
        heartbeat(client, run["id"], lease, [{"step": s, "loss": 1.0} for s in range(start, min(start + 2000, 5001))])
    for max_points in (1, 2, 3, 100, 2000, 5000):
        points = client.get(f"{API}/runs/{run['id']}/steps", params={"max_points": max_points}).json()["items"]
        assert len(points) <= max_points, max_points
        assert points[-1]["step"] == 5000
        if max_points > 1:
            assert points[0]["step"] == 0
        assert [p["step"] for p in points] == sorted({p["step"] for p in points})
    assert len(client.get(f"{API}/runs/{run['id']}/steps", params={"max_points": 2000}).json()["items"]) >= 1900
    every = client.get(f"{API}/runs/{run['id']}/steps", params={"max_points": 10_000}).json()["items"]
    assert len(every) == 5001


@pytest.mark.parametrize(("header", "hit"), [('W/"1.a.2"', True), ('"1.a.2"', True), ('W/"x", W/"1.a.2"', True),
                                             ("*", True), ('W/"1.a.3"', False), (None, False)])
def test_if_none_match_compares_weakly(header, hit):
    assert reads.matches(header, 'W/"1.a.2"') is hit


def test_encoded_rows_read_as_the_declared_models(client):
    run, lease = started(client)
    assert epoch(client, run["id"], lease, 1, 0, 0.5).status_code == 200
    items = client.get(f"{API}/runs/{run['id']}/epochs").json()["items"]
    out = TypeAdapter(list[EpochOut]).validate_python(items)
    assert out[0].stage.index == 1 and out[0].stage.name == "chars"
    assert items[0]["created_at"].endswith("Z")


def test_a_cached_answer_is_still_refused_to_a_caller_who_may_not_read(client):
    run, lease = started(client)
    url = f"{API}/runs/{run['id']}/epochs"
    etag = client.get(url).headers["etag"]  # cached now; open mode (no tokens yet)
    token = client.post(f"{API}/tokens", json={"name": "me", "role": "admin"}).json()["token"]
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get(url, headers=bearer).headers["etag"] == etag
    assert client.get(url, headers={**bearer, "If-None-Match": etag}).status_code == 304
    assert client.get(f"{API}/runs/999999/epochs", headers=bearer).status_code == 404


def test_a_cached_filtered_list_follows_a_status_change(client):
    first, second = create_run(client, name="a"), create_run(client, name="b")
    url = f"{API}/runs"
    for _ in range(2):  # the second answer comes from the cache
        assert [r["id"] for r in client.get(url, params={"status": "queued", "limit": 1}).json()["items"]] == [second["id"]]
    assert client.post(f"{API}/runs/{second['id']}/pause", json={}).status_code == 202
    assert [r["id"] for r in client.get(url, params={"status": "queued", "limit": 1}).json()["items"]] == [first["id"]]
    assert client.get(url, params={"status": "nonsense"}).status_code == 422
    assert client.get(url, params={"limit": 0}).status_code == 422


def test_a_list_rebuilt_after_one_run_changed_encodes_only_that_run(client, monkeypatch):
    made = [create_run(client, name=f"l{i}") for i in range(4)]
    whole = client.get(f"{API}/runs", params={"limit": 3}).json()
    loaded = []
    by_id = runs.runs_by_id
    monkeypatch.setattr(runs, "runs_by_id", lambda db, ids: loaded.append(sorted(ids)) or by_id(db, ids))
    assert client.patch(f"{API}/runs/{made[2]['id']}", json={"note": "changed"}).status_code == 200
    again = client.get(f"{API}/runs", params={"limit": 3}).json()
    assert loaded == [[made[2]["id"]]]
    assert [r["id"] for r in again["items"]] == [r["id"] for r in whole["items"]] and again["next_cursor"] == whole["next_cursor"]
    assert [r["note"] for r in again["items"]] == ["", "changed", ""]
    follow = client.get(f"{API}/runs", params={"limit": 3, "cursor": again["next_cursor"]}).json()
    assert [r["id"] for r in follow["items"]] == [made[0]["id"]] and follow["next_cursor"] is None
