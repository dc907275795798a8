"""`sala up`: the server and N workers as child processes of one supervisor, so that Ctrl-C
stops them in the right order: workers first (they checkpoint and re-queue their runs while
the server can still hear them), then the server."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy.orm import Session

from server.settings import Settings

log = logging.getLogger("sala.up")
WORKER_GRACE_S = 120
SERVER_GRACE_S = 15


def run_stack(settings: Settings, workers: int, processes: int = 1) -> int:
    env = {**os.environ, "SALA_DATABASE_URL": settings.database_url, "SALA_HOST": settings.host,
           "SALA_PORT": str(settings.port), "PYTHONUNBUFFERED": "1"}
    server = _spawn([sys.executable, "-m", "sala.cli", "server", "--processes", str(processes)], env)
    base = f"http://{_connect_host(settings.host)}:{settings.port}"
    stopping = False

    def request_stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if not _wait_ready(base, server):
        return server.wait() or 1
    token_id, token = _worker_token(settings) if workers else (None, None)
    worker_env = {**env, **({"SALA_TOKEN": token} if token else {})}
    try:
        children = [_spawn([sys.executable, "-m", "sala.cli", "worker", "--server", base,
                            "--name", f"local-{i + 1}"], worker_env) for i in range(workers)]
        log.info("sala up: API on %s (%d server process(es)), %d worker(s); Ctrl-C to stop", base, processes, workers)
        print(f"Sala is up: {base}  (dashboard /, API docs /docs). Ctrl-C stops it.", flush=True)
        while not stopping and server.poll() is None:
            time.sleep(0.5)
        print("stopping: checkpointing and re-queuing running runs…", flush=True)
        _terminate(children, WORKER_GRACE_S)
        _terminate([server], SERVER_GRACE_S)
    finally:
        if token_id is not None:
            _revoke(settings, token_id)
    return 0


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)


def _wait_ready(base: str, server: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    log.error("server did not become ready")
    return False


def _worker_token(settings: Settings) -> tuple[int | None, str | None]:
    """With auth on, local workers get a worker token of their own (shown nowhere), revoked when
    `sala up` exits so that each start does not leave one more live token behind."""
    from server import auth

    with _session(settings) as db:
        if auth.active_token_count(db) == 0:
            return None, None
        row, token = auth.create_token(db, f"sala-up-{os.getpid()}", "worker")
        return row.id, token


def _revoke(settings: Settings, token_id: int) -> None:
    from server import auth

    with _session(settings) as db:
        auth.revoke_token(db, token_id)


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    """`sala up` has no request: a transaction of its own on an engine of its own."""
    from server.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as db:
            yield db
    finally:
        engine.dispose()


def _terminate(procs: list[subprocess.Popen], grace: float) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
