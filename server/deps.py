"""Dependency aliases for routers: one transaction per request, and the caller's identity."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from server.auth import TOUCH_EVERY, Principal, authenticate, authorize, touch
from server.db import transaction
from server.models import utcnow


async def get_db(request: Request) -> AsyncIterator[Session]:
    """The request's one transaction: committed when the endpoint returns, rolled back on error.

    scope="function" (below) runs the commit before the response is sent, so a failed commit is
    reported to the client instead of hidden behind a 2xx. The dependency is async on purpose: its
    commit then runs on the event loop instead of waiting for a worker thread, and a finished
    request can never hold its connection while every thread waits for one (a pool deadlock)."""
    reads_only = request.method in ("GET", "HEAD", "OPTIONS")
    factory = request.app.state.sessionmaker if reads_only else request.app.state.write_sessionmaker
    with factory() as session:
        with session.begin():
            yield session


DB = Annotated[Session, Depends(get_db, scope="function")]


AUTH_CACHE_SECONDS = 2.0


async def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """Identify the caller. Answers are cached for a moment per Authorization value (the API's own
    token changes clear the cache at once; a CLI revocation takes effect within AUTH_CACHE_SECONDS),
    so a poller costs no database round trip and no worker thread for being identified."""
    state = request.app.state
    key = authorization or ""
    cached = state.auth_cache.get(key)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        principal = cached[0]
    else:
        principal = await run_in_threadpool(_authenticate, state, authorization)
        state.auth_cache[key] = (principal, now + AUTH_CACHE_SECONDS)
    if principal.token_id is not None and _touch_due(state, principal.token_id):
        await run_in_threadpool(_touch, state, principal.token_id)
    return principal


def _authenticate(state, authorization: str | None) -> Principal:
    """A short read of its own: a long request (a claim's long-poll) holds no transaction for it."""
    with state.sessionmaker() as db:
        return authenticate(db, authorization, open_loopback=state.open_loopback)


def _touch_due(state, token_id: int) -> bool:
    """Record a token's last use at most once a minute: a poller should not write on every read."""
    now = utcnow()
    last = state.token_touched.get(token_id)
    if last is not None and now - last <= TOUCH_EVERY:
        return False
    state.token_touched[token_id] = now
    return True


def _touch(state, token_id: int) -> None:
    """Its own short write: the request's transaction may be a read, or may not commit."""
    with transaction(state.write_sessionmaker) as db:
        touch(db, token_id)


def forget_principals(request: Request) -> None:
    request.app.state.auth_cache.clear()


def _grant(name: str):
    async def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        return authorize(principal, name)
    return dependency


Reader = Annotated[Principal, Depends(_grant("read"))]
Operator = Annotated[Principal, Depends(_grant("control"))]
WorkerAuth = Annotated[Principal, Depends(_grant("work"))]
Admin = Annotated[Principal, Depends(_grant("admin"))]
