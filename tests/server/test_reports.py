"""Epoch reports read only the history the curriculum looks at (server/reports.py `_history`)."""

from __future__ import annotations

import random

from sqlalchemy import select

from core import curriculum
from server import reports, runs
from server.models import EpochReport
from tests.server.helpers import TINY_RECIPE

RECIPE = {**TINY_RECIPE, "auto_apply": ["plateau", "threshold_unreachable", "nonfinite_steps"]}


def test_the_curriculum_decides_alike_on_the_bounded_and_the_whole_history(app):
    rng = random.Random(7)
    with app.state.write_sessionmaker() as db, db.begin():
        run = runs.create_run(db, name="h", recipe=RECIPE, tags=[], max_restarts=None, priority=0, actor="t")
        stage = 0
        for epoch in range(1, 41):
            if rng.random() < 0.15:
                stage = 1 - stage
            metrics = {"val_sequence_accuracy": rng.random() * 0.4, "train_sequence_accuracy": rng.random(),
                       "nonfinite_steps": rng.choice([0, 0, 1, 2])}
            db.add(EpochReport(run_id=run.id, attempt=1, epoch=epoch, stage_index=stage, step=epoch,
                               metrics=metrics, lr={}, superseded=epoch % 11 == 0))
            db.flush()
            for current in (0, 1):
                run.stage_index = current
                whole = [curriculum.EpochRecord(epoch=e, stage=s, metrics=m) for e, s, m in db.execute(
                    select(EpochReport.epoch, EpochReport.stage_index, EpochReport.metrics).where(
                        EpochReport.run_id == run.id, EpochReport.superseded.is_(False)).order_by(EpochReport.epoch))]
                bounded = reports._history(db, run)
                assert len(bounded) <= len(whole)
                args = dict(stage=current, held=False, trained=current, acted=set())
                assert curriculum.judge(runs.recipe_of(run), history=bounded, **args) == \
                    curriculum.judge(runs.recipe_of(run), history=whole, **args), (epoch, current)
