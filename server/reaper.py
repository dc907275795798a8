"""The reaper: runs whose worker stopped heartbeating are re-queued or failed (`leases.reap`),
but never while their workers could not have renewed. After the server starts, and after the
database comes back from an outage, no lease is judged until workers have had a lease's length
plus one retry interval (`core.protocol.RETRY_MAX_S`) to reach us: a worker that was only
waiting for the server keeps its run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from core.protocol import RETRY_MAX_S
from server import leases
from server.db import DATABASE_AWAY, transaction
from server.models import utcnow

log = logging.getLogger("sala.server")


class Reaper:
    def __init__(self, factory: sessionmaker[Session], *, lease_seconds: float, stop_deadline_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self.factory, self.stop_deadline_seconds, self.clock = factory, stop_deadline_seconds, clock
        self.grace = lease_seconds + RETRY_MAX_S
        self.quiet_until = clock() + self.grace
        self.database_away = False
        self.sweeps = 0

    def sweep(self) -> list[int]:
        """One sweep in a short transaction of its own (a background job has no request to share one with)."""
        try:
            with transaction(self.factory) as db:
                db.execute(text("SELECT 1"))  # also while quiet: a sweep is how the reaper hears the database
                touched = [] if self.quiet() else leases.reap(db, utcnow(), self.stop_deadline_seconds)
        except Exception:
            self.database_away = True
            raise
        if self.database_away:  # the database is back: workers could not renew while it was away
            self.database_away = False
            self.quiet_until = self.clock() + self.grace
            log.warning("database reachable again: no lease expires for %.0fs", self.grace)
        self.sweeps += 1
        return touched

    def quiet(self) -> bool:
        return self.database_away or self.clock() < self.quiet_until

    async def run_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await run_in_threadpool(self.sweep)
            except DATABASE_AWAY as away:  # retried on the next sweep, then a grace period
                log.warning("reaper sweep failed, the database is away: %s", str(away).splitlines()[0])
            except Exception:
                log.warning("reaper sweep failed", exc_info=True)
