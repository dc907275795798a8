"""Deleting stored files by URI (any fsspec store): the server when a run is deleted, the worker
and `sala train` when retention drops a checkpoint, `CheckpointManager` for library users."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import fsspec

log = logging.getLogger("sala.files")


def delete(uris: Iterable[str]) -> list[str]:
    """Delete each file; one already gone is fine. Returns the URIs that could not be deleted, each
    logged: a delete follows a decision already recorded, so a failure must not undo it."""
    failed = []
    for uri in uris:
        try:
            fs, path = fsspec.core.url_to_fs(uri)
            fs.rm(path)
        except FileNotFoundError:
            continue
        except Exception:  # an unreachable store or a refused path: keep going, say which
            log.warning("could not delete %s", uri, exc_info=True)
            failed.append(uri)
    return failed
