"""Launching a run's ranks with PyTorch's own launcher, torchrun (`torch.distributed.run`).

The worker that claimed the run writes what the ranks need (the claim, where the server and the
checkpoints are) to a launch directory and starts torchrun, which rendezvouses the machines
(elastic rendezvous, c10d store), starts `processes_per_node` ranks on each and watches them. Each
rank runs `worker/ranks.py`. The worker keeps the lease alive until the leader rank says it has
taken it over, then only waits.

torchrun runs with `--max-restarts 0`: when a rank dies, torchrun ends the others and exits with
an error. The worker then tells the server (`rank_failed`), which counts a restart and re-queues
the run (or fails it past `max_restarts`); the next attempt, by any worker, resumes every rank
from the last checkpoint. A restart by the server rather than by torchrun keeps one rule for
every lost attempt: a new attempt number, the reports after the checkpoint superseded.

On the other machines of a multi-machine group, `sala worker --node-rank K` (K > 0) starts torchrun
in a loop with no launch file: its ranks join the next rendezvous and receive the run from the
leader.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client import ApiError, LeaseLost
from core import files
from core.protocol import Claim
from worker.controller import Rollback, RunFailed

if TYPE_CHECKING:
    from worker.agent import Agent

log = logging.getLogger("sala.launch")
RDZV_ID = "sala"  # one rendezvous name for a worker group: the followers do not know the run in advance
STARTED, SHUTDOWN = "leader-started", "shutdown"  # flag files in the launch directory


class FileFlag:
    """`is_set()` of a file's existence: how the worker asks the leader rank, another process, to
    checkpoint and release (its `shutdown`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        self.path.touch()


def torchrun(agent: Agent, nodes: int, processes_per_node: int, spec: Path | None) -> list[str]:
    """The torchrun command line: standalone (one machine, a free local port) or the group's
    rendezvous endpoint; the agent's own monitoring restarts nothing (the server decides)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes_per_node),
               "--max-restarts", "0", "--monitor-interval", "0.5"]
    if nodes == 1:
        command += ["--standalone", "--nnodes", "1"]
    else:
        command += ["--nnodes", str(nodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", agent.rdzv,
                    "--rdzv-id", RDZV_ID, "--rdzv-conf", f"join_timeout={agent.join_timeout_s:g}"]
    command += ["-m", "worker.ranks"]
    return command + ([str(spec)] if spec else [])


def rank_env(agent: Agent, processes_per_node: int) -> dict[str, str]:
    """The ranks' environment: the worker's token for the leader, and on CPU the cores shared out
    (each rank's spinning OpenMP threads would otherwise fight the others')."""
    env = dict(os.environ)
    if agent.token:
        env["SALA_TOKEN"] = agent.token
    if agent.device:
        env["SALA_RANK_DEVICE"] = agent.device
    if "OMP_NUM_THREADS" not in env:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        env["OMP_NUM_THREADS"] = str(max(1, cores // processes_per_node))
    return env


def train_as_group(agent: Agent, claim: Claim) -> str | None:
    """Launch the claimed run's ranks and see the attempt to its end; the status the leader reported."""
    from worker.agent import HttpController

    resources = claim.recipe.resources
    nodes, per_node = resources.nodes, resources.processes_per_node
    # Until the leader rank heartbeats itself (torch's import alone takes seconds), the lease is kept here.
    keeper = HttpController(agent.client, claim.run_id, claim.lease_token, claim.directive, agent.heartbeat_s,
                            agent.shutdown)
    workdir = Path(tempfile.mkdtemp(prefix=f"sala-run{claim.run_id}-"))
    spec = workdir / "launch.json"
    try:
        spec.write_text(json.dumps({
            "server": agent.client.url, "claim": claim.model_dump(mode="json"), "heartbeat_s": agent.heartbeat_s,
            "artifacts_url": files.run_root(agent.artifacts_url, claim.run_id), "device": agent.device,
            "teacher": agent.fetch_teacher(claim.recipe), "collective_timeout_s": agent.collective_timeout_s,
            "workdir": str(workdir),
        }))
        log.info("run %s attempt %s: %s rank(s) on %s machine(s) under torchrun", claim.run_id, claim.attempt,
                 per_node * nodes, nodes)
        proc = subprocess.Popen(torchrun(agent, nodes, per_node, spec), env=rank_env(agent, per_node),
                                start_new_session=True)  # Ctrl-C reaches this worker, which asks the leader
    except Exception as exc:  # the ranks could not be launched at all: the run fails with why
        log.exception("run %s: launching its ranks failed", claim.run_id)
        keeper.finish("failed", f"launching the ranks failed: {type(exc).__name__}: {exc}")
        return "failed"
    code = wait(agent, proc, keeper, workdir)
    status_file = workdir / "status"
    status = status_file.read_text().strip() if status_file.exists() else None
    if code == 0:
        keeper.close()
        log.info("run %s: %s", claim.run_id, status)
        return status
    return restart_group(keeper, claim, code, status, workdir)


def wait(agent: Agent, proc: subprocess.Popen, keeper: Any, workdir: Path) -> int:
    """Wait for torchrun; hand the lease over once the leader started; relay a shutdown to it."""
    started, shutdown = FileFlag(workdir / STARTED), FileFlag(workdir / SHUTDOWN)
    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:  # a second Ctrl-C: end the ranks now
            os.killpg(proc.pid, 15)
            raise
        if started.is_set():
            keeper.close()
        if agent.shutdown.is_set() and not shutdown.is_set():
            shutdown.set()


def restart_group(keeper: Any, claim: Claim, code: int, status: str | None, workdir: Path) -> str | None:
    """torchrun failed: a rank died or a collective failed. Unless the leader already ended the run
    (its lease is then gone), the server counts a restart and re-queues it, or fails it."""
    error = workdir / "error"
    reason = f"a rank of the group exited with an error (torchrun exit code {code})" + (
        f": {error.read_text()}" if error.exists() else "")
    log.error("run %s attempt %s: %s", claim.run_id, claim.attempt, reason)
    keeper.close()
    try:
        try:
            keeper.alert("rank_failed", {"exit_code": code, "attempt": claim.attempt, "reason": reason})
        except Rollback:
            keeper.finish("queued", reason)
            return "queued"
        except RunFailed as failed:
            keeper.finish("failed", str(failed))
            return "failed"
    except (LeaseLost, ApiError) as gone:  # the leader finished the run before its group fell apart
        log.info("run %s: %s", claim.run_id, gone)
        return status
    return status


def follow(agent: Agent) -> None:
    """A machine other than the first of a multi-machine group: start torchrun again and again; its
    ranks join the rendezvous when the first machine launches a run, and get the run from the leader."""
    while not agent.shutdown.is_set():
        command = torchrun(agent, agent.nodes, agent.processes_per_node or 1, None)
        proc = subprocess.Popen(command, env=rank_env(agent, agent.processes_per_node or 1), start_new_session=True)
        while proc.poll() is None:
            if agent.shutdown.is_set():
                os.killpg(proc.pid, 15)
            time.sleep(0.2)
        log.info("torchrun exited with %s; joining the next rendezvous", proc.returncode)
        time.sleep(1.0)
