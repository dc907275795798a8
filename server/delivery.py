"""Sending webhook deliveries: a task of the server's event loop, never a request's or a worker's.

Each round takes the due head of every webhook's queue (`webhooks.claim_due`, a short transaction
in a worker thread), posts them concurrently with an async client (a slow receiver holds no
thread), and records what came of each. Signed like Stripe's and GitHub's: the receiver checks
`X-Sala-Signature: sha256=HMAC-SHA256(secret, "<X-Sala-Timestamp>.<body>")`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import httpx
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from server import webhooks
from server.db import transaction
from server.models import utcnow

log = logging.getLogger("sala.webhooks")
IDLE_S = 0.5
TIMEOUT_S = 10.0
HOLD_S = 60.0  # a claimed delivery is not taken again for this long (a process that died mid-send)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def request_of(delivery_id: int, kind: str, payload: dict, secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"delivery_id": delivery_id, **payload}, ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "sala-webhooks/1",
               "X-Sala-Event": kind, "X-Sala-Delivery": str(delivery_id), "X-Sala-Timestamp": timestamp,
               "X-Sala-Signature": sign(secret, timestamp, body)}
    return body, headers


async def deliver_forever(app: FastAPI) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as http:
        while True:
            try:
                sent = await deliver_once(app, http)
            except Exception:  # the database away: try again next round
                log.warning("webhook round failed", exc_info=True)
                sent = 0
            if not sent:
                await asyncio.sleep(IDLE_S)


async def deliver_once(app: FastAPI, http: httpx.AsyncClient) -> int:
    due = await run_in_threadpool(_claim, app)
    results = await asyncio.gather(*(_post(http, *item) for item in due))
    if results:
        await run_in_threadpool(_record, app, results)
    return len(results)


def _claim(app: FastAPI) -> list[tuple[int, str, str, dict, str]]:
    with transaction(app.state.write_sessionmaker) as db:  # a background job: no request to share one with
        return [(row.id, hook.url, row.kind, dict(row.payload), hook.secret)
                for row, hook in webhooks.claim_due(db, utcnow(), HOLD_S)]


async def _post(http: httpx.AsyncClient, delivery_id: int, url: str, kind: str, payload: dict,
                secret: str) -> tuple[int, int | None, str | None]:
    body, headers = request_of(delivery_id, kind, payload, secret)
    try:
        response = await http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return delivery_id, None, f"{type(exc).__name__}: {exc}"[:500]
    ok = 200 <= response.status_code < 300
    return delivery_id, response.status_code, None if ok else response.text[:500] or f"HTTP {response.status_code}"


def _record(app: FastAPI, results: list[tuple[int, int | None, str | None]]) -> None:
    retry_s = app.state.settings.webhook_retry_seconds
    with transaction(app.state.write_sessionmaker) as db:
        for delivery_id, status, error in results:
            webhooks.record_attempt(db, delivery_id, status, error, retry_s)
