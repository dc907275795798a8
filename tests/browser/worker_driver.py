"""`bulk_history` fills one run's history directly in the database (5,000 epochs, 10^5 step points)
for the dashboard's load-time test and `bench/dashboard_load.py`, with the metric names the real
trainer reports (`train_loss`, `train_loss_<task>`, `task_weight_<task>`, `val_*`).

Everything else in the browser tests is driven by real `sala worker` processes
(tests/browser/test_real_worker.py)."""

from __future__ import annotations

import math
import random

TASKS = ("character_recognition", "confidence_prediction", "language_modeling")


# ---------------------------------------------------------------------------------------------

def bulk_history(database_url: str, run_id: int, *, epochs: int = 5000, steps: int = 100_000,
                 stages: int = 5, seed: int = 0) -> None:
    """Write a long history for one run straight into the database through the server's models:
    `epochs` epoch reports walking through `stages` stages and `steps` step scalars."""
    from sqlalchemy import insert

    from server.db import make_engine
    from server.models import EpochReport, Run, StageTransition, StepScalar

    rng = random.Random(seed)
    spe = max(1, steps // epochs)
    per_stage = max(1, epochs // stages)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            epoch_rows, transitions = [], []
            for e in range(1, epochs + 1):
                stage = min(stages - 1, (e - 1) // per_stage)
                if (e - 1) % per_stage == 0 and stage < stages and (e == 1 or stage != min(stages - 1, (e - 2) // per_stage)):
                    transitions.append({"run_id": run_id, "from_stage": stage - 1 if stage else None, "to_stage": stage,
                                        "epoch": e - 1, "reason": "threshold" if stage else "start",
                                        "actor": "curriculum", "metrics": {}})
                x = ((e - 1) % per_stage) / per_stage
                acc = 0.95 - 0.6 * math.exp(-8 * x) + 0.02 * rng.random()
                loss = 0.3 + 2.0 * math.exp(-e / 800) + 0.05 * rng.random()
                metrics = {"train_loss": loss, "val_loss": loss * 1.1, "val_sequence_accuracy": acc,
                           "val_cer": (1 - acc) * 0.3, "val_character_accuracy": min(1.0, acc + 0.04)}
                for i, task in enumerate(TASKS):
                    metrics[f"train_loss_{task}"] = loss * (1 - 0.25 * i)
                    metrics[f"task_weight_{task}"] = (1.0, 0.3, 0.2)[i] * (1 + 0.2 * math.sin(e / 50 + i))
                lr = 1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * e / epochs)))
                epoch_rows.append({"run_id": run_id, "attempt": 1, "epoch": e, "stage_index": stage, "step": e * spe,
                                   "metrics": metrics, "lr": {"schedule": lr, "stage_multiplier": 1.0, "override_scale": 1.0,
                                                                "override_absolute": None, "effective": lr},
                                   "duration_s": 1.0, "samples_per_s": 1000.0, "superseded": False})
            conn.execute(insert(EpochReport), epoch_rows)
            conn.execute(insert(StageTransition), transitions)
            for start in range(0, steps, 20_000):
                conn.execute(insert(StepScalar), [
                    {"run_id": run_id, "step": s, "values": {"loss": 0.3 + 2.0 * math.exp(-s / 16000) + 0.1 * rng.random()}}
                    for s in range(start + 1, min(steps, start + 20_000) + 1)])
            run = conn.execute(Run.__table__.select().where(Run.id == run_id)).mappings().one()
            last = epoch_rows[-1]
            conn.execute(Run.__table__.update().where(Run.id == run_id).values(
                epoch=epochs, step=max(steps, epochs * spe), stage_index=last["stage_index"],
                latest_metrics={**last["metrics"], "epoch": epochs, "stage": last["stage_index"]},
                lr_schedule=last["lr"]["schedule"]))
            assert run is not None
    finally:
        engine.dispose()
