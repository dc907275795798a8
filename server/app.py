"""Build the FastAPI application from settings."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import uvicorn

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from server import delivery, migrate
from server.browsers import BrowserGuard
from server.db import IN_FLIGHT, THREADS, make_engine, make_sessionmaker, writer
from server.deps import DB, Identities
from server.errors import CatchAll, error_body, install_handlers
from server.limits import BodyLimit, ConcurrencyLimit
from server.observability import Metrics
from server.reads import BodyCache, CachedReads
from server.reaper import Reaper
from server.routes import control, observe, runs, tokens, webhooks, workers
from core.api import ErrorBody
from server.settings import Settings, get_settings

log = logging.getLogger("sala.server")
API_PREFIX = "/api/v1"
# Not ready after a write failed for want of space, until a write succeeds or this long has passed
# (then writes are tried again: a balancer that took us out of rotation would send none).
STORAGE_FULL_NOT_READY_S = 60.0
DASHBOARD = Path(__file__).with_name("dashboard")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    app = FastAPI(title="Sala", version="0.1.0", lifespan=_lifespan,
                  description="Steer Khmer OCR training runs over HTTP.")
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.write_sessionmaker = make_sessionmaker(writer(engine))
    app.state.open_loopback = settings.binds_loopback
    app.state.token_touched = {}
    app.state.identities = Identities()
    app.state.stopping = threading.Event()
    app.state.storage_full_at = None  # when a write last failed for want of space (server/errors.py)
    app.state.metrics = Metrics()
    app.state.bodies = BodyCache(settings.read_cache_bytes)  # encoded poll answers (server/reads.py)

    install_handlers(app)
    app.add_middleware(CachedReads, state=app.state)  # innermost: admission control and metrics apply
    app.add_middleware(CatchAll)
    app.add_middleware(_MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ConcurrencyLimit, limit=IN_FLIGHT)
    app.add_middleware(BrowserGuard, settings=settings)
    if settings.origins:  # pages of these origins may call the API: their preflights are answered
        app.add_middleware(CORSMiddleware, allow_origins=sorted(settings.origins), allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "If-None-Match"],
                           expose_headers=["ETag"])
    for module in (runs, control, observe, tokens, webhooks, workers):
        app.include_router(module.router, prefix=API_PREFIX)
    _service_routes(app)
    return app


class Server(uvicorn.Server):
    """uvicorn that tells the app when shutdown begins: event streams and claims' long-polls never
    end by themselves, and would otherwise hold the shutdown for its whole grace period."""

    def __init__(self, app: FastAPI, **config):
        super().__init__(uvicorn.Config(app, **config))
        self.sala_app = app
        self.on_started = None  # called once listening (server/processes.py: a child that served)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    def handle_exit(self, sig, frame) -> None:
        self.sala_app.state.stopping.set()
        super().handle_exit(sig, frame)


class _MetricsMiddleware:
    def __init__(self, app, metrics: Metrics):
        self.record = metrics.asgi(app)

    async def __call__(self, scope, receive, send):
        await self.record(scope, receive, send)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
    settings = app.state.settings
    app.state.reaper = Reaper(app.state.write_sessionmaker, lease_seconds=settings.lease_seconds,
                              stop_deadline_seconds=settings.stop_deadline_seconds)
    tasks = [asyncio.create_task(app.state.reaper.run_forever(settings.reaper_seconds)),
             asyncio.create_task(delivery.deliver_forever(app))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()


def _service_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], responses={503: {"model": ErrorBody, "description": "not ready"}})
    def readyz() -> JSONResponse:
        # Its own connection, not a request session: an unreachable database is this probe's answer (503).
        try:
            with app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            if not migrate.at_head(app.state.engine):
                return JSONResponse(error_body("not_ready", "database schema is not at the latest "
                                               "migration: run `sala db upgrade`"), 503)
        except Exception as exc:  # any failure to reach the database means not ready
            return JSONResponse(error_body("not_ready", f"database unreachable: {type(exc).__name__}"), 503)
        full = app.state.storage_full_at
        if full is not None and time.monotonic() - full < STORAGE_FULL_NOT_READY_S:
            return JSONResponse(error_body("not_ready", f"the database ran out of space {time.monotonic() - full:.0f}s "
                                           "ago and no write has succeeded since"), 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def metrics(db: DB) -> Response:
        app.state.metrics.refresh(db)
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/dashboard/fonts/NotoSansKhmer.ttf", include_in_schema=False)
    def khmer_font() -> FileResponse:
        """The Khmer font bundled with the fontpkg package, so Khmer labels render offline."""
        return FileResponse(_khmer_font(), media_type="font/ttf",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/dashboard", StaticFiles(directory=DASHBOARD), name="dashboard")


def _khmer_font() -> Path:
    import fontpkg_noto_sans_khmer

    return next(Path(fontpkg_noto_sans_khmer.ROOT).glob("files/*.ttf"))
