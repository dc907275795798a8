"""`sala up`: one command serves the API and runs workers; Ctrl-C checkpoints and re-queues the
running run, then everything exits, and the next `sala up` finishes the run from there."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile

import httpx

from tests.e2e.conftest import get, wait_for
from tests.e2e.test_worker_e2e import epochs_long
from tests.live import SALA, free_port, sala_env


def start_up(tmp_path, port: int) -> subprocess.Popen:
    fd, name = tempfile.mkstemp(prefix="sala-up-", suffix=".log", dir=tmp_path)
    proc = subprocess.Popen([SALA, "up", "--port", str(port), "--workers", "1"],
                            env={**sala_env(tmp_path), "OMP_NUM_THREADS": "1"}, cwd=tmp_path,
                            stdout=fd, stderr=subprocess.STDOUT)
    os.close(fd)
    proc.log_name = name  # type: ignore[attr-defined]
    return proc


def test_ctrl_c_requeues_the_running_run_and_the_next_up_finishes_it(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    stack = start_up(tmp_path, port)
    log = lambda: open(stack.log_name).read()[-4000:]  # noqa: E731
    try:
        wait_for(lambda: _ready(port), 60, "sala up to serve", diagnostics=log)
        # long epochs, interrupted mid-way: the run cannot finish before Ctrl-C lands
        rid = httpx.post(f"{api}/runs", json={"name": "up", "recipe": epochs_long(3, steps=300)}).json()["id"]
        wait_for(lambda: get(api, f"/runs/{rid}")["step"] >= 20, 180, "training to be under way", diagnostics=log)
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=120) == 0, log()
    finally:
        if stack.poll() is None:
            stack.kill()
    output = open(stack.log_name).read()
    assert "re-queuing" in output

    again = start_up(tmp_path, port)
    try:
        wait_for(lambda: _ready(port), 60, "the second sala up to serve")
        events = get(api, f"/runs/{rid}/events")["items"]
        assert any(e["kind"] == "released" for e in events), [e["kind"] for e in events]
        wait_for(lambda: get(api, f"/runs/{rid}")["status"] == "completed", 240, "the run to complete",
                 diagnostics=lambda: open(again.log_name).read()[-4000:])
        run = get(api, f"/runs/{rid}")
        epochs = get(api, f"/runs/{rid}/epochs")["items"]
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(timeout=120)
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert run["attempt"] == 2  # released, not crashed: claimed twice, no restart counted


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_sala_up_revokes_the_worker_token_it_made_when_it_exits(tmp_path):
    """With auth on, each start makes a token for its local workers; none may outlive the stack."""
    from tests.live import run_sala

    run_sala("tokens", "create", "--role", "admin", "--name", "me", tmp_path=tmp_path)
    port = free_port()
    stack = start_up(tmp_path, port)
    try:
        wait_for(lambda: "Sala is up" in open(stack.log_name).read(), 60, "sala up to start its worker",
                 diagnostics=lambda: open(stack.log_name).read()[-3000:])
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=120) == 0
    finally:
        if stack.poll() is None:
            stack.kill()
    listed = run_sala("tokens", "list", tmp_path=tmp_path).stdout.splitlines()
    made = [line.split("\t") for line in listed if "\tsala-up-" in line]
    assert made and all(fields[-1] == "revoked" for fields in made), listed
