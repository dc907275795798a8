"""The README works as printed: its marked curl blocks run against a live server, its settings
table equals `Settings`, its CLI reference names every command, its docs links resolve."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

import sala.cli
from server.settings import Settings
from tests.live import live_server, sala_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MARKER = "<!-- readme-test -->"


def marked_blocks(text: str) -> list[str]:
    """Bash blocks whose fence line directly follows the marker line."""
    pattern = re.escape(MARKER) + r"\n```bash\n(.*?)\n```"
    return re.findall(pattern, text, flags=re.S)


def test_marked_blocks_are_found():
    blocks = marked_blocks(README)
    assert len(blocks) >= 5
    assert README.count(MARKER) == len(blocks), "a marker is not directly followed by a ```bash fence"


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_readme_curl_blocks_run_as_printed(tmp_path):
    blocks = marked_blocks(README)
    # curl fails on any HTTP error and shows the body: a 4xx/5xx anywhere fails the test
    script = ["set -euo pipefail", 'curl() { command curl --fail-with-body -sS "$@"; }']
    for number, block in enumerate(blocks, 1):
        script += [f"echo '### block {number}' >&2", block]
    script.append("echo '### all blocks passed' >&2")
    # a short lease so the walkthrough's killed worker is replaced in seconds, not half a minute
    with live_server(tmp_path, {"SALA_LEASE_SECONDS": "3", "SALA_REAPER_SECONDS": "0.5"}) as live:
        env = sala_env(tmp_path, {"SALA": live.url})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, text=True,
                                capture_output=True, timeout=400, check=False)
        log = live.output()
    failed_in = re.findall(r"### block (\d+)", result.stderr)
    assert result.returncode == 0, (
        f"README block {failed_in[-1] if failed_in else '?'} failed (exit {result.returncode})\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}\n--- server\n{log[-3000:]}")
    assert "### all blocks passed" in result.stderr
    assert "401" in result.stdout.splitlines()  # the auth block saw a tokenless request refused


def readme_settings() -> dict[str, str]:
    rows = re.findall(r"^\| `(SALA_[A-Z0-9_]+)` \| `([^`]*)` \|", README, flags=re.M)
    return dict(rows)


def test_settings_table_matches_settings():
    documented = readme_settings()
    expected = {f"SALA_{name.upper()}": str(field.default) for name, field in Settings.model_fields.items()}
    assert sorted(documented) == sorted(expected), "README's SALA_* table lists other settings than Settings"
    for name, default in expected.items():
        assert documented[name] == default, f"README says {name} defaults to {documented[name]!r}, code {default!r}"


def command_paths(command, prefix: str = "sala") -> list[str]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [prefix]
    return [path for name, sub in sorted(subcommands.items()) for path in command_paths(sub, f"{prefix} {name}")]


def test_cli_reference_names_every_command():
    paths = command_paths(typer.main.get_command(sala.cli.app))
    assert "sala server" in paths and "sala tokens create" in paths
    reference = README.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    missing = [p for p in paths if not re.search(rf"`{re.escape(p)}( |`)", reference)]
    assert not missing, f"README's CLI reference lacks {missing}"


def test_docs_links_resolve():
    links = re.findall(r"\]\(((?:docs/)[^)#]+)", README)
    assert links
    for link in links:
        assert (ROOT / link).is_file(), f"README links to missing {link}"


def test_first_screen_gives_exactly_the_two_commands():
    first_screen = README.split("\n---\n", 1)[0]
    commands = re.findall(r"^(make \w+)", first_screen, flags=re.M)
    assert commands == ["make up", "make test"]
    assert "Khmer" in first_screen and "curriculum" in first_screen
