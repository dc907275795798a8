"""One rank of a distributed run, as torchrun starts it: `python -m worker.ranks [LAUNCH_FILE]`.

The rank that was given the launch file (the first rank on the machine whose worker claimed the
run; rank 0 on one machine) is the leader: it takes over the run's lease, speaks to the server and
trains through `agent.train_claim`. Every other rank receives the launch file's contents from it
and trains with a `RankController` that only listens. The exit code is torchrun's verdict: 0 when
the run ended here (completed, paused, stopped, released, failed for its own reasons), non-zero
when the group fell apart, which restarts the run from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from client import SalaClient
from core.protocol import Claim
from worker.checkpoints import CheckpointCorrupt
from worker.controller import Rollback, RunFailed
from worker.distributed import GroupFailed, RankController, join
from worker.launch import SHUTDOWN, STARTED, FileFlag
from worker.trainer import resolve_device

log = logging.getLogger("sala.ranks")


def main(argv: list[str]) -> int:
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    here = json.loads(Path(argv[0]).read_text()) if argv else None
    mine = here if local_rank == 0 else None
    device = _device(here, local_rank)
    group = join(float((mine or {}).get("collective_timeout_s", 300)), device)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s rank {group.rank}/{group.world} %(levelname)s %(name)s: %(message)s")
    holders = group.gather(mine is not None)
    if not any(holders):
        raise SystemExit("no rank was given the launch file")
    group = dataclasses.replace(group, leader=holders.index(True))
    spec = group.broadcast(mine)
    log.info("rank %s of %s (pid %s, leader %s) on %s", group.rank, group.world, os.getpid(), group.leader, device)
    claim = Claim.model_validate(spec["claim"])
    try:
        if group.is_leader:
            trainer_status = lead(spec, claim, group, device)
        else:
            trainer_status = follow(spec, claim, group, device)
    except (GroupFailed, dist.DistError) as failed:
        log.error("the group failed: %s", failed)
        if group.is_leader:
            (Path(spec["workdir"]) / "error").write_text(str(failed)[:1000])
        return 1
    dist.destroy_process_group()
    return 0 if trainer_status != "error" else 1


def lead(spec: dict, claim: Claim, group, device: torch.device) -> str | None:
    from worker.agent import train_claim
    from worker.logship import LogBuffer

    workdir = Path(spec["workdir"])
    client = SalaClient(spec["server"], os.environ.get("SALA_TOKEN"), timeout=60, retry_for=None)
    logs = LogBuffer()
    with logs.capturing():
        (workdir / STARTED).touch()  # the worker stops keeping the lease: the heartbeat thread below does
        status = train_claim(client, claim, heartbeat_s=spec["heartbeat_s"], shutdown=FileFlag(workdir / SHUTDOWN),
                             artifacts_url=spec["artifacts_url"], device=str(device), teacher=spec["teacher"],
                             logs=logs, group=group)
    (workdir / "status").write_text(str(status))
    if status == "failed" or status is None:  # the others may wait in a collective: end the group
        return "error"
    return status


def follow(spec: dict, claim: Claim, group, device: torch.device) -> str | None:
    from worker.trainer import Trainer

    trainer = Trainer(claim.recipe, RankController(None, group), artifacts_url=spec["artifacts_url"],
                      device=device, teacher=spec["teacher"], group=group)
    try:
        status = trainer.run(resume=claim.resume_checkpoint)
    except (Rollback, RunFailed, CheckpointCorrupt) as ended:  # the leader tells the server
        log.info("run %s ended on this rank: %s", claim.run_id, ended)
        return "ended"
    log.info("run %s: %s", claim.run_id, status)
    return status


def _device(spec: dict | None, local_rank: int) -> torch.device:
    """One GPU per rank on CUDA (by local rank); every rank on CPU otherwise. The backend follows
    from it before the ranks can talk, so the other machines of a group go by their worker's
    `--device` (SALA_RANK_DEVICE), else by what the machine has."""
    wanted = (spec or {}).get("device") or (spec["claim"]["recipe"]["training"]["device"] if spec
                                            else os.environ.get("SALA_RANK_DEVICE", "auto"))
    device = resolve_device(wanted)
    if device.type == "cuda":
        return torch.device("cuda", local_rank)
    return device


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
