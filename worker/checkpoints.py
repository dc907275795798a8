"""Checkpoints on any fsspec store: atomic writes, optional zstd, sha256, retention, RNG capture.

A checkpoint is one ``torch.save`` of a dict of state dicts (model, optimizer, scheduler, scaler,
task weights, RNG, data position, metadata). The server records its URI, sha256 and size; a file
that fails its checksum or does not decode is refused with :class:`CheckpointCorrupt`, never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import random
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import torch
import zstandard
from fsspec.implementations.local import LocalFileSystem

from core import files, retention

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class CheckpointCorrupt(Exception):
    """A checkpoint whose bytes fail their checksum or do not decode."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"checkpoint {uri} is corrupt: {reason}")
        self.uri = uri
        self.reason = reason


@dataclass(frozen=True)
class CheckpointInfo:
    """What the server stores about one checkpoint file."""

    uri: str
    sha256: str
    size: int
    epoch: int
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    compressed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointInfo:
        return cls(**data)


def capture_rng() -> dict[str, Any]:
    """Every global generator a training step draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    _, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def serialize(state: dict[str, Any], *, compress: bool, level: int = 3) -> bytes:
    """The file's bytes; held in memory because an OCR checkpoint is tens of MB and the hash needs them all."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    return zstandard.ZstdCompressor(level=level).compress(data) if compress else data


def deserialize(data: bytes, uri: str, *, map_location: Any = "cpu", weights_only: bool = True) -> dict[str, Any]:
    try:
        if data.startswith(ZSTD_MAGIC):
            data = zstandard.ZstdDecompressor().decompress(data)
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=weights_only)
    except (zstandard.ZstdError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise CheckpointCorrupt(uri, f"cannot decode ({type(error).__name__}: {error})") from error


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Bytes reach ``path`` whole or not at all: a failed write leaves any previous file intact."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        if isinstance(fs, LocalFileSystem):
            _write_local(tmp, path, data)
        else:
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            with fs.open(tmp, "wb") as handle:
                handle.write(data)
            fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


def _write_local(tmp: str, path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(
    uri: str, expected_sha256: str | None = None, *, map_location: Any = "cpu", weights_only: bool = True,
) -> dict[str, Any]:
    """Load ``uri``, refusing it when its sha256 differs from the recorded one or it does not decode."""
    fs, path = fsspec.core.url_to_fs(uri)
    data = fs.cat_file(path)
    if expected_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected_sha256:
            raise CheckpointCorrupt(uri, f"sha256 {digest} does not match recorded {expected_sha256} ({len(data)} bytes)")
    return deserialize(data, uri, map_location=map_location, weights_only=weights_only)


class CheckpointManager:
    """Writes checkpoints under one fsspec root and applies the run's retention policy."""

    def __init__(
        self, root: str, *, compress: bool = False, level: int = 3,
        keep_last: int = 3, keep_best: int = 2, metric: str | None = "val_cer",
    ) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.compress = compress
        self.level = level
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.metric = metric

    @property
    def root_url(self) -> str:
        """The root as a URL: the only place retention may delete files."""
        return self.fs.unstrip_protocol(self.root)

    def uri_for(self, name: str) -> str:
        return self.fs.unstrip_protocol(f"{self.root.rstrip('/')}/{name}")

    def save(
        self, state: dict[str, Any], *, epoch: int, step: int,
        metrics: dict[str, float] | None = None, name: str | None = None,
    ) -> CheckpointInfo:
        name = name or f"epoch{epoch:04d}-step{step:09d}.pt" + (".zst" if self.compress else "")
        data = serialize(state, compress=self.compress, level=self.level)
        path = f"{self.root.rstrip('/')}/{name}"
        write_atomic(self.fs, path, data)
        return CheckpointInfo(
            uri=self.fs.unstrip_protocol(path), sha256=hashlib.sha256(data).hexdigest(), size=len(data),
            epoch=epoch, step=step, metrics=dict(metrics or {}), compressed=self.compress,
        )

    def load(self, info: CheckpointInfo | str, expected_sha256: str | None = None, **kwargs: Any) -> dict[str, Any]:
        if isinstance(info, CheckpointInfo):
            return load_checkpoint(info.uri, expected_sha256 or info.sha256, **kwargs)
        return load_checkpoint(info, expected_sha256, **kwargs)

    def select_for_deletion(self, infos: Sequence[CheckpointInfo]) -> list[CheckpointInfo]:
        return retention.select_for_deletion(infos, keep_last=self.keep_last, keep_best=self.keep_best,
                                             metric=self.metric)

    def apply_retention(self, infos: Sequence[CheckpointInfo]) -> list[CheckpointInfo]:
        """Delete what retention drops and return it, so the caller can forget those records."""
        doomed = self.select_for_deletion(infos)
        files.delete((info.uri for info in doomed), root=self.root_url)
        return doomed

    def latest_valid(
        self, infos: Sequence[CheckpointInfo], **kwargs: Any,
    ) -> tuple[CheckpointInfo, dict[str, Any]] | None:
        """The newest checkpoint that loads and verifies; a corrupt or missing newest falls back to older."""
        for info in sorted(infos, key=lambda c: (c.step, c.epoch), reverse=True):
            try:
                return info, self.load(info, **kwargs)
            except (CheckpointCorrupt, FileNotFoundError):
                continue
        return None
