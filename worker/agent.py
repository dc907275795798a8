"""`sala worker`: register, claim a run, train it through an HttpController, report, repeat.

The trainer runs in this thread; a heartbeat thread renews the lease every second or two,
carries step scalars and acknowledgements, and brings back the latest directive, which the
trainer reads between optimizer steps (so a `curl` override is applied within seconds)."""

from __future__ import annotations

import logging
import math
import platform
import signal
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from core import files
from core.metrics import best
from client import ApiError, LeaseLost, SalaClient
from core.api import CheckpointOut
from core.protocol import (
    Alert,
    CheckpointMessage,
    CheckpointReport,
    Claim,
    Directive,
    EpochMessage,
    EpochReport,
    Finish,
    Heartbeat,
    LogBatch,
    WorkerHello,
)
from worker.checkpoints import CheckpointCorrupt
from worker.controller import Rollback, RunFailed
from worker.logship import LogBuffer

log = logging.getLogger("sala.worker")
VERSION = "0.1.0"


class HttpController:
    """The Controller protocol over HTTP for one claimed run."""

    def __init__(self, client: SalaClient, run_id: int, lease_token: str, directive: Directive,
                 heartbeat_s: float, shutdown: threading.Event, logs: LogBuffer | None = None):
        self.client, self.run_id, self.lease = client, run_id, lease_token
        self.heartbeat_s = heartbeat_s
        self.logs = logs
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
            return directive.model_copy(update={"action": "pause"})  # checkpoint, then release
        return directive

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        with self._lock:
            self._scalars.append({"step": step, **scalars})
            self._progress = (self._progress[0], step)
            if math.isfinite(scalars.get("lr_schedule", math.nan)):
                self._lr_schedule = float(scalars["lr_schedule"])

    def acknowledge(self, event_ids: tuple[int, ...], step: int) -> None:
        with self._lock:
            for event_id in event_ids:
                self._acks.setdefault(int(event_id), (step, time.monotonic()))
        if event_ids:
            self._wake.set()  # tell the server now, not at the next regular beat

    def report_epoch(self, report: EpochReport) -> Directive:
        self.beat()  # scalars and acknowledgements first, so the epoch sees them applied
        message = EpochMessage(**report.model_dump(), lease_token=self.lease)
        return self._adopt(self.client.report_epoch(self.run_id, message).directive)

    def report_checkpoint(self, saved: CheckpointReport) -> list[str]:
        message = CheckpointMessage(**saved.model_dump(), lease_token=self.lease)
        return self.client.report_checkpoint(self.run_id, message).delete_uris

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        log.warning("run %s: %s %s", self.run_id, kind, detail)
        message = Alert(lease_token=self.lease, kind=kind,
                        detail={k: v for k, v in detail.items() if isinstance(v, (int, float, str, bool))})
        answer = self.client.alert(self.run_id, message)
        self._adopt(answer.directive)
        if answer.action == "rollback":
            raise Rollback(f"{kind}: rolling back to the last checkpoint with a lower lr")
        if answer.action == "fail":
            raise RunFailed(answer.reason or f"{kind}: {detail}")

    def finish(self, status: str, error: str | None = None) -> None:
        self.close()
        self.beat()
        self.ship_logs(everything=True)  # a failed run's last lines reach the server before it ends
        self.client.finish(self.run_id, Finish(lease_token=self.lease, status=status, error=error))

    # -- heartbeats -----------------------------------------------------------------------------
    def beat(self) -> None:
        with self._lock:
            scalars, self._scalars = self._scalars, []
            acks, self._acks = self._acks, {}
            (epoch, step), lr_schedule = self._progress, self._lr_schedule
        message = Heartbeat(lease_token=self.lease, epoch=epoch, step=step, lr_schedule=lr_schedule,
                            scalars=scalars[-2000:],
                            applied=[{"id": i, "step": s, "age_s": max(0.0, time.monotonic() - t)}
                                     for i, (s, t) in acks.items()])
        try:
            answer = self.client.heartbeat(self.run_id, message)
        except LeaseLost as lost:
            self._lost = lost
            raise
        except BaseException:
            with self._lock:  # not delivered: keep them for the next beat, in order
                self._scalars[:0] = scalars
                for i, s in acks.items():
                    self._acks.setdefault(i, s)
            raise
        self._adopt(answer.directive)

    def ship_logs(self, everything: bool = False) -> None:
        """Send what the run wrote since the last batch; a batch that did not land waits for the next."""
        while self.logs is not None:
            lines, dropped = self.logs.take()
            if not lines and not dropped:
                return
            try:
                self.client.send_logs(self.run_id, LogBatch(lease_token=self.lease, lines=lines, dropped=dropped))
            except LeaseLost:
                raise
            except ApiError as refused:  # a batch the server will never take: retrying cannot help
                log.debug("run %s: log batch refused: %s", self.run_id, refused)
            except BaseException:
                self.logs.put_back(lines, dropped)
                raise
            if not everything:
                return

    def _adopt(self, directive: Directive) -> Directive:
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
                self.ship_logs()
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


class Agent:
    """One `sala worker`. On a machine of its own it claims runs and trains them, in this process
    or, for a run that asks for several processes, as ranks under torchrun (worker/launch.py).
    With `nodes` > 1 it is one machine of a group: node rank 0 claims (one-machine runs, and runs
    spanning exactly `nodes` machines with `processes_per_node` ranks on each) and the others only
    lend their ranks to its runs through the rendezvous at `rdzv` (HOST:PORT of node 0)."""

    def __init__(self, server: str, token: str | None, name: str, *, artifacts_url: str | None = None,
                 device: str | None = None, claim_wait_s: float = 10.0, once: bool = False,
                 nodes: int = 1, node_rank: int = 0, rdzv: str | None = None, processes_per_node: int | None = None,
                 collective_timeout_s: float = 300.0, join_timeout_s: float = 600.0):
        if nodes > 1 and not rdzv:
            raise ValueError("a worker group spanning several machines needs --rdzv HOST:PORT (node 0's)")
        if not 0 <= node_rank < nodes:
            raise ValueError(f"--node-rank must be in 0..{nodes - 1}")
        self.client = SalaClient(server, token, timeout=max(60.0, claim_wait_s + 30), retry_for=None)
        self.token = token
        self.name, self.device, self.claim_wait_s, self.once = name, device, claim_wait_s, once
        self.artifacts_url = artifacts_url
        self.nodes, self.node_rank, self.rdzv = nodes, node_rank, rdzv
        self.processes_per_node = processes_per_node or _gpu_count() or (1 if nodes > 1 else None)
        self.collective_timeout_s, self.join_timeout_s = collective_timeout_s, join_timeout_s
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
        if self.node_rank > 0:  # no claims here: this machine's ranks join node 0's runs
            from worker.launch import follow

            log.info("node %s of %s: joining runs of the group at %s", self.node_rank, self.nodes, self.rdzv)
            return follow(self)
        hello = WorkerHello(name=self.name, host=platform.node(), devices=_devices(), version=VERSION)
        info = self.client.register(hello)
        self.worker_id, self.heartbeat_s = info.worker_id, info.heartbeat_s
        self.artifacts_url = self.artifacts_url or info.artifacts_url
        log.info("worker %s registered as %s", self.name, self.worker_id)
        while not self.shutdown.is_set():
            claim = self.claim()
            if claim is None:
                continue
            self.train(claim)
            if self.once:
                return

    def claim(self) -> Claim | None:
        """The next queued run, waiting up to claim_wait_s for one (None: nothing queued)."""
        return self.client.claim(self.worker_id, self.claim_wait_s, nodes=self.nodes,
                                 processes_per_node=self.processes_per_node)

    def train(self, claim: Claim) -> str | None:
        """Train one claimed run: here, with everything it logs or prints shipped to the server, or,
        when its recipe asks for several processes or machines, as a group of ranks under torchrun."""
        resources = claim.recipe.resources
        if resources.world_size > 1:
            from worker.launch import train_as_group

            return train_as_group(self, claim)
        logs = LogBuffer()
        with logs.capturing():
            return train_claim(self.client, claim, heartbeat_s=self.heartbeat_s, shutdown=self.shutdown,
                               artifacts_url=files.run_root(self.artifacts_url, claim.run_id), device=self.device,
                               teacher=self.fetch_teacher(claim.recipe), logs=logs)

    def fetch_teacher(self, recipe) -> str | None:
        """Distillation names a teacher run; fetch its chosen checkpoint through the API (the
        teacher's files may live where this worker cannot see them) and verify its checksum."""
        spec = recipe.loss.distillation
        if spec is None:
            return None
        if "/" in spec.teacher_checkpoint:
            return spec.teacher_checkpoint
        kept = [c for c in self.client.checkpoints(spec.teacher_run) if c.kept]
        choice = _choose_checkpoint(kept, spec.teacher_checkpoint, recipe.checkpoint.best_metric)
        target = Path(tempfile.mkdtemp(prefix="sala-teacher-")) / f"run{spec.teacher_run}-{choice.id}.pt"
        digest = self.client.download_checkpoint(spec.teacher_run, choice.id, target)
        if digest != choice.sha256:
            raise ValueError(f"teacher checkpoint {choice.id} of run {spec.teacher_run} failed its checksum")
        log.info("distilling from run %s checkpoint %s (epoch %s)", spec.teacher_run, choice.id, choice.epoch)
        return str(target)


def train_claim(client: SalaClient, claim: Claim, *, heartbeat_s: float, shutdown: Any, artifacts_url: str,
                device: str | None, teacher: str | None, logs: LogBuffer | None, group: Any = None) -> str | None:
    """Train a claimed run to its end and finish it on the server; the status it ended with (None:
    the lease was lost). `shutdown` (anything with `is_set()`) asks for a checkpoint and a release.

    With several ranks this runs on the leader, which alone holds the lease. An error there does not
    fail the run but raises GroupFailed, which restarts the group from the last checkpoint: a
    rank's death or a collective's timeout reaches the leader as one error or another, and the
    server counts each restart, so an error that recurs still fails the run past `max_restarts`."""
    from worker.distributed import SOLO, GroupFailed, RankController  # torch: imported once a run is claimed
    from worker.trainer import Trainer

    group = group or SOLO
    run_id, resume, recipe = claim.run_id, claim.resume_checkpoint, claim.recipe
    controller = HttpController(client, run_id, claim.lease_token, claim.directive, heartbeat_s, shutdown, logs)
    log.info("run %s attempt %s: training (resume from %s)", run_id, claim.attempt, resume.uri if resume else None)
    try:
        trainer = Trainer(recipe, RankController(controller, group) if group.distributed else controller,
                          artifacts_url=artifacts_url, device=device, teacher=teacher, group=group)
        status = trainer.run(resume=resume)
    except LeaseLost as lost:
        controller.close()
        log.error("run %s: %s; stopped touching it", run_id, lost)
        return None
    except GroupFailed:
        controller.close()
        raise
    except Rollback as rollback:
        log.warning("run %s: %s", run_id, rollback)
        controller.finish("queued")
        return "queued"
    except CheckpointCorrupt as corrupt:
        if resume is None or corrupt.uri != resume.uri:
            raise
        log.error("run %s: %s; asking to resume from the one before", run_id, corrupt)
        try:  # the server drops it from the run and answers rollback: release, resume from the previous
            controller.alert("corrupt_checkpoint", {"checkpoint_id": resume.id, "reason": corrupt.reason})
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
        if group.distributed:  # a peer's death often surfaces as some error here: the group restarts, counted
            controller.close()
            controller.ship_logs(everything=True)
            raise GroupFailed(f"{type(exc).__name__}: {exc}") from exc
        controller.finish("failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}")
        return "failed"
    if status == "paused" and shutdown.is_set():
        status = "queued"
    controller.finish(status)
    log.info("run %s: %s", run_id, status)
    return status


def _choose_checkpoint(kept: list[CheckpointOut], which: str, metric: str) -> CheckpointOut:
    """`best` by the recipe's checkpoint metric (the newest when none has it), `latest`, or an id."""
    if not kept:
        raise ValueError("the teacher run has no kept checkpoint")
    newest = max(kept, key=lambda c: (c.step, c.id))
    if which == "latest":
        return newest
    if which == "best":
        return best(kept, metric, metrics_of=lambda c: c.metrics) or newest
    match = [c for c in kept if str(c.id) == which]
    if not match:
        raise ValueError(f"the teacher run has no kept checkpoint {which}")
    return match[0]


def _gpu_count() -> int:
    """GPUs here (0 without CUDA): on CUDA, a run gets one rank per GPU at most."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def _devices() -> list[str]:
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # torch missing or broken: report CPU only
        pass
    return ["cpu"]
