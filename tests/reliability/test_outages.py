"""Outages of the server or its database punish no healthy worker: after the server starts, and
after the database comes back, the reaper gives workers a lease's length plus one retry interval
to renew before it judges any lease."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from core.protocol import RETRY_MAX_S
from server.app import create_app
from server.models import Run, utcnow
from server.reaper import Reaper
from tests.server.helpers import API, create_run
from tests.server.test_worker_protocol import claim, register
from tests.e2e.conftest import wait_for


def _lease_ran_out_long_ago(app, run_id: int) -> None:
    with app.state.write_sessionmaker() as db, db.begin():
        db.get(Run, run_id).lease_expires_at = utcnow() - dt.timedelta(hours=1)


def _status(app, run_id: int) -> str:
    with app.state.sessionmaker() as db:
        return db.get(Run, run_id).status


def test_a_lease_that_ran_out_while_the_server_was_away_survives_its_start(settings):
    """As after an outage longer than the lease: the worker heartbeats once it reaches the new
    server, and must find its run still its own."""
    app = create_app(settings.model_copy(update={"reaper_seconds": 0.05}))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        run = create_run(client)
        lease = claim(client, register(client)).json()["lease_token"]
        _lease_ran_out_long_ago(app, run["id"])
        swept = app.state.reaper.sweeps
        wait_for(lambda: app.state.reaper.sweeps >= swept + 3, 30, "three reaper sweeps")
        beat = client.post(f"{API}/runs/{run['id']}/heartbeat", json={"lease_token": lease, "epoch": 0, "step": 1})
        assert beat.status_code == 200, beat.text
        assert client.get(f"{API}/runs/{run['id']}").json()["attempt"] == 1
    app.state.engine.dispose()


def test_after_the_grace_a_dead_workers_lease_expires_and_an_outage_restarts_the_grace(app, client):
    now = [0.0]
    reaper = Reaper(app.state.write_sessionmaker, lease_seconds=3, stop_deadline_seconds=60, clock=lambda: now[0])
    run = create_run(client)
    claim(client, register(client))
    _lease_ran_out_long_ago(app, run["id"])
    reaper.sweep()
    assert _status(app, run["id"]) == "running"  # within the grace after start
    now[0] = 3 + RETRY_MAX_S
    assert reaper.sweep() == [run["id"]] and _status(app, run["id"]) == "queued"

    claim(client, register(client, "w2"))
    _lease_ran_out_long_ago(app, run["id"])
    working, reaper.factory = reaper.factory, sessionmaker(create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2}))
    with pytest.raises(Exception):
        reaper.sweep()  # the database is away
    reaper.factory = working
    now[0] += 100
    assert reaper.sweep() == [] and _status(app, run["id"]) == "running"  # back: a new grace begins
    now[0] += 3 + RETRY_MAX_S
    assert reaper.sweep() == [run["id"]]
