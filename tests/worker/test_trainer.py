"""The trainer under a scripted controller: learning, steering between steps, exact resume, non-finite losses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core.lr import LrOverride
from tests.worker.tiny import ScriptedController, tiny_recipe
from worker.checkpoints import load_checkpoint
from worker.data import DataSources
from worker.trainer import Trainer, evaluate


@pytest.fixture(scope="module")
def sources() -> DataSources:
    return DataSources.create(image_height=32)


def make(tmp_path: Path, sources: DataSources, controller: ScriptedController, **patch) -> Trainer:
    trainer = Trainer(tiny_recipe(**patch), controller, tmp_path, sources=sources)
    controller.trainer = trainer
    return trainer


def test_a_tiny_recipe_learns(tmp_path: Path, sources: DataSources) -> None:
    """Loss falls and validation CER improves over a few hundred steps on words."""
    controller = ScriptedController()
    trainer = make(tmp_path, sources, controller, seed=3, **{
        "training": {"steps_per_epoch": 60, "max_epochs": 5, "batch_size": 16},
        "model": {"dropout": 0.0, "hidden_size": 48, "conv_channels": [16, 32, 48, 64]},
        "scheduler": {"name": "constant", "warmup_epochs": 0},
        "tasks": [{"type": "character_recognition"}, {"type": "confidence_prediction", "weight": 0.3}],
        "curriculum": {"stages": [{"name": "words", "content": "words", "success_threshold": 0.99,
                                   "min_epochs": 1, "max_epochs": 100}]},
        "validation": {"samples_per_stage": 48}, "checkpoint": {"every_epochs": 100},
    })
    before = evaluate(trainer.model, trainer.val_batches(), trainer.device)
    assert trainer.run() == "completed"
    first, last = controller.epochs[0].metrics, controller.epochs[-1].metrics
    assert last["train_loss"] < 0.6 * first["train_loss"]
    assert last["val_loss"] < before["val_loss"]
    assert last["val_cer"] < min(before["val_cer"], 1.0)
    assert len(controller.steps) == 300 and controller.steps[-1][0] == 300


def test_directives_apply_at_the_next_step_and_are_acknowledged_with_that_step(tmp_path, sources) -> None:
    controller = ScriptedController(at_step={
        3: {"stage_index": 1, "lr": LrOverride(scale=0.5), "event_ids": (11, 12)},
        5: {"lr": LrOverride(absolute=0.002), "event_ids": (11, 12, 13)},
        7: {"lr": LrOverride(auto_scale=0.5), "event_ids": (14,)},
        9: {"action": "pause", "event_ids": (15,)},
    })
    trainer = make(tmp_path, sources, controller)
    lr = trainer.lr
    assert trainer.run() == "paused"
    steps = {step: (scalars, seen) for step, scalars, seen in controller.steps}
    assert [s for s in steps] == list(range(1, 10))  # paused after step 9
    assert steps[3][1]["content"] == "characters" and steps[4][1]["content"] == "combinations"
    assert steps[4][1]["stage"] == 1
    # step 4 runs at schedule(3 updates) x stage multiplier 0.5 x override 0.5
    schedule_4 = steps[4][0]["lr_schedule"]
    assert steps[4][0]["lr"] == pytest.approx(schedule_4 * 0.5 * 0.5)
    assert steps[6][0]["lr"] == pytest.approx(0.002)
    assert steps[8][0]["lr"] == pytest.approx(steps[8][0]["lr_schedule"] * 0.5 * 0.5)  # stage x automatic scale
    assert controller.acks == [((11, 12), 3), ((13,), 5), ((14,), 7), ((15,), 9)]
    assert lr.override == LrOverride(auto_scale=0.5)
    # the pause saved a checkpoint at step 9, mid-epoch 1, with the stage it trained
    saved = controller.checkpoints[-1]
    assert (saved.step, saved.epoch, saved.stage_index) == (9, 1, 1)
    state = load_checkpoint(saved.uri, saved.sha256)
    assert state["position"] == {"epoch": 1, "micro": 3, "step": 9, "stage": 1}


def test_checkpoint_now_saves_once_per_request(tmp_path, sources) -> None:
    controller = ScriptedController(at_step={2: {"checkpoint_now": True, "event_ids": (1,)},
                                             4: {"checkpoint_now": False}, 5: {"checkpoint_now": True}},
                                    at_epoch={1: {"action": "stop"}})
    trainer = make(tmp_path, sources, controller)
    assert trainer.run() == "stopped"
    assert [(c.step, c.epoch) for c in controller.checkpoints] == [(2, 0), (5, 0), (6, 1)]


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_two_plus_two_epochs_equal_four(tmp_path, sources) -> None:
    """Stopped after epoch 2 (and paused mid-epoch 3), resumed each time, it ends bit-for-bit where 4 straight do.

    The run moves to stage 2 after epoch 1 (new content, replay, lr multiplier) and accumulates 2 micro-batches."""
    patch = {"training": {"accumulation_steps": 2}}
    straight = make(tmp_path / "a", sources, ScriptedController(at_epoch={1: {"stage_index": 1}}), **patch)
    assert straight.run() == "completed"

    first = ScriptedController(at_epoch={1: {"stage_index": 1}, 2: {"action": "stop"}})
    assert make(tmp_path / "b", sources, first, **patch).run() == "stopped"
    second = ScriptedController(at_step={15: {"action": "pause"}}, stage_index=1)
    assert make(tmp_path / "b", sources, second, **patch).run(resume=first.checkpoints[-1]) == "paused"
    third = ScriptedController(stage_index=1)
    resumed = make(tmp_path / "b", sources, third, **patch)
    last = second.checkpoints[-1]
    assert resumed.run(resume={"uri": last.uri, "sha256": last.sha256}) == "completed"

    assert resumed.step == straight.step == 24 and resumed.stage == straight.stage == 1
    a, b = _params(straight), _params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert third.epochs[-1].metrics == straight.controller.epochs[-1].metrics


def test_nonfinite_losses_are_skipped_counted_and_alerted(tmp_path, sources) -> None:
    controller = ScriptedController(at_step={2: {"lr": LrOverride(absolute=1e6)}})
    trainer = make(tmp_path, sources, controller, training={"nonfinite_patience": 3, "grad_clip_norm": None,
                                                          "max_epochs": 2})
    assert trainer.run() == "completed"
    assert controller.alerts and controller.alerts[0][0] == "nonfinite"
    assert controller.alerts[0][1]["consecutive"] == 3
    nonfinite = sum(e.metrics["nonfinite_steps"] for e in controller.epochs)
    assert nonfinite >= 3
    assert any(math.isnan(s["loss"]) for _, s, _ in controller.steps)


def test_retention_answers_delete_files(tmp_path, sources) -> None:
    controller = ScriptedController(at_epoch={2: {"action": "stop"}})
    trainer = make(tmp_path, sources, controller)
    original = controller.report_checkpoint

    def report(saved):
        if controller.checkpoints:
            controller.delete = [controller.checkpoints[-1].uri]
        return original(saved)

    controller.report_checkpoint = report  # type: ignore[method-assign]
    assert trainer.run() == "stopped"
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == [Path(controller.checkpoints[-1].uri).name]


def test_retention_answers_never_delete_outside_the_runs_checkpoints(tmp_path, sources) -> None:
    """A delete list is the server's answer: a path outside this run's checkpoint directory, or
    reached through a symbolic link, is refused and the file stays."""
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "out").symlink_to(tmp_path, target_is_directory=True)
    controller = ScriptedController(at_epoch={2: {"action": "stop"}})
    controller.delete = [f"file://{outside}", str(outside), f"file://{tmp_path}/checkpoints/../precious.txt",
                         f"file://{tmp_path}/checkpoints/out/precious.txt"]
    assert make(tmp_path, sources, controller).run() == "stopped"
    assert outside.read_text() == "keep"


def test_cpu_threads_leave_cores_to_the_data_workers(monkeypatch):
    from worker.trainer import cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    assert cpu_threads(0) == 4
    assert cpu_threads(2) == 2
    assert cpu_threads(8) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr("torch.get_num_threads", lambda: 3)
    assert cpu_threads(2) == 3  # an explicit setting wins
