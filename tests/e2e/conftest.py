"""End-to-end fixtures: a live server (SQLite or a throwaway PostgreSQL database) and real
`sala worker` subprocesses training tiny recipes."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_pg_database, drop_pg_database
from tests.live import SALA, sala_env

TINY = {
    "name": "tiny-e2e",
    "seed": 7,
    "model": {"image_height": 32, "hidden_size": 32, "conv_channels": [8, 16, 16, 32], "lstm_layers": 1},
    "data": {"workers": 0},
    "training": {"batch_size": 4, "steps_per_epoch": 3, "max_epochs": 6, "precision": "fp32"},
    "tasks": [{"type": "character_recognition", "weight": 1.0}],
    "task_weighting": "fixed",
    "loss": {"recognition": "ctc", "hard_example_mining": None, "curriculum_weighting": False},
    "validation": {"samples_per_stage": 8, "overall_samples": 2},
    "scheduler": {"name": "constant"},
    "checkpoint": {"every_epochs": 1, "keep_last": 2, "keep_best": 1, "compression": "none"},
    "curriculum": {"stages": [
        {"name": "chars", "content": "characters", "success_threshold": 0.0, "min_epochs": 1,
         "max_epochs": 3, "patience": 3, "augmentation": 0.0, "lr_multiplier": 1.0},
        {"name": "combos", "content": "combinations", "success_threshold": 0.0, "min_epochs": 2,
         "max_epochs": 3, "patience": 3, "augmentation": 0.0, "lr_multiplier": 0.5},
    ]},
}


def tiny(**overrides) -> dict:
    recipe = {**TINY, **overrides}
    return recipe


@pytest.fixture(params=["sqlite", "postgresql"])
def database_env(request) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    url = create_pg_database()
    yield {"SALA_DATABASE_URL": url}
    drop_pg_database(url)


class Workers:
    """Real `sala worker` processes; every one is killed at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path, self.procs = tmp_path, []

    def start(self, server_url: str, name: str, *extra: str) -> subprocess.Popen:
        fd, log_name = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=self.tmp_path)
        env = {**sala_env(self.tmp_path), "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([SALA, "worker", "--server", server_url, "--name", name, *extra], env=env,
                                cwd=self.tmp_path, stdout=fd, stderr=subprocess.STDOUT)
        os.close(fd)
        proc.log_path = Path(log_name)  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.args[5]}\n" + p.log_path.read_text(errors="replace")[-4000:]  # type: ignore
                         for p in self.procs)


@pytest.fixture
def workers(tmp_path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2,
             diagnostics: Callable[[], str] = lambda: "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{diagnostics()}")


def get(api: str, path: str, **params) -> dict:
    answer = httpx.get(api + path, params=params, timeout=10)
    answer.raise_for_status()
    return answer.json()
