"""Stored files stay confined to their root: `inside` resolves and refuses, `delete` removes only
files that lie under the root it is given, never through a symbolic link."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from core import files


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "store" / "run-1"
    root.mkdir(parents=True)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    other_run = tmp_path / "store" / "run-2"
    other_run.mkdir()
    (other_run / "ck.pt").write_text("run 2's")
    (root / "out-dir").symlink_to(tmp_path, target_is_directory=True)
    (root / "out-file.pt").symlink_to(outside)
    (root / "run2-file.pt").symlink_to(other_run / "ck.pt")
    (root / "mine.pt").write_text("retention drops this one")
    return {"root": root, "outside": outside, "other": other_run / "ck.pt"}


def escapes(root: Path, outside: Path, other: Path) -> list[str]:
    return [
        f"file://{outside}", str(outside), f"file://{root}/../../precious.txt",
        f"file://{root}/out-dir/precious.txt", f"file://{root}/out-file.pt", f"file://{root}/run2-file.pt",
        f"file://{other}", f"file://{root}/../run-2/ck.pt", f"file://{root}-evil/ck.pt",
        f"memory://{root}/mine.pt", f"simplecache::file://{outside}", "http://127.0.0.1:9/ck.pt",
    ]


def test_delete_removes_only_files_inside_the_root(store):
    root, outside, other = store["root"], store["outside"], store["other"]
    uris = escapes(root, outside, other)
    failed = files.delete([*uris, f"file://{root}/mine.pt", f"file://{root}/gone.pt"], root=f"file://{root}")
    assert failed == uris  # each refused (and logged); one already gone is not a failure
    assert outside.read_text() == "keep" and other.read_text() == "run 2's"
    assert (root / "out-file.pt").is_symlink() and (root / "run2-file.pt").is_symlink()
    assert not (root / "mine.pt").exists()


def test_inside_refuses_with_the_reason(store):
    root = f"file://{store['root']}"
    with pytest.raises(files.OutsideStore, match="outside"):
        files.inside(root, f"file://{store['root']}/../run-2/ck.pt")
    with pytest.raises(files.OutsideStore, match="not in this artifact store"):
        files.inside(root, "memory://run-1/ck.pt")
    with pytest.raises(files.OutsideStore, match="does not open"):
        files.inside(root, f"zip://ck.pt::file://{store['outside']}")
    fs, path = files.inside(root, f"file://{store['root']}/sub/../mine.pt")
    assert path == str(store["root"] / "mine.pt") and fs.exists(path)


def test_a_non_local_store_folds_dot_dot_before_comparing():
    fs = fsspec.filesystem("memory")
    fs.pipe({"/store/run-1/a.pt": b"a", "/store/secret": b"s"})
    try:
        assert files.delete(["memory:///store/run-1/../secret"], root="memory:///store/run-1") \
            == ["memory:///store/run-1/../secret"]
        assert files.delete(["memory:///store/run-1/a.pt"], root="memory:///store/run-1") == []
        assert fs.exists("/store/secret") and not fs.exists("/store/run-1/a.pt")
    finally:
        fs.rm("/store", recursive=True)


def test_run_root_is_where_the_worker_writes():
    assert files.run_root("file:///data/artifacts/", 7) == "file:///data/artifacts/run-7"
