"""The wheel carries what an installed server and worker need at run time: every package of the checkout,
the migrations (kept at the top level, mapped into server/migrations), the dashboard and the bundled corpus;
and a server installed from it migrates a database."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.test_compose import source_folders

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of what the Dockerfile copies, so a stale build/ folder cannot leak into it."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in source_folders():
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(source)], check=True, capture_output=True, timeout=300)
    return next(out.glob("sala-*.whl"))


def checkout_packages() -> set[str]:
    """Dotted names of the checkout's packages, as the wheel lays them out."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {Path(path): name for name, path in config.get("package-dir", {}).items()}
    found = set()
    for init in ROOT.glob("*/**/__init__.py"):
        folder = init.parent.relative_to(ROOT)
        if folder.parts[0] in ("tests", "bench", ".venv", "build"):
            continue
        found.add(".".join(folder.parts))
    for path, name in mapped.items():
        found |= {name} | {f"{name}.{d.name}" for d in (ROOT / path).iterdir() if d.is_dir() and d.name != "__pycache__"}
    return found


def test_wheel_contains_every_package_the_migrations_and_the_dashboard(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith(".py")}
    assert checkout_packages() == packages, (f"missing from the wheel: {checkout_packages() - packages}; "
                                             f"not in the checkout: {packages - checkout_packages()}")
    assert "server/migrations/env.py" in names and "server/migrations/script.py.mako" in names
    versions = sorted(n for n in names if n.startswith("server/migrations/versions/") and n.endswith(".py"))
    assert [Path(n).name for n in versions] == sorted(p.name for p in (ROOT / "migrations/versions").glob("*.py"))
    assert "server/dashboard/index.html" in names
    assert "worker/data/corpus/khmer-words.txt.gz" in names


def test_installed_wheel_migrates_a_database(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("import sys, server.migrate as m; from sqlalchemy import create_engine; "
            "assert m.__file__.startswith(sys.argv[1]), m.__file__; url = f'sqlite:///{sys.argv[2]}'; "
            "m.upgrade(url); print(m.current_revision(create_engine(url)), m.head_revision(url))")
    done = subprocess.run([sys.executable, "-c", code, str(target), str(tmp_path / "db.sqlite")], cwd=tmp_path,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    current, head = done.stdout.split()
    assert current == head
