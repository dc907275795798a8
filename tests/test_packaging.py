"""The wheel carries what an installed server and worker need at run time: migrations, the dashboard, the corpus."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_migrations_and_dashboard(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("sala-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "server/migrations/env.py" in names
    versions = [n for n in names if n.startswith("server/migrations/versions/") and n.endswith(".py")]
    assert versions, "no migration revisions in the wheel"
    assert "server/dashboard/index.html" in names
    assert "worker/data/corpus/khmer-words.txt.gz" in names
