"""`sala runs` against a live server: every command, errors printed as the API gave them, `--json`,
`watch` rendering one frame, and `logs -f` printing a line written after it started."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time

import pytest
from typer.testing import CliRunner

from client import SalaClient
from core.recipe import Recipe
from core.protocol import EpochMessage, Finish, LogBatch, LogLine, WorkerHello
from sala.cli import app
from tests.live import SALA, live_server, sala_env

TINY = "training: {max_epochs: 4}\ncurriculum:\n  stages:\n" + "".join(
    f"    - {{name: s{i}, content: characters, success_threshold: 0.9}}\n" for i in (1, 2, 3))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("cli")) as live:
        yield live


@pytest.fixture
def sala(server, tmp_path):
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["runs", "--url", server.url, *args], catch_exceptions=False)
        assert result.exit_code == code, (args, result.exit_code, result.output)
        return result.output

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    invoke.recipe = recipe
    return invoke


def run_id(output: str) -> int:
    return int(output.split()[1])


def test_create_list_show_edit(sala, server):
    rid = run_id(sala("create", str(sala.recipe), "--name", "cli-demo", "--tag", "cli", "--priority", "-5"))
    assert "cli-demo" in sala("list", "--tag", "cli")
    listed = json.loads(sala("list", "--tag", "cli", "--json"))
    assert [r["id"] for r in listed] == [rid] and listed[0]["priority"] == -5
    shown = sala("show", str(rid))
    assert "1/3 s1" in shown and "queued" in shown
    sala("edit", str(rid), "--name", "renamed", "--note", "## why\nfonts")
    shown = json.loads(sala("show", str(rid), "--json"))
    assert (shown["name"], shown["note"]) == ("renamed", "## why\nfonts")
    assert "fonts" in sala("show", str(rid))


def test_steering_commands_and_their_errors(sala):
    rid = run_id(sala("create", str(sala.recipe), "--name", "steer"))
    assert "stage 3 s3" in sala("stage", str(rid), "3")
    assert "stage 2 s2" in sala("stage", str(rid), "s2")
    assert "stage 3 s3" in sala("stage", str(rid), "--advance")
    assert "(held)" in sala("stage", str(rid), "--hold")
    assert "(held)" not in sala("stage", str(rid), "--release")
    assert "→  3 s3" in sala("stage", str(rid))
    assert json.loads(sala("stage", str(rid), "--json"))["current"]["index"] == 3
    sala("lr", str(rid), "--scale", "0.5")
    assert json.loads(sala("lr", str(rid), "--json"))["override"] == {"scale": 0.5}
    sala("lr", str(rid), "--set", "0.0003")
    assert "override {\"lr\": 0.0003}" in sala("lr", str(rid))
    sala("lr", str(rid), "--clear")
    assert json.loads(sala("lr", str(rid), "--json"))["override"] is None
    assert "error: 409 conflict: cannot resume this run: it is already queued" in sala("resume", str(rid), code=1)
    assert "409 conflict" in sala("checkpoint", str(rid), code=1)  # only a running run
    bad = sala("stage", str(rid), "9", code=1)
    assert "422 validation_error: stage 9 does not exist" in bad and "to: between 1 and 3" in bad
    assert "paused" in sala("pause", str(rid), "--reason", "cli test")
    assert "queued" in sala("resume", str(rid))
    child = run_id(sala("fork", str(rid), "--patch", '{"optimizer": {"lr": 0.0005}}', "--name", "child"))
    assert json.loads(sala("show", str(child), "--json"))["recipe"]["optimizer"]["lr"] == 0.0005
    assert "stopped" in sala("stop", str(rid))
    assert "deleted" in sala("delete", str(rid), "--yes")
    assert "404 not_found" in sala("show", str(rid), code=1)
    assert "no answer" in CliRunner().invoke(app, ["runs", "--url", "http://127.0.0.1:9", "list"]).output


def trained(server) -> tuple[SalaClient, int, str]:
    """A run claimed by a protocol-speaking 'worker' (the highest priority, so claimed first) with
    two epochs reported."""
    client = SalaClient(server.url)
    run = client.create_run({"training": {"max_epochs": 6}}, name="watched", priority=1000)
    claim = client.claim(client.register(WorkerHello(name="w")).worker_id)
    assert claim.run_id == run.id
    for epoch in (1, 2):
        client.report_epoch(run.id, EpochMessage(lease_token=claim.lease_token, epoch=epoch, stage_index=0,
                                                 step=10 * epoch, metrics={"val_cer": 0.5 / epoch, "train_loss": 2.0},
                                                 lr={"effective": 0.001}, duration_s=30.0))
    return client, run.id, claim.lease_token


def line(message: str) -> LogLine:
    return LogLine(ts=dt.datetime.now(dt.UTC), level="INFO", source="sala.trainer", message=message)


def test_watch_renders_one_frame_and_checkpoints_list(sala, server):
    client, rid, _ = trained(server)
    frame = sala("watch", str(rid), "--once")
    assert "watched" in frame and "running" in frame and "epoch 2/6" in frame
    first = Recipe().curriculum.stages[0]
    assert f"val_sequence_accuracy ≥ {first.success_threshold:g}" in frame and "≤ 0h02m00s" in frame  # 4 epochs × 30 s
    assert "0.25" in frame  # epoch 2's val_cer in the last-epochs table
    assert json.loads(sala("checkpoints", str(rid), "--json")) == []


def test_logs_follow_prints_a_line_written_after_it_started(server, tmp_path):
    client, rid, lease = trained(server)
    client.send_logs(rid, LogBatch(lease_token=lease, lines=[line("before follow")]))
    env = sala_env(tmp_path, {"SALA_URL": server.url})
    follower = subprocess.Popen([SALA, "runs", "logs", str(rid), "-f"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert "before follow" in follower.stdout.readline()
        time.sleep(0.5)
        client.send_logs(rid, LogBatch(lease_token=lease, lines=[line("written after it started")]))
        assert "written after it started" in follower.stdout.readline()
        client.finish(rid, Finish(lease_token=lease, status="failed", error="x"))
        assert follower.wait(timeout=20) == 0  # the run ended: -f stops
    finally:
        follower.kill()
    plain = subprocess.run([SALA, "runs", "logs", str(rid), "--json"], env=env, capture_output=True, text=True)
    assert [json.loads(row)["message"] for row in plain.stdout.splitlines()] == [
        "before follow", "written after it started"]
