"""The worker-protocol client. Reports are retried with backoff while the server is away and
sent in order once it returns; a 409 about the lease means another worker owns the run now."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from core.protocol import RETRY_MAX_S

log = logging.getLogger("sala.client")
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
A = TypeVar("A", bound=BaseModel)


class LeaseLost(Exception):
    """The server fenced this worker off the run; stop touching it at once."""


class ServerRefused(Exception):
    """A 4xx the worker cannot fix by retrying (bad token, invalid report)."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"server answered {status}: {body}")
        self.status = status
        self.body = body


class SalaClient:
    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0,
                 max_backoff: float = RETRY_MAX_S, give_up_after: float | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/api/v1", headers=headers, timeout=timeout)
        self.max_backoff = max_backoff
        self.give_up_after = give_up_after

    def close(self) -> None:
        self._http.close()

    def send(self, path: str, message: BaseModel, answer: type[A]) -> A:
        """POST a protocol message (`core.protocol`); the answer parsed into its type."""
        return answer.model_validate(self.call("POST", path, message))

    def call(self, method: str, path: str, body: dict[str, Any] | BaseModel | None = None,
             *, timeout: float | None = None) -> Any:
        """One request, retried on connection errors and 5xx until it lands (or give_up_after).
        A message is sent as pydantic writes it (a non-finite number becomes null)."""
        delay, started = 0.2, time.monotonic()
        content = body.model_dump_json().encode() if isinstance(body, BaseModel) else None
        json_body = None if isinstance(body, BaseModel) else body
        headers = {"Content-Type": "application/json"} if content is not None else None
        while True:
            try:
                response = self._http.request(method, path, json=json_body, content=content, headers=headers,
                                              timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response.json() if response.content else None
                if response.status_code == 409 and _code(response) == "stale_lease":
                    raise LeaseLost(_message(response))
                if response.status_code not in RETRYABLE_STATUS and response.status_code < 500:
                    raise ServerRefused(response.status_code, _body(response))
                problem = f"HTTP {response.status_code}"
            if self.give_up_after is not None and time.monotonic() - started > self.give_up_after:
                raise ConnectionError(f"{method} {path}: server unreachable for {self.give_up_after:.0f}s "
                                      f"({problem})")
            log.warning("%s %s failed (%s); retrying in %.1fs", method, path, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)


    def download(self, path: str, target: Path) -> str:
        """Stream a file to `target`; returns the sha256 of the bytes written."""
        digest = hashlib.sha256()
        with self._http.stream("GET", path) as response:
            if response.status_code >= 400:
                response.read()
                raise ServerRefused(response.status_code, _body(response))
            with target.open("wb") as out:
                for block in response.iter_bytes():
                    digest.update(block)
                    out.write(block)
        return digest.hexdigest()


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _code(response: httpx.Response) -> str | None:
    body = _body(response)
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def _message(response: httpx.Response) -> str:
    body = _body(response)
    return body.get("error", {}).get("message", "") if isinstance(body, dict) else str(body)
