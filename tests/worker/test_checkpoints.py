"""Checkpoint round trips, corruption refusal, retention, atomicity under failure, RNG restore."""

from __future__ import annotations

import errno
import os
import random
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch

from worker import checkpoints
from worker.checkpoints import (
    CheckpointCorrupt,
    CheckpointInfo,
    CheckpointManager,
    capture_rng,
    load_checkpoint,
    restore_rng,
)
from worker.precision import GradientAccumulator, PrecisionManager
from worker.schedulers import build_scheduler


def full_state() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 64)).sum().backward()
    opt.step()
    lr = build_scheduler("plateau", opt, steps_per_epoch=2, max_epochs=3, warmup_epochs=1)
    lr.step_update(3)
    return {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": lr.state_dict(),
        "scaler": PrecisionManager("fp16").state_dict(), "task_weights": {"log_vars": torch.zeros(5)},
        "rng": capture_rng(), "data": {"epoch": 2, "micro_batch": 17, "seed": 7},
        "meta": {"run_id": "r1", "stage": "word_level", "charset": "abc123", "metrics": {"val_cer": 0.25}},
    }


def assert_same(a: object, b: object) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)  # type: ignore[arg-type]
        for x, y in zip(a, b, strict=True):  # type: ignore[call-overload]
            assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("root_kind", ["file", "memory"])
def test_round_trip_with_weights_only_load(tmp_path: Path, root_kind: str) -> None:
    root = tmp_path.as_uri() if root_kind == "file" else f"memory://ckpt-{uuid.uuid4().hex}"
    manager = CheckpointManager(root)
    state = full_state()
    info = manager.save(state, epoch=2, step=40, metrics={"val_cer": 0.25})
    assert info.uri.startswith(f"{root_kind}://") and info.size > 0 and len(info.sha256) == 64
    assert_same(manager.load(info), state)
    assert_same(load_checkpoint(info.uri, info.sha256), state)
    assert CheckpointInfo.from_dict(info.to_dict()) == info


def test_compression_is_smaller_with_equal_content(tmp_path: Path) -> None:
    state = {"weights": torch.zeros(50_000), "meta": {"epoch": 1}}
    plain = CheckpointManager(tmp_path.as_uri()).save(state, epoch=1, step=1)
    packed = CheckpointManager(tmp_path.as_uri(), compress=True).save(state, epoch=1, step=1)
    assert packed.compressed and packed.uri.endswith(".zst") and packed.size < plain.size / 10
    assert_same(load_checkpoint(packed.uri, packed.sha256), load_checkpoint(plain.uri, plain.sha256))


def corrupt(info: CheckpointInfo, mutate) -> None:  # type: ignore[no-untyped-def]
    path = Path(fsspec.core.url_to_fs(info.uri)[1])
    path.write_bytes(mutate(path.read_bytes()))


@pytest.mark.parametrize("compress", [False, True])
def test_flipped_byte_is_refused_naming_the_file(tmp_path: Path, compress: bool) -> None:
    info = CheckpointManager(tmp_path.as_uri(), compress=compress).save(full_state(), epoch=1, step=1)
    corrupt(info, lambda data: data[:100] + bytes([data[100] ^ 0x01]) + data[101:])
    with pytest.raises(CheckpointCorrupt, match="sha256") as caught:
        load_checkpoint(info.uri, info.sha256)
    assert caught.value.uri == info.uri and info.uri in str(caught.value)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_file_is_refused_with_or_without_a_recorded_hash(tmp_path: Path, compress: bool) -> None:
    info = CheckpointManager(tmp_path.as_uri(), compress=compress).save(full_state(), epoch=1, step=1)
    corrupt(info, lambda data: data[: len(data) // 2])
    with pytest.raises(CheckpointCorrupt, match="sha256"):
        load_checkpoint(info.uri, info.sha256)
    with pytest.raises(CheckpointCorrupt, match="cannot decode"):
        load_checkpoint(info.uri)


def test_apply_retention_deletes_files(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path.as_uri(), keep_last=1, keep_best=1, metric="val_cer")
    saved = [manager.save({"x": torch.tensor(i)}, epoch=i, step=i, metrics={"val_cer": cer})
             for i, cer in enumerate([0.3, 0.1, 0.2, 0.4])]
    doomed = manager.apply_retention(saved)
    assert [c.step for c in doomed] == [0, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        Path(fsspec.core.url_to_fs(c.uri)[1]).name for c in saved if c not in doomed
    )


def test_latest_valid_falls_back_past_a_corrupt_newest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path.as_uri())
    older = manager.save({"epoch": 1}, epoch=1, step=10)
    newest = manager.save({"epoch": 2}, epoch=2, step=20)
    missing = CheckpointInfo(uri=manager.uri_for("gone.pt"), sha256="0" * 64, size=1, epoch=3, step=30)
    corrupt(newest, lambda data: data[:-10])
    found = manager.latest_valid([older, missing, newest])
    assert found is not None and found[0] == older and found[1] == {"epoch": 1}
    corrupt(older, lambda data: b"x" + data[1:])
    assert manager.latest_valid([older, newest]) is None


def test_failed_local_write_leaves_previous_checkpoint_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager = CheckpointManager(tmp_path.as_uri())
    previous = manager.save({"epoch": 1}, epoch=1, step=1, name="last.pt")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoints.os, "fsync", no_space)
    with pytest.raises(OSError) as caught:
        manager.save({"epoch": 2, "big": torch.ones(1000)}, epoch=2, step=2, name="last.pt")
    with pytest.raises(OSError):
        manager.save({"epoch": 2}, epoch=2, step=2)
    assert caught.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert manager.load(previous) == {"epoch": 1}


def test_failed_remote_move_leaves_no_partial_key(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = CheckpointManager(f"memory://ckpt-{uuid.uuid4().hex}")
    previous = manager.save({"epoch": 1}, epoch=1, step=1, name="last.pt")

    def broken_mv(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "no space left on device")

    monkeypatch.setattr(manager.fs, "mv", broken_mv)
    with pytest.raises(OSError):
        manager.save({"epoch": 2}, epoch=2, step=2, name="last.pt")
    assert [p.rsplit("/", 1)[-1] for p in manager.fs.ls(manager.root, detail=False)] == ["last.pt"]
    assert manager.load(previous) == {"epoch": 1}


def draws() -> tuple[list[float], list[float], list[float]]:
    return torch.rand(5).tolist(), np.random.rand(5).tolist(), [random.random() for _ in range(5)]


def test_rng_restore_through_a_checkpoint_gives_identical_draws(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    manager = CheckpointManager(tmp_path.as_uri(), compress=True)
    saved = manager.save({"rng": capture_rng()}, epoch=1, step=1)
    expected = draws()
    draws()
    restore_rng(manager.load(saved)["rng"])
    assert draws() == expected


class TinyRun:
    """Model, optimizer, lr controller, precision and accumulation wired like the trainer will."""

    def __init__(self) -> None:
        torch.manual_seed(11)
        np.random.seed(11)
        random.seed(11)
        self.model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=3e-3)
        self.lr = build_scheduler("warmup_cosine", self.opt, steps_per_epoch=3, max_epochs=4, warmup_epochs=1)
        self.amp = PrecisionManager("fp32")
        self.acc = GradientAccumulator(2, clip_norm=1.0)

    def epoch(self, epoch: int) -> None:
        self.acc.start_epoch(5)  # 5 micro-batches: two full windows and a partial one
        for i in range(5):
            x = torch.randn(4, 6) + float(np.random.rand()) + random.random()
            loss = self.model(x).pow(2).mean()
            self.amp.backward(loss * self.acc.loss_scale(i))
            if self.acc.is_boundary(i):
                self.amp.step(self.opt, self.acc.clip(self.model.parameters()))
                self.opt.zero_grad(set_to_none=True)
                self.lr.step_update(self.lr.num_updates + 1)
        self.lr.step_epoch(epoch)

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.lr.state_dict(),
                "scaler": self.amp.state_dict(), "rng": capture_rng()}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.lr.load_state_dict(state["scheduler"])
        self.amp.load_state_dict(state["scaler"])
        restore_rng(state["rng"])


def test_two_plus_two_epochs_equal_four_bit_for_bit(tmp_path: Path) -> None:
    straight = TinyRun()
    for epoch in range(4):
        straight.epoch(epoch)
    first = TinyRun()
    for epoch in range(2):
        first.epoch(epoch)
    manager = CheckpointManager(tmp_path.as_uri(), compress=True)
    saved = manager.save(first.state(), epoch=1, step=first.lr.num_updates)
    resumed = TinyRun()
    torch.manual_seed(999)  # a fresh process would start from other generator states
    np.random.seed(999)
    random.seed(999)
    resumed.load(manager.load(saved))
    for epoch in range(2, 4):
        resumed.epoch(epoch)
    assert_same(resumed.model.state_dict(), straight.model.state_dict())
    assert resumed.opt.param_groups[0]["lr"] == straight.opt.param_groups[0]["lr"]
