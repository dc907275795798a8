"""Dependency aliases for routers: one transaction per request, and the caller's identity."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from server.auth import TOUCH_EVERY, Principal, authenticate, authorize, bearer_token, generation, hash_token, touch
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
    if not reads_only:
        request.app.state.storage_full_at = None  # a write was stored: there is space again


DB = Annotated[Session, Depends(get_db, scope="function")]


class Identities:
    """Who each token is, kept while the token table's generation (`auth.generation`) is unchanged,
    so a poller is identified with one tiny read instead of a token lookup, and a token created
    or revoked anywhere (the API, `sala tokens`, another server) counts from the next request.
    Keyed by the token's hash, not the header's spelling; at most `size` entries, the least
    recently used dropped first. Shared by the request threads, hence the lock."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._items: OrderedDict[str, tuple[Principal, tuple[int, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, generation: tuple[int, int]) -> Principal | None:
        with self._lock:
            found = self._items.get(key)
            if found is None or found[1] != generation:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: str, generation: tuple[int, int], principal: Principal) -> None:
        with self._lock:
            self._items[key] = (principal, generation)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def identify(state, authorization: str | None) -> Principal:
    """The caller, as of now. Runs in a worker thread, in a short read of its own: a long request
    (a claim's long-poll, the event stream) holds no transaction for it."""
    with state.sessionmaker() as db:
        return identify_in(db, state, authorization)


def identify_in(db: Session, state, authorization: str | None) -> Principal:
    """`identify` in a session the caller holds (server/reads.py reads a run's version in the same one)."""
    token = bearer_token(authorization)
    key = hash_token(token) if token is not None else ""
    now = generation(db)
    principal = state.identities.get(key, now)
    if principal is None:
        principal = authenticate(db, token, open_loopback=state.open_loopback)
        state.identities.put(key, now, principal)
    return principal



async def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    state = request.app.state
    principal = await run_in_threadpool(identify, state, authorization)
    if principal.token_id is not None and _touch_due(state, principal.token_id):
        await run_in_threadpool(_touch, state, principal.token_id)
    return principal


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


def _grant(name: str):
    async def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        return authorize(principal, name)
    return dependency


Reader = Annotated[Principal, Depends(_grant("read"))]
Operator = Annotated[Principal, Depends(_grant("control"))]
WorkerAuth = Annotated[Principal, Depends(_grant("work"))]
Admin = Annotated[Principal, Depends(_grant("admin"))]
