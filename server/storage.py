"""Checkpoint files on the artifact store (any fsspec URL). The server only reads and deletes
them; workers write them. Every path is checked to lie inside the store (`core.files.inside`),
and a run's files inside that run's own directory."""

from __future__ import annotations

from collections.abc import Iterator

import fsspec

from core import files
from server.errors import Forbidden, NotFound

CHUNK = 1 << 20


def check_report(store_url: str, run_id: int, uri: str) -> None:
    """A reported checkpoint must lie in its run's directory of this store, or a later delete
    (of the run, or by retention) would remove whatever file the report named."""
    inside_root(files.run_root(store_url, run_id), uri)


def inside_root(root_url: str, uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return files.inside(root_url, uri)
    except files.OutsideStore as refused:
        raise Forbidden(str(refused)) from None


def stream_file(root_url: str, uri: str) -> tuple[Iterator[bytes], int]:
    fs, path = inside_root(root_url, uri)
    if not fs.exists(path):
        raise NotFound("checkpoint file is gone from the artifact store")
    size = fs.size(path)

    def chunks() -> Iterator[bytes]:
        with fs.open(path, "rb") as handle:
            while block := handle.read(CHUNK):
                yield block

    return chunks(), size


def delete_files(store_url: str, run_id: int, uris: list[str]) -> None:
    """Delete the checkpoint files of a deleted run, only inside that run's directory: a URI is
    what a worker reported, and the server must never delete a file elsewhere because of one."""
    files.delete(uris, root=files.run_root(store_url, run_id))
