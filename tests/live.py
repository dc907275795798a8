"""Real `sala` processes for tests that must see what a person sees: the console script, its
log output and exit codes, and a server on a TCP port.

`live_server` starts `sala server` on a free loopback port, waits for /readyz, yields a
`LiveServer` (base URL and the output so far) and always terminates the process;
`serve_in_thread` serves an app object the test holds; `Stream` reads the event stream.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SALA = str(Path(sys.executable).with_name("sala"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sala_env(tmp_path: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a `sala` child: a SQLite file and an artifact store under tmp_path,
    every other SALA_* variable of the parent removed so the test sees only what it sets."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SALA_")}
    base.update({
        "SALA_DATABASE_URL": f"sqlite:///{tmp_path / 'sala.db'}",
        "SALA_ARTIFACTS_URL": f"file://{tmp_path / 'artifacts'}",
        "PYTHONUNBUFFERED": "1",
    })
    base.update(env or {})
    return base


def run_sala(*args: str, tmp_path: Path, env: Mapping[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SALA, *args], env=sala_env(tmp_path, env), cwd=tmp_path, text=True,
                          capture_output=True, timeout=timeout, check=False)


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def live_server(tmp_path: Path, env: Mapping[str, str] | None = None, *,
                args: tuple[str, ...] = (), startup_timeout: float = 120,
                port: int | None = None) -> Iterator[LiveServer]:
    port = port or free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="sala-server-", suffix=".log", dir=tmp_path)
    log_path = Path(log_name)
    process = subprocess.Popen([SALA, "server", "--port", str(port), *args], env=sala_env(tmp_path, env),
                               cwd=tmp_path, stdout=log_fd, stderr=subprocess.STDOUT, text=True)
    os.close(log_fd)
    server = LiveServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_ready(server, startup_timeout)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait_ready(server: LiveServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"sala server exited with {server.process.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"sala server not ready after {timeout}s:\n{server.output()}")


@contextmanager
def serve_in_thread(app, timeout: float = 30) -> Iterator[str]:
    """`app` behind a real uvicorn on a free loopback port, in a thread of this process: real HTTP
    (streams, kept-alive connections) while the test can still reach into the app (its state, a
    monkeypatched constant). Yields the base URL."""
    import threading

    from server.app import Server

    port = free_port()
    server = Server(app, host="127.0.0.1", port=port, log_level="warning")
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the in-thread server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.handle_exit(None, None)
        thread.join(timeout)


class Stream:
    """An SSE client in a thread: every event and comment line it has read, and whether the
    server ended the stream (rather than the client giving up)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, read_timeout: float = 30):
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.ended = threading.Event()
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}, read_timeout), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str], read_timeout: float) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=read_timeout)) as answer:
                fields: dict[str, str] = {}
                for line in answer.iter_lines():  # an event's fields, then a blank line
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line:
                        name, _, value = line.partition(": ")
                        fields[name] = value
                    elif "data" in fields:
                        data = json.loads(fields.pop("data"))
                        self.events.append({**data, "sse": fields})
                        fields = {}
            self.ended.set()
        except httpx.HTTPError as exc:
            self.error = exc
