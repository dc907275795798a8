"""The one-way layers (pyproject.toml, [tool.importlinter]): server and worker never import each
other, the client stands on core alone (the worker uses it, the server never), and core imports
none of them, nor torch. Checked with import-linter on the real code, and on
small trees that break each contract, to show the contracts can fail."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_code_keeps_every_contract():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(CONFIG['contracts'])} kept, 0 broken" in done.stdout


BREACHES = {
    "server-not-worker": ("server/runs.py", "from worker import trainer\n"),
    "worker-not-server": ("worker/local.py", "def f():\n    import server.runs\n"),
    "core-alone": ("core/recipe.py", "import torch\n"),
    "client-on-core": ("client/api.py", "from worker import trainer\n"),
}


@pytest.mark.parametrize("contract", sorted(BREACHES))
def test_each_contract_catches_its_breach(tmp_path, contract):
    for package in CONFIG["root_packages"]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for package, module in (("server", "runs"), ("worker", "trainer"), ("worker", "local"), ("core", "recipe"),
                            ("client", "api")):
        (tmp_path / package / f"{module}.py").write_text("")
    path, code = BREACHES[contract]
    (tmp_path / path).write_text(code)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    done = lint(tmp_path, "--contract", contract)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout
    assert lint(tmp_path, *[a for c in BREACHES if c != contract for a in ("--contract", c)]).returncode == 0
