"""LocalController: the curriculum policy in process, metrics.jsonl, retention, steering, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.lr import LrOverride
from core.protocol import CheckpointReport, EpochReport
from tests.worker.tiny import tiny_recipe
from worker.data import DataSources
from worker.local import LocalController
from worker.trainer import Trainer


def summary(epoch: int, stage: int, acc: float, cer: float = 0.5) -> EpochReport:
    return EpochReport(epoch=epoch, stage_index=stage, step=epoch * 6, lr={"effective": 0.001},
                        metrics={"val_sequence_accuracy": acc, "val_cer": cer, "train_loss": float("nan")},
                        duration_s=1.0, samples_per_s=8.0)


def saved(epoch: int, cer: float) -> CheckpointReport:
    return CheckpointReport(uri=f"memory://ck/{epoch}.pt", epoch=epoch, step=epoch * 6, stage_index=0,
                           sha256="0" * 64, size=1, metrics={"val_cer": cer})


def test_curriculum_moves_and_completes_and_metrics_are_written(tmp_path: Path) -> None:
    recipe = tiny_recipe(training={"max_epochs": 10})
    controller = LocalController(recipe, tmp_path)
    assert controller.report_epoch(summary(1, 0, 0.5)).stage_index == 0    # below threshold
    moved = controller.report_epoch(summary(2, 0, 0.5))                    # chars max_epochs=2
    assert (moved.stage_index, moved.action) == (1, "continue")
    assert controller.transitions[-1] == {"epoch": 2, "from": 0, "to": 1, "reason": "max_epochs"}
    done = controller.report_epoch(summary(3, 1, 1.0))                     # last stage passes
    assert done.action == "complete"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["stage"], r["stage_name"]) for r in rows] == [(1, 0, "chars"), (2, 0, "chars"), (3, 1, "combos")]
    assert rows[0]["metrics"]["train_loss"] is None  # NaN is written as null


def test_max_epochs_completes_and_held_stage_stays(tmp_path: Path) -> None:
    controller = LocalController(tiny_recipe(training={"max_epochs": 2}), tmp_path)
    controller.request(hold=True)
    assert controller.report_epoch(summary(1, 0, 1.0)).stage_index == 0
    assert controller.report_epoch(summary(2, 0, 1.0)).action == "complete"


def test_retention_keeps_last_and_best(tmp_path: Path) -> None:
    controller = LocalController(tiny_recipe(), tmp_path)  # keep_last 2, keep_best 1 by val_cer
    assert controller.report_checkpoint(saved(1, 0.1)) == []
    assert controller.report_checkpoint(saved(2, 0.5)) == []
    assert controller.report_checkpoint(saved(3, 0.6)) == []            # 1 is the best, 2-3 the last
    assert controller.report_checkpoint(saved(4, 0.7)) == ["memory://ck/2.pt"]
    kept = [json.loads(line)["epoch"] for line in (tmp_path / "checkpoints.jsonl").read_text().splitlines()]
    assert kept == [1, 3, 4]
    assert controller.best_checkpoint().epoch == 1 and controller.latest_checkpoint().epoch == 4


def test_requests_carry_event_ids_until_acknowledged(tmp_path: Path) -> None:
    controller = LocalController(tiny_recipe(), tmp_path)
    a = controller.request(lr_scale=0.5)
    b = controller.request(stage="combos", checkpoint=True)
    d = controller.poll(0, 0)
    assert (d.lr, d.stage_index, d.checkpoint_now, d.event_ids) == (LrOverride(scale=0.5), 1, True, (a, b))
    controller.acknowledge((a,), 7)
    assert controller.poll(7, 0).event_ids == (b,) and controller.acknowledged == {a: 7}
    controller.request(clear_lr=True)
    assert controller.poll(8, 0).lr == LrOverride()


def test_trains_with_the_trainer_and_resumes_from_its_files(tmp_path: Path) -> None:
    sources = DataSources.create(image_height=32)
    recipe = tiny_recipe(training={"max_epochs": 3}, checkpoint={"keep_last": 1, "keep_best": 0})
    controller = LocalController(recipe, tmp_path)
    controller.request(action="stop")
    assert Trainer(recipe, controller, tmp_path, sources=sources).run() == "stopped"
    first = controller.latest_checkpoint()
    assert (first.epoch, first.step) == (0, 0)
    controller = LocalController.resume(recipe, tmp_path, epoch=first.epoch, stage=first.stage_index)
    assert Trainer(recipe, controller, tmp_path, sources=sources).run(resume=first) == "completed"
    assert [s.epoch for s in controller.checkpoints] == [3]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [Path(controller.checkpoints[0].uri).name]
    assert controller.transitions and controller.transitions[0]["to"] == 1  # chars max_epochs=2 moved on

    again = LocalController.resume(recipe, tmp_path, epoch=2, stage=1)
    assert [h.epoch for h in again.history] == [1, 2]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_nonfinite_losses_roll_back_with_a_lower_lr_then_fail(tmp_path: Path) -> None:
    """As the server does: `training.max_rollbacks` rollbacks, each resuming a fresh trainer with the
    lr in force halved, then the run fails."""
    from worker.controller import RunFailed

    sources = DataSources.create(image_height=32)
    recipe = tiny_recipe(training={"max_rollbacks": 1, "nonfinite_patience": 3, "grad_clip_norm": None})
    controller = LocalController(recipe, tmp_path)
    controller.request(lr=1e6)  # diverges at once
    attempts = []

    def trainer() -> Trainer:
        attempts.append(controller.poll(0, 0).lr.absolute)
        return Trainer(recipe, controller, tmp_path, sources=sources)

    with pytest.raises(RunFailed, match="after 1 rollback"):
        controller.train(trainer)
    assert attempts == [1e6, 5e5] and controller.rollbacks == 1
    assert controller.directive.lr == LrOverride(absolute=5e5, auto_scale=0.5)
    assert [a["kind"] for a in controller.alerts] == ["nonfinite", "nonfinite"]
