"""`sala server --processes N`: N server processes on one listening socket.

One Python process serves one request's Python at a time: on a machine with more cores, reads
(the dashboard's polls) scale by running more processes. Each is a whole server of its own: its
own connection pool, its own admission control (`server/limits.py`, `db.IN_FLIGHT` requests at
once per process), its own cache of encoded answers (`server/reads.py`), its own reaper and
delivery loop. They share nothing but the database, which already arbitrates everything they do
(lease claims lock rows, SQLite serialises writers, deliveries are claimed with SKIP LOCKED), and
the run versions that make one process's ETags valid in every other.

The parent binds the socket and starts the children (spawned, not forked: no threads or
connections of the parent are copied); the kernel hands each connection to one of them. SIGTERM
or SIGINT to the parent is passed on, and each child shuts down as a lone server does (streams
and long-polls end at once, requests get `timeout_graceful_shutdown`). A child that dies is
replaced, unless it died before it ever served (the same failure would repeat).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time

import uvicorn

from server.settings import Settings

log = logging.getLogger("sala.server")
GRACEFUL_S = 10
JOIN_S = GRACEFUL_S + 5


def default_processes(cpus: int | None = None) -> int:
    """What `sala up` starts: half the cores, at least 1 and at most 4. `sala up` shares the
    machine with its own training workers and the database; a dedicated server machine wants one
    per core (docs/PERFORMANCE.md)."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(4, cpus // 2))


def serve(settings: Settings, processes: int = 1) -> None:
    """Serve until SIGTERM or SIGINT: in this process when `processes` is 1, else in that many children."""
    if processes <= 1:
        _run(settings, None)
        return
    config = uvicorn.Config("server.app:create_app", host=settings.host, port=settings.port)
    sock = config.bind_socket()
    multiprocessing.allow_connection_pickling()  # the socket goes to each child
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def request_stop(signum, _frame):
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: list = []
    try:
        children = [_start(context, settings, sock) for _ in range(processes)]
        log.info("serving on %s:%d with %d processes (pids %s)", settings.host, settings.port, processes,
                 ", ".join(str(c.process.pid) for c in children))
        while not stop.wait(0.5):
            for i, child in enumerate(children):
                if child.process.is_alive():
                    continue
                if not child.served():
                    log.error("server process %d exited before it served (code %s); stopping",
                              child.process.pid, child.process.exitcode)
                    stop.set()
                    break
                log.warning("server process %d exited (code %s); starting another",
                            child.process.pid, child.process.exitcode)
                children[i] = _start(context, settings, sock)
    finally:
        for child in children:
            if child.process.is_alive():
                os.kill(child.process.pid, signal.SIGTERM)
        for child in children:
            child.process.join(JOIN_S)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Child:
    def __init__(self, context, settings: Settings, sock: socket.socket):
        self.ready = context.Event()
        self.process = context.Process(target=_child_main, args=(settings, sock, self.ready), daemon=False)

    def served(self) -> bool:
        return self.ready.is_set()


def _start(context, settings: Settings, sock: socket.socket) -> _Child:
    child = _Child(context, settings, sock)
    child.process.start()
    return child


def _child_main(settings: Settings, sock: socket.socket, ready) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    _run(settings, sock, ready)


def _stop_when_orphaned(parent: int) -> None:
    """A parent killed outright (SIGKILL) cannot pass the signal on: its children notice on their
    own and shut down as if told to, instead of serving on unsupervised."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _run(settings: Settings, sock: socket.socket | None, ready=None) -> None:
    from server.app import Server, create_app

    server = Server(create_app(settings), host=settings.host, port=settings.port,
                    log_level=settings.log_level.lower(), timeout_graceful_shutdown=GRACEFUL_S)
    if ready is not None:
        server.on_started = ready.set
    server.run(sockets=[sock] if sock is not None else None)
