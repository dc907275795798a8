"""Two `sala server` processes on one PostgreSQL database behave as one: four workers (claim-only,
through the client) spread over both claim 40 runs, each exactly once; an override sent to one
server reaches a worker talking to the other; the event stream of each shows every event."""

from __future__ import annotations

import platform
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from client import SalaClient
from core.protocol import AppliedEvent, Finish, Heartbeat, WorkerHello
from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e.conftest import wait_for
from tests.live import Stream, live_server

RUNS, WORKERS = 40, 4


@pytest.fixture
def pg_url():
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def test_two_servers_on_one_database_behave_as_one(tmp_path, pg_url):
    env = {"SALA_DATABASE_URL": pg_url}
    with live_server(tmp_path, env) as a, live_server(tmp_path, env) as b:
        servers = [a.url, b.url]
        streams = [Stream(f"{s.api}/events/stream?after=0") for s in (a, b)]
        with SalaClient(a.url) as people:
            created = [people.create_run({"name": "side"}, name=f"r{i}").id for i in range(RUNS)]
        ready = threading.Barrier(WORKERS)

        def drain(n: int) -> list[tuple[int, int]]:
            """A worker on server n % 2: claim until nothing is queued, finishing each run at once."""
            with SalaClient(servers[n % 2], retry_for=30) as client:
                worker = client.register(WorkerHello(name=f"w{n}", host=platform.node())).worker_id
                ready.wait(60)
                claimed = []
                while (claim := client.claim(worker, 0)) is not None:
                    claimed.append((claim.run_id, n % 2))
                    client.finish(claim.run_id, Finish(lease_token=claim.lease_token, status="completed"))
                return claimed

        with ThreadPoolExecutor(WORKERS) as pool:
            claims = [c for per_worker in pool.map(drain, range(WORKERS)) for c in per_worker]
        counts = Counter(run for run, _ in claims)
        assert sorted(counts) == sorted(created) and set(counts.values()) == {1}
        by_server = Counter(server for _, server in claims)
        assert by_server[0] > 0 and by_server[1] > 0, by_server  # both servers handed out claims

        # An override sent to A is applied by a worker that only ever talks to B.
        with SalaClient(a.url) as on_a, SalaClient(b.url) as on_b:
            rid = on_a.create_run({"name": "steered"}, name="steered").id
            worker = on_b.register(WorkerHello(name="wb", host=platform.node())).worker_id
            claim = on_b.claim(worker, 5)
            assert claim is not None and claim.run_id == rid
            event_id = on_a.set_lr(rid, scale=0.25).event_id
            directive = on_b.heartbeat(rid, Heartbeat(lease_token=claim.lease_token, epoch=0, step=3)).directive
            assert directive.lr.scale == 0.25 and event_id in directive.event_ids
            on_b.heartbeat(rid, Heartbeat(lease_token=claim.lease_token, epoch=0, step=4,
                                          applied=[AppliedEvent(id=event_id, step=4)]))
            seen_on_a = {e.id: e for e in on_a.events(rid)}
            assert seen_on_a[event_id].applied_step == 4
            on_b.finish(rid, Finish(lease_token=claim.lease_token, status="completed"))
            every = [e.id for r in [*created, rid] for e in on_a.events(r)]

        # Each server's event stream shows every event, whichever server wrote it.
        for stream in streams:
            wait_for(lambda s=stream: {e["id"] for e in s.events} >= set(every), 30,
                     "the stream to show every event", diagnostics=lambda s=stream: f"{len(s.events)} of {len(every)}")
        assert all(len({e["id"] for e in s.events}) == len(s.events) for s in streams)  # none twice
