"""Webhooks against a receiver in the test: every delivery signed (HMAC-SHA256 over timestamp and
body), a 500 retried with backoff until it lands, and deliveries kept in order behind it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.server.helpers import API, create_run

SECRET = "s3cret-that-is-long-enough"


class Receiver:
    """A small HTTP server that answers the first `fail_first` posts with 500 and keeps every one."""

    def __init__(self, fail_first: int = 0):
        self.received: list[tuple[dict, dict, bytes, float]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), json.loads(body), body, time.monotonic()))
                status = 500 if len(receiver.received) <= receiver.fail_first else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def signature_ok(headers: dict, body: bytes) -> bool:
    expected = hmac.new(SECRET.encode(), headers["X-Sala-Timestamp"].encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Sala-Signature"], "sha256=" + expected.hexdigest())


@pytest.fixture
def hooked(settings):
    from fastapi.testclient import TestClient

    from server.app import create_app

    app = create_app(settings.model_copy(update={"webhook_retry_seconds": 0.3}))
    receiver = Receiver(fail_first=1)
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client, receiver
    receiver.close()
    app.state.engine.dispose()


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_signed_deliveries_are_retried_after_a_500_and_stay_in_order(hooked):
    client, receiver = hooked
    hook = client.post(f"{API}/webhooks", json={"url": receiver.url, "secret": SECRET,
                                                "events": ["run_finished", "override_applied"]})
    assert hook.status_code == 201 and "secret" not in hook.json()
    first, second = create_run(client, name="first"), create_run(client, name="second")
    client.post(f"{API}/runs/{first['id']}/lr", json={"scale": 0.5})  # a queued run: in force at once
    client.post(f"{API}/runs/{first['id']}/stop")
    client.post(f"{API}/runs/{second['id']}/stop")
    client.post(f"{API}/runs/{second['id']}/pause", json={})  # refused (409): no event, no delivery
    wait_for(lambda: len(receiver.received) == 4)

    bodies = [body for _, body, _, _ in receiver.received]
    assert [b["delivery_id"] for b in bodies] == [bodies[0]["delivery_id"]] * 2 + [bodies[0]["delivery_id"] + 1,
                                                                                   bodies[0]["delivery_id"] + 2]
    assert [(b["kind"], b["run"]["name"]) for b in bodies[1:]] == [
        ("override_applied", "first"), ("run_finished", "first"), ("run_finished", "second")]
    assert bodies[1]["event"]["kind"] == "lr_scale" and "lr_scale" in bodies[1]["text"]
    assert bodies[2]["text"] == f"run #{first['id']} “first” stopped"
    assert all(signature_ok(headers, raw) for headers, _, raw, _ in receiver.received)
    assert receiver.received[1][3] - receiver.received[0][3] >= 0.25  # the retry waited its backoff

    deliveries = client.get(f"{API}/webhooks/{hook.json()['id']}/deliveries").json()["items"]
    assert [(d["status"], d["attempts"], d["response_status"]) for d in deliveries] == [
        ("delivered", 2, 200), ("delivered", 1, 200), ("delivered", 1, 200)]


def test_a_tampered_body_fails_the_signature(hooked):
    client, receiver = hooked
    receiver.fail_first = 0
    client.post(f"{API}/webhooks", json={"url": receiver.url, "secret": SECRET, "events": ["run_finished"]})
    client.post(f"{API}/runs/{create_run(client)['id']}/stop")
    wait_for(lambda: receiver.received)
    headers, _, raw, _ = receiver.received[0]
    assert signature_ok(headers, raw) and not signature_ok(headers, raw.replace(b"stopped", b"running"))


@pytest.mark.parametrize("body, path", [({"url": "ftp://x", "secret": SECRET, "events": ["alert"]}, "url"),
                                        ({"url": "http://x", "secret": "short", "events": ["alert"]}, "secret"),
                                        ({"url": "http://x", "secret": SECRET, "events": ["nope"]}, "events[0]"),
                                        ({"url": "http://x", "secret": SECRET, "events": []}, "events")])
def test_webhook_bodies_are_validated(client, body, path):
    answer = client.post(f"{API}/webhooks", json=body)
    assert answer.status_code == 422 and path in [d["path"] for d in answer.json()["error"]["details"]]


def test_webhooks_list_and_delete(client):
    made = client.post(f"{API}/webhooks", json={"url": "http://127.0.0.1:9/x", "secret": SECRET,
                                                "events": ["alert"], "name": "ops"}).json()
    assert [w["name"] for w in client.get(f"{API}/webhooks").json()] == ["ops"]
    assert client.delete(f"{API}/webhooks/{made['id']}").status_code == 204
    assert client.get(f"{API}/webhooks/{made['id']}").status_code == 404
