"""Tokens and roles: hashed storage, role checks on every mutating endpoint."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import select

from server import auth
from server.models import ApiToken
from tests.server.helpers import API, create_run


@pytest.fixture
def tokens(app):
    made = {}
    with app.state.sessionmaker() as db, db.begin():
        for role in auth.ROLES:
            _, made[role] = auth.create_token(db, f"{role}-1", role)
    return made


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


MUTATIONS = [("post", "/runs", {"name": "x"}), ("post", "/runs/{id}/stop", None),
             ("post", "/runs/{id}/pause", None), ("post", "/runs/{id}/resume", None),
             ("post", "/runs/{id}/fork", None), ("delete", "/runs/{id}", None),
             ("post", "/runs/{id}/stage", {"to": 2}), ("post", "/runs/{id}/stage/advance", None),
             ("post", "/runs/{id}/stage/hold", {"hold": True}), ("post", "/runs/{id}/lr", {"scale": 0.5}),
             ("post", "/runs/{id}/checkpoint", None)]


def test_no_token_is_401_once_tokens_exist(client, tokens):
    answer = client.get(f"{API}/runs")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    assert client.get(f"{API}/runs", headers=bearer("sala_wrong")).status_code == 401
    assert client.get(f"{API}/runs", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get(f"{API}/runs", headers=bearer(tokens["viewer"])).status_code == 200


def test_viewer_cannot_mutate_anything(client, tokens):
    run = create_run_as(client, tokens["operator"])
    for method, path, body in MUTATIONS:
        kwargs = {"headers": bearer(tokens["viewer"])}
        if body is not None:
            kwargs["json"] = body
        answer = client.request(method.upper(), API + path.format(id=run["id"]), **kwargs)
        assert answer.status_code == 403, (method, path, answer.text)


def test_worker_token_cannot_control_runs(client, tokens):
    run = create_run_as(client, tokens["operator"])
    answer = client.post(f"{API}/runs/{run['id']}/stop", headers=bearer(tokens["worker"]))
    assert answer.status_code == 403


def test_operator_controls_but_cannot_manage_tokens(client, tokens):
    run = create_run_as(client, tokens["operator"])
    assert client.post(f"{API}/runs/{run['id']}/pause", headers=bearer(tokens["operator"])).status_code == 202
    assert client.get(f"{API}/tokens", headers=bearer(tokens["operator"])).status_code == 403
    listed = client.get(f"{API}/tokens", headers=bearer(tokens["admin"])).json()
    assert {t["role"] for t in listed} == set(auth.ROLES)
    assert all("token" not in t and "hash" not in str(t) for t in listed)


def test_actor_is_recorded_from_the_token(client, tokens):
    run = create_run_as(client, tokens["operator"])
    events = client.get(f"{API}/runs/{run['id']}/events", headers=bearer(tokens["viewer"])).json()["items"]
    assert events[0]["actor"] == "operator:operator-1"


def test_tokens_are_stored_hashed_and_revocable(client, app, tokens):
    with app.state.sessionmaker() as db:
        stored = [t.token_hash for t in db.scalars(select(ApiToken))]
    assert tokens["admin"] not in stored and auth.hash_token(tokens["admin"]) in stored
    created = client.post(f"{API}/tokens", json={"name": "ci", "role": "viewer"},
                          headers=bearer(tokens["admin"])).json()
    assert client.get(f"{API}/runs", headers=bearer(created["token"])).status_code == 200
    client.delete(f"{API}/tokens/{created['id']}", headers=bearer(tokens["admin"]))
    assert client.get(f"{API}/runs", headers=bearer(created["token"])).status_code == 401


def test_open_mode_only_on_loopback_without_tokens(database_url, tmp_path):
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.settings import Settings

    app = create_app(Settings(database_url=database_url, host="0.0.0.0",
                              artifacts_url=f"file://{tmp_path}"))
    with TestClient(app) as client:
        assert client.get(f"{API}/runs").status_code == 401
    app.state.engine.dispose()


def create_run_as(client, token: str) -> dict:
    client.headers["Authorization"] = f"Bearer {token}"
    try:
        return create_run(client)
    finally:
        del client.headers["Authorization"]


@contextmanager
def _elsewhere(database_url: str):
    """A session of another process's own, as `sala tokens create` and `revoke` open one (`sala.cli._session`)."""
    from server.db import make_engine, make_sessionmaker, transaction, writer

    engine = writer(make_engine(database_url))
    try:
        with transaction(make_sessionmaker(engine)) as db:
            yield db
    finally:
        engine.dispose()


def test_tokens_made_or_revoked_by_another_process_count_from_the_next_request(client, database_url):
    """The first token turns auth on at once, as the README says, whoever creates it; a
    revocation by `sala tokens revoke` too. Nothing waits for a cache to expire."""
    assert client.get(f"{API}/runs").status_code == 200  # open mode, and now remembered
    with _elsewhere(database_url) as db:
        row, token = auth.create_token(db, "cli", "operator")
    assert client.get(f"{API}/runs").status_code == 401
    assert client.get(f"{API}/runs", headers=bearer(token)).status_code == 200
    with _elsewhere(database_url) as db:
        auth.revoke_token(db, row.id)
    assert client.get(f"{API}/runs", headers=bearer(token)).status_code == 401


def test_identities_are_kept_per_token_not_per_header_spelling_and_bounded(app, client, tokens):
    spellings = [f"{scheme}{space}{tokens['viewer']}{tail}" for scheme in ("Bearer", "bearer", "BEARER")
                 for space in (" ", "   ") for tail in ("", " ", "  ")]
    for header in spellings:
        assert client.get(f"{API}/runs", headers={"Authorization": header}).status_code == 200, header
    assert len(app.state.identities) == 1
    app.state.identities.size = 3
    for role in ("admin", "operator", "worker", "viewer"):
        assert client.get(f"{API}/runs", headers=bearer(tokens[role])).status_code == 200
    assert len(app.state.identities) == 3
