"""`sala worker`: register, claim a run, train it through an HttpController, report, repeat.

The trainer runs in this thread; a heartbeat thread renews the lease every second or two,
carries step scalars and acknowledgements, and brings back the latest directive, which the
trainer reads between optimizer steps (so a `curl` override is applied within seconds)."""

from __future__ import annotations

import logging
import platform
import tempfile
import signal
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from worker.checkpoints import CheckpointCorrupt
from worker.client import LeaseLost, SalaClient
from worker.controller import Directive, EpochSummary, SavedCheckpoint

log = logging.getLogger("sala.worker")
VERSION = "0.1.0"


class Rollback(Exception):
    """The server asked to abandon this attempt and resume from the last checkpoint."""


class RunFailed(Exception):
    """The server ended the run (e.g. non-finite losses survived every rollback)."""


class HttpController:
    """The Controller protocol over HTTP for one claimed run."""

    def __init__(self, client: SalaClient, run_id: int, lease_token: str, directive: Directive,
                 heartbeat_s: float, shutdown: threading.Event):
        self.client, self.run_id, self.lease = client, run_id, lease_token
        self.heartbeat_s = heartbeat_s
        self._directive = directive
        self._shutdown = shutdown
        self._lock = threading.Lock()
        self._scalars: list[dict[str, Any]] = []
        self._acks: dict[int, tuple[int, float]] = {}
        self._progress = (0, 0)
        self._lr_schedule: float | None = None
        self._lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._beat_forever, name=f"heartbeat-{run_id}", daemon=True)
        self._thread.start()

    # -- Controller protocol --------------------------------------------------------------------
    def poll(self, step: int, epoch: int) -> Directive:
        if self._lost is not None:
            raise self._lost
        with self._lock:
            self._progress = (epoch, step)
            directive = self._directive
        if self._shutdown.is_set() and directive.action == "continue":
            return Directive(**{**asdict(directive), "action": "pause"})  # checkpoint, then release
        return directive

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        with self._lock:
            self._scalars.append({"step": step, **{k: _finite(v) for k, v in scalars.items()}})
            self._progress = (self._progress[0], step)
            if "lr_schedule" in scalars:
                self._lr_schedule = float(scalars["lr_schedule"])

    def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None:
        with self._lock:
            for event_id in event_ids:
                self._acks.setdefault(int(event_id), (step, time.monotonic()))
        if event_ids:
            self._wake.set()  # tell the server now, not at the next regular beat

    def report_epoch(self, summary: EpochSummary) -> Directive:
        self.beat()  # scalars and acknowledgements first, so the epoch sees them applied
        body = {"lease_token": self.lease, "epoch": summary.epoch, "stage": summary.stage + 1,
                "step": summary.step, "metrics": {k: _finite(v) for k, v in summary.metrics.items()},
                "lr": summary.lr, "duration_s": summary.duration_s, "samples_per_s": summary.samples_per_s}
        answer = self.client.call("POST", f"/runs/{self.run_id}/epochs", body)
        return self._adopt(answer["directive"])

    def report_checkpoint(self, saved: SavedCheckpoint) -> list[str]:
        body = {"lease_token": self.lease, **asdict(saved), "stage": saved.stage + 1}
        answer = self.client.call("POST", f"/runs/{self.run_id}/checkpoints", body)
        return list(answer.get("delete_uris", []))

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        log.warning("run %s: %s %s", self.run_id, kind, detail)
        body = {"lease_token": self.lease, "kind": kind,
                "detail": {k: _finite(v) for k, v in detail.items() if isinstance(v, (int, float, str, bool))}}
        answer = self.client.call("POST", f"/runs/{self.run_id}/alerts", body)
        self._adopt(answer["directive"])
        if answer["action"] == "rollback":
            raise Rollback(f"{kind}: rolling back to the last checkpoint with a lower lr")
        if answer["action"] == "fail":
            raise RunFailed(answer.get("reason") or f"{kind}: {detail}")

    def finish(self, status: str, error: str | None = None) -> None:
        self.close()
        self.beat()
        self.client.call("POST", f"/runs/{self.run_id}/finish",
                         {"lease_token": self.lease, "status": status, "error": error})

    # -- heartbeats -----------------------------------------------------------------------------
    def beat(self) -> None:
        with self._lock:
            scalars, self._scalars = self._scalars, []
            acks, self._acks = self._acks, {}
            (epoch, step), lr_schedule = self._progress, self._lr_schedule
        body = {"lease_token": self.lease, "epoch": epoch, "step": step, "lr_schedule": lr_schedule,
                "scalars": scalars[-2000:],
                "applied": [{"id": i, "step": s, "age_s": max(0.0, time.monotonic() - t)}
                            for i, (s, t) in acks.items()]}
        try:
            answer = self.client.call("POST", f"/runs/{self.run_id}/heartbeat", body)
        except LeaseLost as lost:
            self._lost = lost
            raise
        except BaseException:
            with self._lock:  # not delivered: keep them for the next beat, in order
                self._scalars[:0] = scalars
                for i, s in acks.items():
                    self._acks.setdefault(i, s)
            raise
        self._adopt(answer["directive"])

    def _adopt(self, body: dict[str, Any]) -> Directive:
        directive = Directive.from_api(body)
        with self._lock:
            self._directive = directive
        return directive

    def _beat_forever(self) -> None:
        while True:
            self._wake.wait(self.heartbeat_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.beat()
            except LeaseLost as lost:
                log.error("run %s: lease lost (%s); abandoning it", self.run_id, lost)
                return
            except Exception:
                log.warning("heartbeat for run %s failed; will retry", self.run_id, exc_info=True)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


class Agent:
    def __init__(self, server: str, token: str | None, name: str, *, artifacts_url: str | None = None,
                 device: str | None = None, claim_wait_s: float = 10.0, once: bool = False):
        self.client = SalaClient(server, token, timeout=max(60.0, claim_wait_s + 30))
        self.name, self.device, self.claim_wait_s, self.once = name, device, claim_wait_s, once
        self.artifacts_url = artifacts_url
        self.shutdown = threading.Event()

    def install_signal_handlers(self) -> None:
        def ask_to_stop(signum, _frame):
            if self.shutdown.is_set():
                raise KeyboardInterrupt
            log.warning("signal %s: checkpointing the current run and releasing it", signum)
            self.shutdown.set()
        signal.signal(signal.SIGINT, ask_to_stop)
        signal.signal(signal.SIGTERM, ask_to_stop)

    def run_forever(self) -> None:
        info = self.client.call("POST", "/workers", {"name": self.name, "host": platform.node(),
                                                    "devices": _devices(), "version": VERSION})
        self.worker_id, self.heartbeat_s = info["worker_id"], info["heartbeat_s"]
        self.artifacts_url = self.artifacts_url or info.get("artifacts_url")
        log.info("worker %s registered as %s", self.name, self.worker_id)
        while not self.shutdown.is_set():
            claim = self.client.call("POST", f"/workers/{self.worker_id}/claim", {"wait_s": self.claim_wait_s})
            if claim is None:
                continue
            self.train(claim)
            if self.once:
                return

    def train(self, claim: dict[str, Any]) -> str | None:
        from core.recipe import Recipe
        from worker.trainer import Trainer

        run_id = claim["run"]["id"]
        controller = HttpController(self.client, run_id, claim["lease_token"],
                                    Directive.from_api(claim["directive"]), self.heartbeat_s, self.shutdown)
        log.info("run %s attempt %s: training (resume from %s)", run_id, claim["attempt"],
                 (claim.get("resume_checkpoint") or {}).get("uri"))
        try:
            recipe = Recipe.model_validate(claim["recipe"])
            trainer = Trainer(recipe, controller, artifacts_url=f"{self.artifacts_url.rstrip('/')}/run-{run_id}",
                              device=self.device, teacher=self.fetch_teacher(recipe))
            status = trainer.run(resume=claim.get("resume_checkpoint"))
        except LeaseLost as lost:
            controller.close()
            log.error("run %s: %s; stopped touching it", run_id, lost)
            return None
        except Rollback as rollback:
            log.warning("run %s: %s", run_id, rollback)
            controller.finish("queued")
            return "queued"
        except CheckpointCorrupt as corrupt:
            resume = claim.get("resume_checkpoint") or {}
            if corrupt.uri != resume.get("uri"):
                raise
            log.error("run %s: %s; asking to resume from the one before", run_id, corrupt)
            try:  # the server drops it from the run and answers rollback: release, resume from the previous
                controller.alert("corrupt_checkpoint", {"checkpoint_id": resume["id"], "reason": corrupt.reason})
            except Rollback:
                controller.finish("queued")
                return "queued"
            controller.finish("failed", str(corrupt))
            return "failed"
        except RunFailed as failed:
            controller.finish("failed", str(failed))
            return "failed"
        except Exception as exc:
            log.exception("run %s failed", run_id)
            controller.finish("failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}")
            return "failed"
        if status == "paused" and self.shutdown.is_set():
            status = "queued"
        controller.finish(status)
        log.info("run %s: %s", run_id, status)
        return status


    def fetch_teacher(self, recipe) -> str | None:
        """Distillation names a teacher run; fetch its chosen checkpoint through the API (the
        teacher's files may live where this worker cannot see them) and verify its checksum."""
        spec = recipe.loss.distillation
        if spec is None:
            return None
        if "/" in spec.teacher_checkpoint:
            return spec.teacher_checkpoint
        listed = self.client.call("GET", f"/runs/{spec.teacher_run}/checkpoints") or []
        kept = [c for c in listed if c["kept"]]
        choice = _choose_checkpoint(kept, spec.teacher_checkpoint, recipe.checkpoint.best_metric)
        target = Path(tempfile.mkdtemp(prefix="sala-teacher-")) / f"run{spec.teacher_run}-{choice['id']}.pt"
        digest = self.client.download(f"/runs/{spec.teacher_run}/checkpoints/{choice['id']}/file", target)
        if digest != choice["sha256"]:
            raise ValueError(f"teacher checkpoint {choice['id']} of run {spec.teacher_run} failed its checksum")
        log.info("distilling from run %s checkpoint %s (epoch %s)", spec.teacher_run, choice["id"], choice["epoch"])
        return str(target)


def _choose_checkpoint(kept: list[dict[str, Any]], which: str, metric: str) -> dict[str, Any]:
    from core.recipe import lower_is_better

    if not kept:
        raise ValueError("the teacher run has no kept checkpoint")
    if which == "latest":
        return max(kept, key=lambda c: (c["step"], c["id"]))
    if which == "best":
        scored = [c for c in kept if isinstance(c["metrics"].get(metric), (int, float))]
        if not scored:
            return max(kept, key=lambda c: (c["step"], c["id"]))
        pick = min if lower_is_better(metric) else max
        return pick(scored, key=lambda c: c["metrics"][metric])
    match = [c for c in kept if str(c["id"]) == which]
    if not match:
        raise ValueError(f"the teacher run has no kept checkpoint {which}")
    return match[0]


def _devices() -> list[str]:
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # torch missing or broken: report CPU only
        pass
    return ["cpu"]
