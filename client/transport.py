"""HTTP with the retries and caching every caller of the API wants, under the typed client.

Requests that did not land (connection refused or reset, timeouts, 429, 5xx) are retried with
exponential backoff for `retry_for` seconds (None: until they land, as a worker wants while the
server restarts). A POST is retried after it may have reached the server only when the caller says
it is idempotent (the worker protocol's messages are: the same epoch twice is stored once).
Every mutating request says `Content-Type: application/json`; a GET sends `If-None-Match` when it
holds the answer's ETag and reuses that answer on a 304."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Any

import httpx
from pydantic import BaseModel

from client.errors import Unreachable, from_answer

log = logging.getLogger("sala.client")
RETRY_STATUS = frozenset({429, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH"})
ETAG_ENTRIES = 256


class Transport:
    def __init__(self, base_url: str, token: str | None, *, timeout: float, retry_for: float | None,
                 max_backoff: float):
        headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.retry_for, self.max_backoff = retry_for, max_backoff
        self._etags: OrderedDict[str, tuple[str, Any]] = OrderedDict()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: BaseModel | dict[str, Any] | None = None, *,
                params: dict[str, Any] | None = None, idempotent: bool = False,
                timeout: float | None = None) -> Any:
        """The answer's JSON (None for an empty one); an error answer raises its `ApiError`."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        headers, content = self._prepare(method, body)
        key = f"{path}?{httpx.QueryParams(params)}"
        if method == "GET" and key in self._etags:
            headers["If-None-Match"] = self._etags[key][0]
        response = self._send(method, path, params, headers, content, idempotent or method in SAFE_METHODS,
                              timeout)
        if response.status_code == 304 and key in self._etags:
            return self._etags[key][1]
        if response.status_code >= 400:
            raise from_answer(response.status_code, _json(response))
        data = _json(response) if response.content else None
        if method == "GET" and response.headers.get("ETag"):
            self._remember(key, response.headers["ETag"], data)
        return data

    def stream(self, path: str):
        """A streamed GET (a checkpoint file); the caller iterates `iter_bytes()` inside `with`."""
        return self.http.stream("GET", path)

    def _prepare(self, method: str, body: BaseModel | dict[str, Any] | None) -> tuple[dict[str, str], bytes | None]:
        if method == "GET":
            return {}, None
        headers = {"Content-Type": "application/json"}
        if body is None:
            return headers, None
        # a message is sent as pydantic writes it (a non-finite number becomes null)
        content = body.model_dump_json(exclude_unset=True) if isinstance(body, BaseModel) else _dump(body)
        return headers, content.encode()

    def _send(self, method, path, params, headers, content, idempotent, timeout) -> httpx.Response:
        delay, started = 0.2, time.monotonic()
        while True:
            try:
                response = self.http.request(method, path, params=params, headers=headers, content=content,
                                             timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
            except httpx.TransportError as exc:
                if not (idempotent or isinstance(exc, httpx.ConnectError)):
                    raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
                problem = f"{type(exc).__name__}: {exc}"
            else:
                retry = response.status_code in RETRY_STATUS or (idempotent and response.status_code >= 500)
                if not retry:
                    return response
                problem = f"HTTP {response.status_code}"
            waited = time.monotonic() - started
            if self.retry_for is not None and waited + delay > self.retry_for:
                raise Unreachable(f"{method} {self.base_url}{path}: no answer after {waited:.1f}s ({problem})")
            log.warning("%s %s failed (%s); retrying in %.1fs", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def _remember(self, key: str, etag: str, data: Any) -> None:
        self._etags[key] = (etag, data)
        self._etags.move_to_end(key)
        while len(self._etags) > ETAG_ENTRIES:
            self._etags.popitem(last=False)


def _dump(body: dict[str, Any]) -> str:
    return json.dumps(body, allow_nan=False)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
