"""Web pages cannot steer a server whose auth is off (loopback, no tokens): a simple cross-site
POST is refused by its type (415) or its Origin (403), and a DNS-rebound Host name by its name
(403); the server's own pages, and origins and names an operator lists, still work."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from tests.server.helpers import API, create_run


def _status(client, run_id: int) -> str:
    return client.get(f"{API}/runs/{run_id}").json()["status"]


@pytest.mark.parametrize("headers, content, status", [
    ({"Content-Type": "text/plain"}, b"", 415),                                  # <form enctype=text/plain>
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"reason=x", 415),  # a plain <form>
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", 415),
    ({"Origin": "http://evil.example"}, b"", 403),                               # fetch(url, {method: "POST"})
    ({"Origin": "null"}, b"", 403),                                              # a sandboxed frame
    ({"Origin": "http://evil.example", "Content-Type": "application/json"}, b"{}", 403),
])
def test_a_cross_site_request_cannot_pause_a_run(client, headers, content, status):
    run = create_run(client)
    answer = client.post(f"{API}/runs/{run['id']}/pause", content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == {415: "unsupported_media_type", 403: "forbidden"}[status]
    assert _status(client, run["id"]) == "queued"


def test_a_rebound_host_name_is_refused_and_loopback_names_are_served(client):
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io", "192.168.1.7:8000"):
        answer = client.get(f"{API}/runs", headers={"Host": host})
        assert answer.status_code == 403, host
        assert "SALA_ALLOWED_HOSTS" in answer.json()["error"]["message"]
    for host in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.1.2.3"):
        assert client.get(f"{API}/runs", headers={"Host": host}).status_code == 200, host


def test_the_servers_own_pages_and_json_clients_still_steer(client):
    run = create_run(client)
    own_page = client.post(f"{API}/runs/{run['id']}/pause", json={"reason": "from the dashboard"},
                           headers={"Origin": "http://127.0.0.1"})
    assert own_page.status_code == 202, own_page.text
    assert client.post(f"{API}/runs/{run['id']}/resume").status_code == 202  # no body, no Origin: curl
    typed = client.post(f"{API}/runs/{run['id']}/stop", content=b'{"reason": "x"}',
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert typed.status_code == 202, typed.text


def test_listed_origins_and_host_names_are_allowed(settings):
    app = create_app(settings.model_copy(update={"cors_origins": "https://ops.example.com",
                                                  "allowed_hosts": "sala.internal"}))
    ops = {"Origin": "https://ops.example.com"}
    with TestClient(app, base_url="http://sala.internal:8000") as client:
        run = create_run(client)
        preflight = client.options(f"{API}/runs/{run['id']}/pause", headers={
            **ops, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://ops.example.com"
        assert client.post(f"{API}/runs/{run['id']}/pause", json={}, headers=ops).status_code == 202
        other = client.post(f"{API}/runs/{run['id']}/resume", headers={"Origin": "https://evil.example"})
        assert other.status_code == 403 and _status(client, run["id"]) == "paused"
    app.state.engine.dispose()
