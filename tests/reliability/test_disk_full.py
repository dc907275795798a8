"""Disk full while checkpointing: ENOSPC injected under the checkpoint writer, on the local store
(the real `open` the writer uses, failing half-way through the bytes) and on a non-local fsspec
store (a memory filesystem whose files run out of space).

Promises: the previous checkpoint stays valid and loadable; no half-written file is left at the
final path (nor a temp file beside it); the trainer stops with the ENOSPC error rather than going
on without its checkpoint; the worker finishes the run `failed` with a reason that says "No space
left on device"; and a later attempt, with space again, resumes from the previous checkpoint.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import threading
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

from core.protocol import Claim
from tests.worker.tiny import ScriptedController, tiny_recipe
from worker import checkpoints as ckpt
from worker.checkpoints import CheckpointCorrupt, CheckpointManager, load_checkpoint
from worker.data import DataSources
from worker.trainer import Trainer

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


class Disk:
    """How many more checkpoint files may be written before the disk is full."""

    def __init__(self) -> None:
        self.saves_left: int | None = None  # None: never full
        self.failures = 0

    def full_now(self) -> bool:
        if self.saves_left is None:
            return False
        if self.saves_left > 0:
            self.saves_left -= 1
            return False
        self.failures += 1
        return True


class _FillingHandle(io.RawIOBase):
    """A real file that takes half of the first write, then raises ENOSPC (as a full disk does)."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def write(self, data) -> int:
        self._handle.write(bytes(data[: len(data) // 2]))
        self._handle.flush()
        raise OSError(ENOSPC.errno, ENOSPC.strerror)

    def fileno(self) -> int:
        return self._handle.fileno()

    def flush(self) -> None:
        if not self._handle.closed:
            self._handle.flush()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        super().close()


@pytest.fixture
def local_disk(monkeypatch) -> Disk:
    """ENOSPC on the local store: the writer's own `open` is wrapped (worker.checkpoints._write_local)."""
    disk = Disk()

    def open_(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)
        if "w" in mode and ".tmp-" in str(path) and disk.full_now():
            return _FillingHandle(handle)
        return handle

    monkeypatch.setattr(ckpt, "open", open_, raising=False)
    return disk


class FullMemoryFile(MemoryFile):
    def __init__(self, *args, disk: Disk, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._full = disk.full_now()

    def write(self, data) -> int:
        if self._full:
            super().write(bytes(data[: len(data) // 2]))
            raise OSError(ENOSPC.errno, ENOSPC.strerror)
        return super().write(data)


class FullMemoryFileSystem(MemoryFileSystem):
    """An fsspec store (protocol `fullmem`) whose new files hit ENOSPC while `disk` says so."""

    protocol = ("fullmem",)
    store: dict[str, Any] = {}
    pseudo_dirs = [""]
    disk = Disk()

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("fullmem://"))

    def _open(self, path, mode="rb", **kwargs):
        if "w" in mode or "a" in mode:
            path = self._strip_protocol(path)
            handle = FullMemoryFile(self, path, disk=self.disk)
            handle.commit()  # a memory file exists from its open, as MemoryFileSystem._open does
            return handle
        return super()._open(path, mode, **kwargs)


@pytest.fixture
def memory_disk() -> Disk:
    fsspec.register_implementation("fullmem", FullMemoryFileSystem, clobber=True)
    FullMemoryFileSystem.store.clear()
    FullMemoryFileSystem.pseudo_dirs[:] = [""]
    FullMemoryFileSystem.disk = Disk()
    yield FullMemoryFileSystem.disk
    FullMemoryFileSystem.store.clear()


@pytest.fixture(scope="module")
def sources() -> DataSources:
    return DataSources.create(image_height=32)


STATE = {"weights": list(range(1000)), "note": "x" * 10_000}


def _files(fs, root: str) -> list[str]:
    return sorted(p.rsplit("/", 1)[1] for p in fs.find(root))


# ---- the writer -------------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["local", "fullmem"])
def test_a_failed_write_leaves_the_previous_checkpoint_and_no_partial_file(store, tmp_path, local_disk, memory_disk):
    disk = local_disk if store == "local" else memory_disk
    root = str(tmp_path / "ckpts") if store == "local" else "fullmem://ckpts"
    manager = CheckpointManager(root, compress=False)
    first = manager.save(STATE, epoch=1, step=10, name="current.pt")
    disk.saves_left = 0
    with pytest.raises(OSError) as raised:
        manager.save({**STATE, "note": "y" * 10_000}, epoch=2, step=20, name="current.pt")  # same final path
    with pytest.raises(OSError):
        manager.save(STATE, epoch=2, step=20, name="next.pt")  # a new final path
    assert raised.value.errno == errno.ENOSPC and disk.failures == 2
    assert _files(manager.fs, manager.root) == ["current.pt"]  # no next.pt, no *.tmp-*
    assert load_checkpoint(first.uri, first.sha256) == STATE  # the old bytes, whole
    assert manager.latest_valid([first])[0] == first


def test_a_partial_file_at_the_final_path_is_never_loaded(tmp_path):
    """Were a store to leave a truncated file (no atomic rename), its checksum refuses it and the
    previous checkpoint is used instead."""
    manager = CheckpointManager(str(tmp_path), compress=True)
    good = manager.save(STATE, epoch=1, step=10)
    bad = manager.save({**STATE, "note": "z"}, epoch=2, step=20)
    path = Path(bad.uri.removeprefix("file://"))
    path.write_bytes(path.read_bytes()[: bad.size // 2])
    with pytest.raises(CheckpointCorrupt):
        load_checkpoint(bad.uri, bad.sha256)
    info, state = manager.latest_valid([good, bad])
    assert info == good and state == STATE


# ---- the trainer and the worker ---------------------------------------------------------------

RECIPE = {"training": {"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 4},
          "validation": {"samples_per_stage": 4}, "checkpoint": {"every_epochs": 1, "keep_last": 3}}


@pytest.mark.parametrize("store", ["local", "fullmem"])
def test_training_stops_on_enospc_and_resumes_from_the_last_good_checkpoint(
        store, tmp_path, sources, local_disk, memory_disk):
    disk = local_disk if store == "local" else memory_disk
    url = str(tmp_path / "ckpts") if store == "local" else "fullmem://run-1"
    controller = ScriptedController()
    trainer = Trainer(tiny_recipe(**RECIPE), controller, artifacts_url=url, sources=sources)
    controller.trainer = trainer
    disk.saves_left = 1  # epoch 1's checkpoint fits; epoch 2's does not
    with pytest.raises(OSError) as raised:
        trainer.run()
    assert raised.value.errno == errno.ENOSPC
    assert [c.epoch for c in controller.checkpoints] == [1]  # the failed one was never reported
    good = controller.checkpoints[0]
    fs = trainer.checkpoints.fs
    assert _files(fs, trainer.checkpoints.root) == [good.uri.rsplit("/", 1)[1]]
    state = load_checkpoint(good.uri, good.sha256)
    assert state["position"]["epoch"] == 1

    disk.saves_left = None  # space again: the next attempt resumes from epoch 1's checkpoint
    again = ScriptedController()
    resumed = Trainer(tiny_recipe(**RECIPE), again, artifacts_url=url, sources=sources)
    again.trainer = resumed
    assert resumed.run(resume={"uri": good.uri, "sha256": good.sha256}) == "completed"
    assert [e.epoch for e in again.epochs] == [2]


DIRECTIVE = {"action": "continue", "stage_index": 0, "event_ids": []}


def stub_server(calls: list[tuple[str, dict]]) -> httpx.MockTransport:
    """The worker protocol's answers, each request recorded: enough for Agent.train to run one claimed run."""
    lock = threading.Lock()

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        path = request.url.path
        with lock:
            calls.append((path, body))
        if path.endswith("/checkpoints"):
            return httpx.Response(201, json={"checkpoint_id": len(calls), "delete": [], "delete_uris": []})
        if path.endswith("/epochs"):
            return httpx.Response(200, json={"epoch": body["epoch"], "directive": DIRECTIVE})
        if path.endswith("/finish"):
            return httpx.Response(200, json={"run_id": 1, "status": body["status"]})
        if path.endswith("/alerts"):
            return httpx.Response(200, json={"action": "continue", "directive": DIRECTIVE})
        if path.endswith("/logs"):
            return httpx.Response(200, json={"stored": len(body["lines"]), "dropped": 0})
        return httpx.Response(200, json={"lease_expires_at": "2030-01-01T00:00:00Z", "directive": DIRECTIVE})

    return httpx.MockTransport(answer)


def test_the_worker_fails_the_run_with_a_clear_reason_when_the_disk_is_full(tmp_path, local_disk):
    from worker.agent import Agent

    agent = Agent("http://127.0.0.1:9", None, "disk-full", artifacts_url=str(tmp_path / "store"), device="cpu")
    calls: list[tuple[str, dict]] = []
    agent.client._http.http = httpx.Client(base_url="http://stub", transport=stub_server(calls))
    agent.heartbeat_s = 0.2
    local_disk.saves_left = 1
    claim = Claim(run_id=1, run_name="disk", recipe=tiny_recipe(**RECIPE), lease_token="l" * 32, attempt=1,
                  lease_expires_at="2030-01-01T00:00:00Z", resume_checkpoint=None, directive=DIRECTIVE)
    assert agent.train(claim) == "failed"
    finish = [body for path, body in calls if path.endswith("/finish")]
    assert len(finish) == 1 and finish[0]["status"] == "failed"
    shipped = [line["message"] for path, body in calls if path.endswith("/logs") for line in body["lines"]]
    assert any("No space left on device" in message for message in shipped)  # the traceback reached the server
    assert "No space left on device" in finish[0]["error"].splitlines()[0], finish[0]["error"][:300]
    reported = [body for path, body in calls if path.endswith("/checkpoints")]
    assert [r["epoch"] for r in reported] == [1]
    kept = load_checkpoint(reported[0]["uri"], reported[0]["sha256"])
    assert kept["position"]["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "store" / "run-1").iterdir()) == [reported[0]["uri"].rsplit("/", 1)[1]]


def test_a_full_database_answers_503_and_is_not_ready_until_a_write_lands(tmp_path):
    """The database's own disk full (SQLite told to grow no more: the same SQLITE_FULL a full disk
    gives): writes answer 503 `storage_full` instead of 500, /readyz says not ready, and both
    recover once a write succeeds again."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from server import migrate
    from server.app import create_app
    from server.settings import Settings

    import sqlite3

    url = f"sqlite:///{tmp_path / 'sala.db'}"
    migrate.upgrade(url)
    with sqlite3.connect(tmp_path / "sala.db") as conn:
        conn.execute("VACUUM")  # no free pages left over from the migrations' table rebuilds
    app = create_app(Settings(database_url=url, artifacts_url=f"file://{tmp_path}", host="127.0.0.1"))
    full = {"on": True}

    @event.listens_for(app.state.engine, "connect")
    def _no_room(dbapi_conn, _record):
        if full["on"]:
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    recipe = {}  # the whole default recipe is stored (3 KB): the pages' free room is soon used up
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answers = [client.post("/api/v1/runs", json={"name": "r", "recipe": recipe}) for _ in range(10)]
        refused = next(a for a in answers if a.status_code != 201)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_full"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "out of space" in ready.json()["error"]["message"]
        full["on"] = False
        app.state.engine.dispose()  # new connections, without the limit: space again
        assert client.post("/api/v1/runs", json={"name": "r", "recipe": recipe}).status_code == 201
        assert client.get("/readyz").status_code == 200
    app.state.engine.dispose()
