"""Prometheus metrics on a per-app registry (several apps live in one test process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.models import Run
from server.states import Status


def _template(scope) -> str:
    """The route's template (`/api/v1/runs/{run_id}`), so a label never holds an id."""
    if scope.get("route") is None:
        return "unmatched"
    path = scope["path"]
    for name, value in (scope.get("path_params") or {}).items():
        path = path.replace(f"/{value}", f"/{{{name}}}", 1)
    return path


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("sala_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("sala_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=self.registry)
        self.runs = Gauge("sala_runs", "Runs by status", ["status"], registry=self.registry)
        self.nonfinite = Counter("sala_nonfinite_values_total", "Metric values sent as NaN or ±Infinity, "
                                 "stored as null", ["message"], registry=self.registry)

    def refresh(self, db: Session) -> None:
        counts = dict(db.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        for status in Status:
            self.runs.labels(status.value).set(counts.get(status.value, 0))

    def asgi(self, app):
        """Plain ASGI (not BaseHTTPMiddleware, which costs a task and a copy per request)."""
        async def record(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            start, status = time.perf_counter(), 500

            async def remember(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, remember)
            finally:
                path = _template(scope)
                self.requests.labels(scope["method"], path, str(status)).inc()
                self.latency.labels(scope["method"], path).observe(time.perf_counter() - start)
        return record
