"""Conditional, cached reads: what every poll endpoint answers with.

Dashboards poll the same histories again and again, and a history changes only when its run
does. Each run carries a `version` that every change to it or its histories bumps
(`server/models.py`), so a poll's ETag is the run's version: a caller that already holds it is
answered `304 Not Modified` after one indexed read of that number, and any other caller gets
the body encoded once per (run, version, query) and kept in a bounded cache, gzipped once for
callers that accept it.

The version is read before the rows: a body is never older than the ETag it is sent with (on
PostgreSQL a write may land between the two reads; the body is then newer, and the caller's next
poll fetches it again: a wasted transfer, never a missed change).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from pydantic import BaseModel
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from server import runs

# Bodies smaller than this go out as they are: gzip's header and a round of CPU are not worth it.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 6
JSON = "application/json"


def encode(value: Any) -> bytes:
    """JSON bytes: a pydantic model by pydantic's own (Rust) serializer, plain data by orjson,
    with datetimes written as pydantic writes them (`…Z`)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


class Body:
    """An encoded answer, and its gzipped form once a caller has asked for one."""

    __slots__ = ("raw", "gzipped")

    def __init__(self, raw: bytes):
        self.raw = raw
        self.gzipped: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.raw) + len(self.gzipped or b"")


class BodyCache:
    """Encoded bodies by key, least recently used dropped first, within `max_bytes` of body bytes
    (raw and gzipped). A body larger than a quarter of the budget is served but not kept, so one
    huge answer cannot flush everything else. Keys hold the run's version, so an entry is never
    stale, only unused: it ages out. Shared by the request threads, hence the lock."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, Body] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Body | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: Hashable, body: Body) -> Body:
        with self._lock:
            if body.size * 4 > self.max_bytes:
                return body
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.size
            self._items[key] = body
            self.bytes += body.size
            self._shrink()
            return body

    def gzip(self, key: Hashable, body: Body) -> bytes:
        """The body gzipped, made once (outside the lock) and counted against the budget."""
        if body.gzipped is None:
            packed = gzip.compress(body.raw, compresslevel=GZIP_LEVEL, mtime=0)
            with self._lock:
                if body.gzipped is None:
                    body.gzipped = packed
                    if self._items.get(key) is body:
                        self.bytes += len(packed)
                        self._shrink()
        return body.gzipped

    def _shrink(self) -> None:
        while self.bytes > self.max_bytes and self._items:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= dropped.size


def run_etag(run_id: int, version: int, created_at: dt.datetime) -> str:
    """Weak: the same version is sent gzipped to some callers and plain to others."""
    return f'W/"{run_id}.{int(created_at.timestamp() * 1e6):x}.{version}"'


def list_etag(query: Hashable, versions: list[tuple[int, int]]) -> str:
    digest = hashlib.blake2b(orjson.dumps([repr(query), versions]), digest_size=12).hexdigest()
    return f'W/"runs.{digest}"'


def query_key(request: Request) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The route and its query parameters in a canonical order: a cache key for the answer."""
    return _query_key(request.scope)


def _query_key(scope) -> tuple[str, tuple[tuple[str, str], ...]]:
    return scope["path"], tuple(sorted(QueryParams(scope.get("query_string", b"")).multi_items()))


def matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison, for `If-None-Match` (`*` or a list of tags)."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    return any(tag.strip() == "*" or tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))


def respond(request: Request, key: Hashable, etag: str, build: Callable[[], Any]) -> Response:
    """304 when the caller holds `etag`; else the body under `key`, encoded by `build` on a miss,
    gzipped when the caller accepts it and the body is large enough to gain."""
    headers = _headers(etag)
    if matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    cache: BodyCache = request.app.state.bodies
    body = cache.get(key)
    if body is None:
        body = cache.put(key, Body(encode(build())))
    if len(body.raw) >= GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(cache.gzip(key, body), media_type=JSON, headers={**headers, "Content-Encoding": "gzip"})
    return Response(body.raw, media_type=JSON, headers=headers)


def _headers(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}


def run_items(request: Request, page: list[tuple[int, int]],
              build: Callable[[list[int]], list[Any]]) -> list[bytes]:
    """Each run of a list page encoded once per version, kept with the bodies: when one run of a
    page of fifty changed (a heartbeat), the list is rebuilt from 49 kept encodings and one run
    loaded and encoded, not fifty. `build` makes the answers (with `id`) for the runs not kept; a
    run deleted meanwhile is left out."""
    cache: BodyCache = request.app.state.bodies
    versions = dict(page)
    found = {run_id: cache.get(("run-item", run_id, version)) for run_id, version in page}
    missing = [run_id for run_id, body in found.items() if body is None]
    if missing:
        for out in build(missing):
            found[out.id] = cache.put(("run-item", out.id, versions[out.id]), Body(encode(out)))
    return [found[run_id].raw for run_id, _ in page if found[run_id] is not None]


def page(items: list[bytes], next_cursor: str | None) -> bytes:
    """A page's JSON from items already encoded."""
    return b'{"items":[' + b",".join(items) + b'],"next_cursor":' + orjson.dumps(next_cursor) + b"}"


def run_read(request: Request, db: Session, run_id: int, build: Callable[[], Any]) -> Response:
    """A poll of one run: `304` if the caller holds the run's version, else the body cached for
    (run, version, query), `build` called only on a miss. 404 when the run does not exist."""
    version, created_at = runs.version_of(db, run_id)
    return respond(request, (run_id, version, query_key(request)), run_etag(run_id, version, created_at), build)


# ---- the fast path: a cached poll answered before FastAPI ---------------------------------------

RUN_POLL = re.compile(r"^/api/v1/runs/([1-9][0-9]{0,17})(/epochs|/steps|/stages|/lr|/events|/checkpoints)?$")
RUN_LIST = "/api/v1/runs"
LIST_PARAMS = frozenset({"status", "tag", "limit", "cursor"})


class CachedReads:
    """Plain ASGI in front of the routes: a poll (of one run, or the runs list) whose answer for
    the current versions is already cached is answered here (304, or the cached bytes), without
    FastAPI's routing, parameter validation, dependency resolution and second worker-thread hop,
    which cost more than the answer itself once it is cached. The caller is identified and
    authorised, and the versions read, in one short read in one worker thread. Everything else
    goes to the routes, which answer as they always do: a miss (the route validates the query,
    builds the body and caches it, so only queries the route accepted are ever found here), an
    unknown caller (401), a token without read rights (403), a run that does not exist (404), a
    database away (503), a token whose last use is due to be recorded."""

    def __init__(self, app, state):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        path = scope["path"]
        match = RUN_POLL.match(path)
        if match is None and path != RUN_LIST:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization")
        authorization = authorization.decode("latin-1") if authorization else None
        query = _query_key(scope)
        try:
            if match is not None:
                run_id = int(match.group(1))
                version, created_at = await run_in_threadpool(self._peek_run, authorization, run_id)
                key, etag = (run_id, version, query), run_etag(run_id, version, created_at)
                scope["path_params"] = {"run_id": match.group(1)}
            else:
                versions = await run_in_threadpool(self._peek_list, authorization, query[1])
                etag = list_etag(query, versions)
                key = ("runs", etag, query)
                scope["path_params"] = {}
        except Exception:  # noqa: BLE001 - any trouble: the route answers, in the API's shape
            return await self.app(scope, receive, send)
        cache: BodyCache = self.state.bodies
        body = cache.get(key)
        if body is None:
            return await self.app(scope, receive, send)
        scope["route"] = "cached"  # metrics label the route by its template (server/observability.py)
        inm = headers.get(b"if-none-match")
        if matches(inm.decode("latin-1") if inm else None, etag):
            response = Response(status_code=304, headers=_headers(etag))
        elif len(body.raw) >= GZIP_MIN_BYTES and b"gzip" in headers.get(b"accept-encoding", b""):
            response = Response(cache.gzip(key, body), media_type=JSON,
                                headers={**_headers(etag), "Content-Encoding": "gzip"})
        else:
            response = Response(body.raw, media_type=JSON, headers=_headers(etag))
        await response(scope, receive, send)

    def _peek_run(self, authorization: str | None, run_id: int) -> tuple[int, dt.datetime]:
        """One statement on a pooled connection, no ORM session: the token table's generation and
        the run's version together."""
        with self.state.engine.connect() as conn:
            row = conn.execution_options(single_statement=True).execute(_PEEK, {"run_id": run_id}).first()
        if row is None:
            raise LookupError("no such run: the route answers 404")
        newest, revoked, version, created_at = row
        self._authorised(authorization, (newest or 0, revoked))
        return version, created_at

    def _peek_list(self, authorization: str | None, params: tuple[tuple[str, str], ...]) -> list[tuple[int, int]]:
        """The generation, then the page's run ids and versions (`runs.list_versions`), each a
        statement of its own on one pooled connection."""
        given = dict(params)
        if len(given) != len(params) or not set(given) <= LIST_PARAMS:
            raise LookupError("a query the route should judge")
        with self.state.engine.connect() as conn:
            conn.execution_options(single_statement=True)
            newest, revoked = conn.execute(_GENERATION).one()
            self._authorised(authorization, (newest or 0, revoked))
            return runs.list_versions(conn, statuses=[s for s in given.get("status", "").split(",") if s],
                                      tag=given.get("tag"), limit=int(given.get("limit", 50)),
                                      cursor=given.get("cursor"))

    def _authorised(self, authorization: str | None, generation: tuple[int, int]) -> None:
        """The caller must be one the routes already identified under this generation
        (`deps.Identities`), with read rights; anyone else is left to the routes."""
        from server.auth import authorize, bearer_token, hash_token

        token = bearer_token(authorization)
        principal = self.state.identities.get(hash_token(token) if token is not None else "", generation)
        if principal is None:
            raise LookupError("a caller not yet identified under this generation")
        authorize(principal, "read")
        if principal.token_id is not None and _touch_pending(self.state, principal.token_id):
            raise LookupError("the route records the token's use")


def _statements():
    from server.models import ApiToken, Run

    # the same two numbers as `auth.generation`
    newest, revoked = (select(func.max(ApiToken.id)).scalar_subquery(),
                       select(func.count(ApiToken.revoked_at)).scalar_subquery())
    return (select(newest, revoked),
            select(newest, revoked, Run.version, Run.created_at).where(Run.id == bindparam("run_id")))


_GENERATION, _PEEK = _statements()


def _touch_pending(state, token_id: int) -> bool:
    from server.auth import TOUCH_EVERY
    from server.models import utcnow

    last = state.token_touched.get(token_id)
    return last is None or utcnow() - last > TOUCH_EVERY
