"""A fake worker that drives runs through the REAL worker protocol over HTTP, for dashboard tests
and benchmarks: register, claim, heartbeats (step scalars, acknowledgements of applied event ids
with the step), epoch reports with improving metrics, checkpoint reports, finish.

It trains nothing; it obeys the directive exactly as a worker must: the stage it trains, the lr
(schedule × stage multiplier × override, or the absolute override), pause / stop / complete, and
"checkpoint now". Stages advance through the server's curriculum answers, never on its own.

    with FakeWorker(server.api, epoch_seconds=0.3) as worker:
        ...                      # runs created now are claimed and trained
        worker.wait_for(lambda: worker.epochs_reported >= 3)

`bulk_history` fills one run's history directly in the database (5,000 epochs, 10^5 step points)
for the dashboard's load-time check.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

KHMER_SAMPLES = ["ក", "ក្ក", "ស្ត្រី", "កម្ពុជា", "ភាសាខ្មែរ", "ព្រះរាជាណាចក្រកម្ពុជា"]
TASKS = ("character_recognition", "confidence_prediction", "language_modeling")


class FakeWorker(threading.Thread):
    def __init__(self, api: str, *, token: str | None = None, name: str = "fake-worker",
                 epoch_seconds: float = 0.3, beats_per_epoch: int = 3, checkpoint_every: int = 5,
                 seed: int = 0):
        super().__init__(name=name, daemon=True)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=api, headers=headers, timeout=15)
        self.worker_name = name
        self.epoch_seconds = epoch_seconds
        self.beats_per_epoch = max(1, beats_per_epoch)
        self.checkpoint_every = checkpoint_every
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.epochs_reported = 0
        self.acked: list[tuple[int, int]] = []  # (event id, step) acknowledged
        self.runs_finished: list[tuple[int, str]] = []
        self.worker_id: int | None = None
        self.artifacts_url: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> FakeWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self.join(timeout)
        self.http.close()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise AssertionError(f"fake worker failed: {self.error!r}") from self.error
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def run(self) -> None:
        try:
            answer = self._post("/workers", {"name": self.worker_name, "host": "test", "devices": ["cpu"],
                                             "version": "fake"})
            self.worker_id, self.artifacts_url = answer["worker_id"], answer["artifacts_url"]
            while not self.stopping.is_set():
                response = self.http.post(f"/workers/{self.worker_id}/claim", json={"wait_s": 0.5})
                if response.status_code == 204:
                    continue
                response.raise_for_status()
                _Training(self, response.json()).loop()
        except BaseException as exc:  # surfaced by wait_for
            if not self.stopping.is_set():
                self.error = exc

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()


class LeaseLost(Exception):
    pass


class _Training:
    """One claimed run: a simulated training loop that obeys the directive."""

    def __init__(self, worker: FakeWorker, claim: dict[str, Any]):
        self.w = worker
        self.run_id = claim["run"]["id"]
        self.lease = claim["lease_token"]
        self.recipe = claim["recipe"]
        self.spe = int(self.recipe["training"]["steps_per_epoch"])
        self.base_lr = float(self.recipe["optimizer"]["lr"])
        resume = claim.get("resume_checkpoint")
        self.epoch = resume["epoch"] if resume else 0
        self.step = resume["step"] if resume else 0
        self.stage_epochs = 0
        self.to_ack: dict[int, int] = {}
        self.directive: dict[str, Any] = {}
        self.stage = 0
        self.adopt(claim["directive"])

    def adopt(self, directive: dict[str, Any]) -> None:
        """Take the whole desired state; every event id it lists is applied from the next step."""
        if directive["stage"]["index"] != self.stage:
            self.stage = directive["stage"]["index"]
            self.stage_epochs = 0
        self.directive = directive
        for event_id in directive.get("event_ids", []):
            self.to_ack.setdefault(event_id, self.step)

    def pop_acks(self, kinds_done: bool = True) -> list[dict[str, int]]:
        acks = [{"id": i, "step": s} for i, s in self.to_ack.items()]
        self.w.acked.extend((a["id"], a["step"]) for a in acks)
        self.to_ack.clear()
        return acks

    def lr(self) -> dict[str, float]:
        epochs = max(1, int(self.recipe["training"]["max_epochs"]))
        schedule = self.base_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, self.epoch / epochs))))
        lr = self.directive["lr"]
        if lr.get("override_lr") is not None:
            effective = float(lr["override_lr"])
        else:
            effective = schedule * float(lr["stage_multiplier"]) * float(lr.get("override_scale") or 1.0)
        return {"schedule": schedule, "stage_multiplier": float(lr["stage_multiplier"]), "effective": effective}

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.w.http.post(f"/runs/{self.run_id}/{path}", json={"lease_token": self.lease, **body})
        if response.status_code == 409:
            raise LeaseLost(response.text)
        response.raise_for_status()
        return response.json()

    def loop(self) -> None:
        try:
            while not self.w.stopping.is_set():
                action = self.directive["action"]
                if action in ("pause", "stop"):
                    self.checkpoint()
                    self.finish("paused" if action == "pause" else "stopped")
                    return
                if action == "complete":
                    self.checkpoint()
                    self.finish("completed")
                    return
                if self.directive.get("checkpoint_now"):
                    self.checkpoint()
                self.train_epoch()
        except LeaseLost:
            return

    def train_epoch(self) -> None:
        per_beat = max(1, self.spe // self.w.beats_per_epoch)
        while self.step < (self.epoch + 1) * self.spe:
            time.sleep(self.w.epoch_seconds / self.w.beats_per_epoch)
            lr = self.lr()
            scalars = []
            for _ in range(min(per_beat, (self.epoch + 1) * self.spe - self.step)):
                self.step += 1
                scalars.append({"step": self.step, "loss": round(self.loss(self.step / self.spe), 5),
                                "lr": lr["effective"]})
            answer = self.call("heartbeat", {"epoch": self.epoch, "step": self.step, "scalars": scalars,
                                             "lr_schedule": lr["schedule"], "applied": self.pop_acks()})
            self.adopt(answer["directive"])
            if self.directive["action"] != "continue" or self.directive.get("checkpoint_now"):
                return  # honour pause / stop / checkpoint at the next step, not the epoch's end
        self.epoch += 1
        self.stage_epochs += 1
        answer = self.call("epochs", {"epoch": self.epoch, "stage": self.stage, "step": self.step,
                                      "metrics": self.metrics(), "lr": self.lr(),
                                      "duration_s": self.w.epoch_seconds,
                                      "samples_per_s": round(1000 + 50 * self.w.rng.random(), 1),
                                      "applied": self.pop_acks()})
        self.w.epochs_reported += 1
        self.adopt(answer["directive"])
        if self.w.checkpoint_every and self.epoch % self.w.checkpoint_every == 0:
            self.checkpoint()

    def loss(self, x: float) -> float:
        noise = 0.04 * (self.w.rng.random() - 0.5)
        return 0.3 + 2.2 * math.exp(-x / 8) + 0.15 * (self.stage - 1) * math.exp(-self.stage_epochs / 2) + noise

    def metrics(self) -> dict[str, Any]:
        rng = self.w.rng
        # accuracy climbs within a stage and dips when a harder stage starts
        acc = min(0.99, 0.97 - (0.55 + 0.1 * self.stage) * math.exp(-self.stage_epochs / 2.0)
                  + 0.02 * (rng.random() - 0.5))
        acc = max(0.0, acc)
        cer = max(0.0, (1 - acc) * 0.35 + 0.01 * rng.random())
        loss = self.loss(self.epoch)
        out: dict[str, Any] = {
            "train_loss": round(loss, 4),
            "val_loss": round(loss * 1.1, 4),
            "val_sequence_accuracy": round(acc, 4),
            "val_character_accuracy": round(min(1.0, acc + 0.05), 4),
            "val_cer": round(cer, 4),
            "val_example": f"{KHMER_SAMPLES[(self.stage - 1) % len(KHMER_SAMPLES)]} → "
                           f"{KHMER_SAMPLES[(self.stage - 1) % len(KHMER_SAMPLES)]}",
        }
        for i, task in enumerate(TASKS):
            out[f"loss_{task}"] = round(loss * (1.0 - 0.25 * i), 4)
            out[f"task_weight_{task}"] = round((1.0, 0.3, 0.2)[i] * (1 + 0.2 * math.sin(self.epoch / 3 + i)), 4)
        return out

    def checkpoint(self) -> None:
        data = f"fake checkpoint run {self.run_id} epoch {self.epoch} step {self.step}".encode()
        uri = f"{self.w.artifacts_url.rstrip('/')}/run{self.run_id}/e{self.epoch}-s{self.step}.pt"
        path = Path(urlparse(uri).path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.call("checkpoints", {"uri": uri, "epoch": self.epoch, "step": self.step, "stage": self.stage,
                                  "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                  "metrics": {"val_cer": 0.1}})
        # "checkpoint now" is acknowledged in the next write, with the step it was taken at
        answer = self.call("heartbeat", {"epoch": self.epoch, "step": self.step, "applied": self.pop_acks()})
        self.adopt(answer["directive"])

    def finish(self, status: str) -> None:
        self.call("finish", {"status": status})
        self.w.runs_finished.append((self.run_id, status))


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
                    metrics[f"loss_{task}"] = loss * (1 - 0.25 * i)
                    metrics[f"task_weight_{task}"] = (1.0, 0.3, 0.2)[i] * (1 + 0.2 * math.sin(e / 50 + i))
                lr = 1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * e / epochs)))
                epoch_rows.append({"run_id": run_id, "attempt": 1, "epoch": e, "stage_index": stage, "step": e * spe,
                                   "metrics": metrics, "lr": {"schedule": lr, "stage_multiplier": 1.0, "effective": lr},
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
                latest_metrics={**last["metrics"], "epoch": epochs, "stage": last["stage_index"] + 1},
                lr_schedule=last["lr"]["schedule"]))
            assert run is not None
    finally:
        engine.dispose()
