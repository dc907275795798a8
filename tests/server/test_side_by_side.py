"""The same requests, reports and alarms sent to the real server and to `LocalController` leave both
with the same stage, the same lr state and the same effective lr: both apply core's rules (lr
set / scale / absolute / clear, rollbacks, the curriculum and the advice a recipe auto-applies)."""

from __future__ import annotations

import hashlib

import pytest

from core import lr as lr_rules
from core.lr import LrOverride
from core.protocol import CheckpointReport, EpochReport
from core.recipe import Recipe
from tests.server.helpers import API, checkpoint_uri, create_run
from tests.server.test_worker_protocol import claim, register
from worker.controller import Rollback
from worker.local import LocalController

RECIPE = {
    "name": "side-by-side",
    "training": {"batch_size": 4, "steps_per_epoch": 2, "max_epochs": 30, "max_rollbacks": 3},
    "optimizer": {"lr": 0.002},
    "curriculum": {"stages": [
        {"name": "chars", "content": "characters", "success_threshold": 0.9, "min_epochs": 1, "max_epochs": 20,
         "patience": 20, "lr_multiplier": 1.0},
        {"name": "combos", "content": "combinations", "success_threshold": 0.9, "min_epochs": 1,
         "max_epochs": 20, "patience": 20, "lr_multiplier": 0.5},
    ]},
    "auto_apply": ["plateau"],
}


class Server:
    def __init__(self, client):
        self.client = client
        self.run_id = create_run(client, name="served", recipe=RECIPE)["id"]
        self.worker = register(client)
        self.lease = claim(client, self.worker).json()["lease_token"]

    def post(self, path: str, body: dict | None = None) -> dict:
        answer = self.client.post(f"{API}/runs/{self.run_id}/{path}", json=body)
        assert answer.status_code < 300, answer.text
        return answer.json()

    def steer(self, what: str, value=None) -> None:
        if what in ("lr", "scale"):
            self.post("lr", {what: value})
        elif what == "clear":
            self.post("lr", {"clear": True})
        elif what == "stage":
            self.post("stage", {"to": value})
        elif what == "hold":
            self.post("stage/hold", {"hold": value})

    def epoch(self, report: EpochReport) -> str:
        return self.post("epochs", {**report.model_dump(), "lease_token": self.lease})["directive"]["action"]

    def checkpoint(self, report: CheckpointReport) -> None:
        uri = checkpoint_uri(self.client, self.run_id, report.uri.rsplit("/", 1)[1])
        self.post("checkpoints", {**report.model_dump(), "uri": uri, "lease_token": self.lease})

    def rollback(self) -> None:
        answer = self.post("alerts", {"lease_token": self.lease, "kind": "nonfinite", "detail": {"consecutive": 3}})
        assert answer["action"] == "rollback"
        self.post("finish", {"lease_token": self.lease, "status": "queued"})  # as the worker does
        self.lease = claim(self.client, self.worker).json()["lease_token"]

    def state(self) -> tuple[int, LrOverride, float]:
        beat = self.post("heartbeat", {"lease_token": self.lease, "epoch": 0, "step": 0})["directive"]
        run = self.client.get(f"{API}/runs/{self.run_id}").json()
        return beat["stage_index"], LrOverride.model_validate(beat["lr"]), run["lr"]["effective"]


class Local:
    def __init__(self, out):
        self.recipe = Recipe.model_validate(RECIPE)
        self.controller = LocalController(self.recipe, out)

    def steer(self, what: str, value=None) -> None:
        requests = {"lr": {"lr": value}, "scale": {"lr_scale": value}, "clear": {"clear_lr": True},
                    "stage": {"stage": value}, "hold": {"hold": value}}
        self.controller.request(**requests[what])

    def epoch(self, report: EpochReport) -> str:
        return self.controller.report_epoch(report).action

    def checkpoint(self, report: CheckpointReport) -> None:
        self.controller.report_checkpoint(report)

    def rollback(self) -> None:
        with pytest.raises(Rollback):
            self.controller.alert("nonfinite", {"consecutive": 3})
        resume = self.controller.latest_checkpoint()  # as LocalController.train does
        self.controller.rewind(resume.epoch if resume else 0)

    def state(self) -> tuple[int, LrOverride, float]:
        d = self.controller.poll(0, 0)
        multiplier = self.recipe.curriculum.stages[d.stage_index].lr_multiplier
        return d.stage_index, d.lr, lr_rules.effective(self.recipe.optimizer.lr, multiplier, d.lr)


def report(epoch: int, stage: int, accuracy: float) -> EpochReport:
    return EpochReport(epoch=epoch, stage_index=stage, step=epoch * 2, metrics={"val_sequence_accuracy": accuracy})


def saved(epoch: int, stage: int) -> CheckpointReport:
    return CheckpointReport(uri=f"file:///tmp/side-{epoch}.pt", epoch=epoch, step=epoch * 2, stage_index=stage,
                            sha256=hashlib.sha256(str(epoch).encode()).hexdigest(), size=1, metrics={})


def test_server_and_local_controller_agree_step_by_step(client, tmp_path):
    sides = [Server(client), Local(tmp_path)]
    expected_lr = []

    def same(expect_stage: int, expect_lr: LrOverride) -> None:
        states = [side.state() for side in sides]
        assert states[0][:2] == states[1][:2] == (expect_stage, expect_lr)
        assert states[0][2] == pytest.approx(states[1][2])
        expected_lr.append(states[0][2])

    def both(step: str, *args) -> list:
        return [getattr(side, step)(*args) for side in sides]

    both("steer", "scale", 0.5)
    same(0, LrOverride(scale=0.5))
    both("steer", "lr", 3e-4)
    same(0, LrOverride(absolute=3e-4))
    both("rollback")                                     # halves the absolute lr in force
    same(0, LrOverride(absolute=1.5e-4, auto_scale=0.5))
    both("steer", "scale", 0.25)                         # composes with the rollback's halving
    same(0, LrOverride(scale=0.25, auto_scale=0.5))
    assert expected_lr[-1] == pytest.approx(0.002 * 0.25 * 0.5)
    both("steer", "stage", "combos")
    same(1, LrOverride(scale=0.25, auto_scale=0.5))
    assert expected_lr[-1] == pytest.approx(0.002 * 0.5 * 0.25 * 0.5)
    both("steer", "stage", "chars")
    both("steer", "clear")
    same(0, LrOverride(auto_scale=0.5))

    both("steer", "hold", True)                          # a held stage is not auto-advanced
    for n in range(1, 6):
        assert both("epoch", report(n, 0, 0.3)) == ["continue", "continue"]
    same(0, LrOverride(auto_scale=0.5))
    both("steer", "hold", False)
    assert both("epoch", report(6, 0, 0.3)) == ["continue", "continue"]   # the plateau, now acted on
    same(1, LrOverride(auto_scale=0.5))

    both("checkpoint", saved(6, 1))
    both("rollback")
    same(1, LrOverride(auto_scale=0.25))
    assert both("epoch", report(7, 1, 0.5)) == ["continue", "continue"]
    assert both("epoch", report(8, 1, 0.95)) == ["complete", "complete"]  # the last stage passed
    same(1, LrOverride(auto_scale=0.25))
    assert client.get(f"{API}/runs/{sides[0].run_id}").json()["curriculum_complete"] is True
