"""Stored files by URI (any fsspec store), confined to a store root: the server serves and deletes
only inside its artifact store, a worker deletes only inside its run's directory. A URI is what a
worker reported (or a server answered), so it is checked against the root before anything opens
or removes it: no `..`, no symlink leading out, no other filesystem, no chained URL."""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterable

import fsspec

log = logging.getLogger("sala.files")


class OutsideStore(ValueError):
    """A URI that must not be opened or deleted under this root; the message says why."""


def check_protocol(uri: str) -> None:
    """Refuse what must never be opened at all: chained filesystems and unknown protocols.
    Checked on the string, before fsspec instantiates anything the URI names."""
    protocol = fsspec.core.split_protocol(uri)[0] or "file"
    if "::" in uri or protocol not in fsspec.available_protocols():
        raise OutsideStore("checkpoint URI names a filesystem this store does not open")


def inside(root_url: str, uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """`uri` resolved (symlinks followed, `..` folded), refused unless it lies under `root_url`."""
    check_protocol(uri)
    if _protocol(uri) != _protocol(root_url):
        raise OutsideStore("checkpoint is not in this artifact store")
    root_fs, root = _resolved(root_url)
    fs, path = _resolved(uri)
    if type(fs) is not type(root_fs):
        raise OutsideStore("checkpoint is not in this artifact store")
    root = root.rstrip("/")
    if not path.startswith(root + "/"):
        raise OutsideStore("checkpoint path lies outside the artifact store")
    return fs, path


def run_root(store_url: str, run_id: int) -> str:
    """Where a run's checkpoints live in a store: the worker writes there, and the server accepts
    and deletes a run's checkpoint files only there."""
    return f"{store_url.rstrip('/')}/run-{run_id}"


def delete(uris: Iterable[str], *, root: str) -> list[str]:
    """Delete each file that lies inside `root`; one already gone is fine. Returns the URIs not
    deleted (outside the root, or failed), each logged: a delete follows a decision already
    recorded, so a failure must not undo it. What is removed is the resolved path, so a symlinked
    directory never leads the delete out of the store, and a symlink to a file in the store is
    refused rather than taking another checkpoint's file with it."""
    failed = []
    for uri in uris:
        try:
            fs, path = inside(root, uri)
            if _is_link(fs, uri):
                raise OutsideStore("checkpoint path is a symbolic link")
            fs.rm_file(path)
        except FileNotFoundError:
            continue
        except OutsideStore as refused:
            log.warning("not deleting %s: %s", uri, refused)
            failed.append(uri)
        except Exception:  # an unreachable store: keep going, say which
            log.warning("could not delete %s", uri, exc_info=True)
            failed.append(uri)
    return failed


def _protocol(url: str) -> str:
    return fsspec.core.split_protocol(url)[0] or "file"


def _resolved(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url)
    return fs, os.path.realpath(path) if _is_local(fs) else posixpath.normpath(path)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols or "local" in protocols


def _is_link(fs: fsspec.AbstractFileSystem, uri: str) -> bool:
    return _is_local(fs) and os.path.islink(fsspec.core.url_to_fs(uri)[1])
