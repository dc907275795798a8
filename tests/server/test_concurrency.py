"""Many control requests at once leave one consistent run and exactly one event per success."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.server.helpers import API, create_run


def test_twenty_threads_of_control_requests(client):
    run = create_run(client)
    rid = run["id"]
    requests = [("lr", {"scale": 0.5 + i / 100}) for i in range(8)]
    requests += [("stage", {"to": 1 + i % 2}) for i in range(6)]
    requests += [("stage/hold", {"hold": bool(i % 2)}) for i in range(6)]

    def send(item):
        path, body = item
        return path, client.post(f"{API}/runs/{rid}/{path}", json=body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(send, requests))
    codes = [r.status_code for _, r in results]
    assert all(c in (200, 202, 409) for c in codes), [r.text for _, r in results if r.status_code >= 500]
    accepted = [r.json()["event_id"] for _, r in results if r.status_code in (200, 202)]
    events = client.get(f"{API}/runs/{rid}/events").json()["items"]
    control_events = [e for e in events if e["kind"] != "run_created"]
    assert sorted(e["id"] for e in control_events) == sorted(accepted)
    final = client.get(f"{API}/runs/{rid}").json()
    last_lr = [e for e in control_events if e["kind"] == "lr_scale"][-1]
    assert final["lr"]["override"] == {"scale": last_lr["payload"]["scale"]}
    stage_moves = [e for e in control_events if e["kind"] == "stage_set"]
    expected_stage = stage_moves[-1]["payload"]["to_stage"] if stage_moves else 1
    assert final["stage"]["index"] == expected_stage
    transitions = client.get(f"{API}/runs/{rid}/stages").json()["transitions"]
    assert len(transitions) == 1 + len(stage_moves)
    for before, after in zip(transitions, transitions[1:]):
        assert after["from_stage"] == before["to_stage"]  # an unbroken chain: no lost update
