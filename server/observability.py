"""Prometheus metrics on a per-app registry (several apps live in one test process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select

from server.models import Run
from server.states import Status


class Metrics:
    def __init__(self, sessionmaker):
        self.registry = CollectorRegistry()
        self.requests = Counter("sala_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("sala_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=self.registry)
        self.runs = Gauge("sala_runs", "Runs by status", ["status"], registry=self.registry)
        self._sessionmaker = sessionmaker

    def refresh(self) -> None:
        with self._sessionmaker() as db:
            counts = dict(db.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        for status in Status:
            self.runs.labels(status.value).set(counts.get(status.value, 0))

    def middleware(self):
        async def record(request, call_next):
            start = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.requests.labels(request.method, path, str(response.status_code)).inc()
            self.latency.labels(request.method, path).observe(time.perf_counter() - start)
            return response
        return record
