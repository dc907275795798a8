"""Dependency aliases for routers: one transaction per request, and the caller's identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from server.auth import TOUCH_EVERY, Principal, authenticate, authorize, touch
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


def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """Identify the caller in a short read of its own, so that a long request (a claim's
    long-poll) never holds a transaction open just for authentication."""
    state = request.app.state
    with state.sessionmaker() as db:
        principal = authenticate(db, authorization, open_loopback=state.open_loopback)
    if principal.token_id is not None:
        now = utcnow()
        last = state.token_touched.get(principal.token_id)
        if last is None or now - last > TOUCH_EVERY:
            state.token_touched[principal.token_id] = now
            with state.write_sessionmaker() as db, db.begin():
                touch(db, principal.token_id)
    return principal


def _grant(name: str):
    def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        return authorize(principal, name)
    return dependency


Reader = Annotated[Principal, Depends(_grant("read"))]
Operator = Annotated[Principal, Depends(_grant("control"))]
WorkerAuth = Annotated[Principal, Depends(_grant("work"))]
Admin = Annotated[Principal, Depends(_grant("admin"))]
