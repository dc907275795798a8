"""The `sala` console script as a person runs it: real processes, a real port, real exit codes."""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest

from tests.live import SALA, live_server, run_sala, sala_env
from tests.server.helpers import TINY_RECIPE


def test_server_serves_the_run_lifecycle_and_warns_that_auth_is_off(tmp_path):
    with live_server(tmp_path) as server:
        api = server.api
        created = httpx.post(f"{api}/runs", json={"name": "cli", "recipe": TINY_RECIPE}, timeout=10)
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        assert created.json()["status"] == "queued"

        listed = httpx.get(f"{api}/runs", timeout=10).json()
        assert [r["id"] for r in listed["items"]] == [run_id]

        for action, status in (("pause", "paused"), ("resume", "queued"), ("stop", "stopped")):
            answer = httpx.post(f"{api}/runs/{run_id}/{action}", timeout=10)
            assert answer.status_code == 202, answer.text
            assert answer.json()["run"]["status"] == status
        assert httpx.get(f"{api}/runs/{run_id}", timeout=10).json()["status"] == "stopped"

        again = httpx.post(f"{api}/runs/{run_id}/resume", timeout=10)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"

        log = server.output()
    assert "authentication is OFF" in log, log


def test_server_refuses_a_public_address_without_tokens(tmp_path):
    result = subprocess.run([SALA, "server", "--host", "0.0.0.0", "--port", "1"], env=sala_env(tmp_path),
                            cwd=tmp_path, text=True, capture_output=True, timeout=60)
    assert result.returncode != 0
    assert "sala tokens create" in result.stderr, result.stderr


def test_a_created_token_authenticates_and_turns_auth_on(tmp_path):
    created = run_sala("tokens", "create", "--role", "viewer", "--name", "x", tmp_path=tmp_path)
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sala_"), created.stdout
    token = lines[0]
    assert token not in created.stderr  # printed once, on stdout only

    listed = run_sala("tokens", "list", tmp_path=tmp_path)
    assert "viewer\tx" in listed.stdout and token not in listed.stdout

    with live_server(tmp_path) as server:
        bare = httpx.get(f"{server.api}/runs", timeout=10)
        assert bare.status_code == 401
        assert bare.json()["error"]["code"] == "unauthorized"
        wrong = httpx.get(f"{server.api}/runs", headers={"Authorization": "Bearer sala_nope"}, timeout=10)
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.api}/runs", headers=auth, timeout=10).status_code == 200
        create = httpx.post(f"{server.api}/runs", json={"name": "no"}, headers=auth, timeout=10)
        assert create.status_code == 403  # a viewer reads, it does not control
        log = server.output()
    assert "authentication is OFF" not in log


def test_tokens_create_rejects_an_unknown_role(tmp_path):
    result = run_sala("tokens", "create", "--role", "root", "--name", "x", tmp_path=tmp_path)
    assert result.returncode != 0
    assert "viewer" in result.stderr and result.stdout == ""


def test_db_upgrade_then_current_shows_head(tmp_path):
    upgraded = run_sala("db", "upgrade", tmp_path=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    current = run_sala("db", "current", tmp_path=tmp_path)
    assert current.returncode == 0, current.stderr
    fields = dict(part.split(": ") for part in current.stdout.strip().split("  "))
    assert fields["current"] == fields["head"] and fields["head"] not in ("", "None"), current.stdout

    down = run_sala("db", "downgrade", "base", tmp_path=tmp_path)
    assert down.returncode == 0, down.stderr
    after = run_sala("db", "current", tmp_path=tmp_path)
    assert after.stdout.startswith("current: None"), after.stdout


def test_recipe_init_output_validates(tmp_path):
    init = run_sala("recipe", "init", tmp_path=tmp_path)
    assert init.returncode == 0, init.stderr
    path = tmp_path / "recipe.yaml"
    path.write_text(init.stdout, encoding="utf-8")
    validated = run_sala("recipe", "validate", str(path), tmp_path=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith("OK")

    path.write_text(re.sub(r"max_epochs: \d+", "max_epochs: -3", init.stdout, count=1), encoding="utf-8")
    broken = run_sala("recipe", "validate", str(path), tmp_path=tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "training.max_epochs" in broken.stderr


@pytest.mark.parametrize("command", [["server", "--help"], ["tokens", "--help"], ["db", "--help"]])
def test_help_exits_zero(tmp_path, command):
    assert run_sala(*command, tmp_path=tmp_path).returncode == 0
