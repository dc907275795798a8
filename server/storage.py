"""Checkpoint files on the artifact store (any fsspec URL). The server only reads and deletes
them; workers write them. Every path is checked to lie inside the store's root."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import fsspec

from core import files
from server.errors import Forbidden, NotFound

log = logging.getLogger("sala.storage")
CHUNK = 1 << 20


def _split(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url)
    if fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol:
        path = os.path.realpath(path)
    return fs, path


def check_uri(uri: str) -> None:
    """Refuse what must never be opened at all: chained filesystems and unknown protocols.
    Checked on the string, before fsspec instantiates anything the URI names."""
    protocol = fsspec.core.split_protocol(uri)[0] or "file"
    if "::" in uri or protocol not in fsspec.available_protocols():
        raise Forbidden("checkpoint URI names a filesystem this server does not open")


def inside_root(root_url: str, uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve `uri` and refuse it unless it lies under the store root (no `..`, no symlink escape)."""
    check_uri(uri)
    if (fsspec.core.split_protocol(uri)[0] or "file") != (fsspec.core.split_protocol(root_url)[0] or "file"):
        raise Forbidden("checkpoint is not in this server's artifact store")
    root_fs, root = _split(root_url)
    fs, path = _split(uri)
    if type(fs) is not type(root_fs):
        raise Forbidden("checkpoint is not in this server's artifact store")
    root = root.rstrip("/")
    if not (path == root or path.startswith(root + "/")):
        raise Forbidden("checkpoint path lies outside the artifact store")
    return fs, path


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


def delete_files(root_url: str, uris: list[str]) -> None:
    """Delete checkpoint files of a deleted run, but only inside the store: a URI is what a worker
    reported, and the server must never delete a file elsewhere on its machine because of one."""
    inside = []
    for uri in uris:
        try:
            inside_root(root_url, uri)
            inside.append(uri)
        except Forbidden:
            log.warning("not deleting %s: it lies outside the artifact store", uri)
    files.delete(inside)
