"""`SalaClient`: a method per endpoint of the API people use and of the worker protocol.

Answers are `core.api` / `core.protocol` types, lists that page are iterators that fetch the next
page as they go, and error answers are `client.errors` exceptions carrying the API's code. Stages
count from 1 here, as the API people use numbers them (the worker protocol's `stage_index` from 0).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from client.config import resolve
from client.errors import from_answer
from client.transport import Transport
from core.api import (
    Accepted,
    CheckpointOut,
    DeliveryOut,
    EpochOut,
    EventOut,
    LogOut,
    LogPage,
    LrOut,
    RunOut,
    RunPage,
    StagesOut,
    TokenCreated,
    TokenOut,
    WebhookOut,
    WorkerOut,
)
from core.protocol import (
    Alert,
    AlertAnswer,
    CheckpointAnswer,
    CheckpointMessage,
    Claim,
    ClaimRequest,
    EpochAnswer,
    EpochMessage,
    Finish,
    FinishAnswer,
    Heartbeat,
    HeartbeatAnswer,
    LogAnswer,
    LogBatch,
    Registered,
    WorkerHello,
)

M = TypeVar("M", bound=BaseModel)
API = "/api/v1"
FINAL = frozenset({"completed", "failed", "stopped"})
UNSET: Any = object()


class SalaClient:
    """One server. `url` and `token` default to `SALA_URL` / `SALA_TOKEN`, then the config file
    (`client.config`); `retry_for` is how long a request that did not land is retried (None: until
    it lands, as the worker wants while the server restarts)."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 retry_for: float | None = 10.0, max_backoff: float = 5.0):
        url, token = resolve(url, token)
        self.url = url.rstrip("/")
        self._http = Transport(self.url, token, timeout=timeout, retry_for=retry_for, max_backoff=max_backoff)

    def __enter__(self) -> SalaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- runs ------------------------------------------------------------------------------------

    def list_runs(self, *, status: str | list[str] | None = None, tag: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> RunPage:
        """One page, newest first; `status` one or several (`["queued", "paused"]`)."""
        statuses = ",".join(status) if isinstance(status, list | tuple) else status
        return RunPage.model_validate(self._get("/runs", status=statuses, tag=tag, limit=limit, cursor=cursor))

    def runs(self, *, status: str | list[str] | None = None, tag: str | None = None,
             page_size: int = 100) -> Iterator[RunOut]:
        """Every run that matches, newest first, a page at a time."""
        cursor = None
        while True:
            page = self.list_runs(status=status, tag=tag, limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def run(self, run_id: int) -> RunOut:
        return RunOut.model_validate(self._get(f"/runs/{run_id}"))

    def create_run(self, recipe: dict[str, Any] | str | None = None, *, name: str,
                   tags: list[str] | None = None, priority: int = 0, max_restarts: int | None = None) -> RunOut:
        """`recipe` as a dict (missing keys take their defaults) or YAML/JSON text."""
        body = {"name": name, "recipe": recipe if recipe is not None else {}, "tags": tags or [],
                "priority": priority, "max_restarts": max_restarts}
        return RunOut.model_validate(self._post("/runs", body))

    def update_run(self, run_id: int, *, name: str = UNSET, tags: list[str] = UNSET, note: str = UNSET) -> RunOut:
        """Change a run's name, tags or markdown note; what is not given stays."""
        body = {k: v for k, v in {"name": name, "tags": tags, "note": note}.items() if v is not UNSET}
        return RunOut.model_validate(self._http.request("PATCH", f"{API}/runs/{run_id}", body))

    def stop(self, run_id: int, reason: str | None = None) -> Accepted:
        return self._accepted(f"/runs/{run_id}/stop", _reason(reason))

    def pause(self, run_id: int, reason: str | None = None) -> Accepted:
        return self._accepted(f"/runs/{run_id}/pause", _reason(reason))

    def resume(self, run_id: int) -> Accepted:
        return self._accepted(f"/runs/{run_id}/resume")

    def fork(self, run_id: int, *, checkpoint_id: int | None = None, recipe_patch: dict[str, Any] | None = None,
             name: str | None = None) -> RunOut:
        body = {"checkpoint_id": checkpoint_id, "recipe_patch": recipe_patch, "name": name}
        return RunOut.model_validate(self._post(f"/runs/{run_id}/fork", _given(body)))

    def delete_run(self, run_id: int) -> None:
        self._http.request("DELETE", f"{API}/runs/{run_id}")

    # ---- curriculum and learning rate --------------------------------------------------------------

    def stages(self, run_id: int) -> StagesOut:
        return StagesOut.model_validate(self._get(f"/runs/{run_id}/stages"))

    def set_stage(self, run_id: int, to: int | str, reason: str | None = None) -> Accepted:
        """Jump to stage `to`: its number counted from 1, or its name."""
        return self._accepted(f"/runs/{run_id}/stage", _given({"to": to, "reason": reason}))

    def advance_stage(self, run_id: int, reason: str | None = None) -> Accepted:
        return self._accepted(f"/runs/{run_id}/stage/advance", _reason(reason))

    def hold_stage(self, run_id: int, hold: bool = True) -> Accepted:
        return self._accepted(f"/runs/{run_id}/stage/hold", {"hold": hold})

    def lr(self, run_id: int) -> LrOut:
        return LrOut.model_validate(self._get(f"/runs/{run_id}/lr"))

    def set_lr(self, run_id: int, *, lr: float | None = None, scale: float | None = None, clear: bool = False,
               reason: str | None = None) -> Accepted:
        """Exactly one of an absolute `lr`, a `scale` (which sets, not compounds) or `clear`."""
        body = _given({"lr": lr, "scale": scale, "clear": True if clear else None, "reason": reason})
        return self._accepted(f"/runs/{run_id}/lr", body)

    def request_checkpoint(self, run_id: int) -> Accepted:
        return self._accepted(f"/runs/{run_id}/checkpoint")

    # ---- observing ---------------------------------------------------------------------------------

    def events(self, run_id: int, *, after: int = 0, page_size: int = 500) -> Iterator[EventOut]:
        """The audit log after event id `after`, oldest first."""
        return self._pages(f"/runs/{run_id}/events", EventOut, "after", after, limit=page_size)

    def epochs(self, run_id: int, *, after: int = -1, page_size: int = 1000) -> Iterator[EpochOut]:
        """Epoch reports after epoch `after`."""
        return self._pages(f"/runs/{run_id}/epochs", EpochOut, "after", after, limit=page_size)

    def steps(self, run_id: int, *, after: int = -1, max_points: int = 1000) -> list[dict[str, Any]]:
        """Step scalars after step `after`, evenly thinned to at most `max_points`."""
        return self._get(f"/runs/{run_id}/steps", after=after, max_points=max_points)["items"]

    def checkpoints(self, run_id: int) -> list[CheckpointOut]:
        return [CheckpointOut.model_validate(c) for c in self._get(f"/runs/{run_id}/checkpoints")]

    def download_checkpoint(self, run_id: int, checkpoint_id: int, target: Path | str) -> str:
        """Stream a checkpoint's file to `target` and check it against the server's checksum;
        returns the sha256 of the bytes written."""
        digest, target = hashlib.sha256(), Path(target)
        with self._http.stream(f"{API}/runs/{run_id}/checkpoints/{checkpoint_id}/file") as response:
            if response.status_code >= 400:
                response.read()
                raise from_answer(response.status_code, response.json())
            expected = response.headers.get("X-Checksum-SHA256")
            with target.open("wb") as out:
                for block in response.iter_bytes():
                    digest.update(block)
                    out.write(block)
        if expected and digest.hexdigest() != expected:
            raise ValueError(f"checkpoint {checkpoint_id} of run {run_id}: sha256 {digest.hexdigest()} "
                             f"differs from the server's {expected}")
        return digest.hexdigest()

    def log_page(self, run_id: int, *, after: int = 0, attempt: int | None = None, limit: int = 1000) -> LogPage:
        return LogPage.model_validate(self._get(f"/runs/{run_id}/logs", after=after, attempt=attempt, limit=limit))

    def logs(self, run_id: int, *, after: int = 0, attempt: int | None = None,
             page_size: int = 1000) -> Iterator[LogOut]:
        """The lines the run's worker wrote after line id `after` (one attempt, or every one)."""
        return self._pages(f"/runs/{run_id}/logs", LogOut, "after", after, limit=page_size, attempt=attempt)

    def follow_logs(self, run_id: int, *, after: int = 0, attempt: int | None = None, poll_s: float = 1.0,
                    stop: Callable[[], bool] = lambda: False) -> Iterator[LogOut]:
        """Lines as they arrive, until the run has finished and every line is read (or `stop()`)."""
        while not stop():
            finished = self.run(run_id).status in FINAL
            for line in self.logs(run_id, after=after, attempt=attempt):
                after = line.id
                yield line
            if finished:
                return
            time.sleep(poll_s)

    def workers(self) -> list[WorkerOut]:
        return [WorkerOut.model_validate(w) for w in self._get("/workers")]

    # ---- tokens and webhooks (admin) ---------------------------------------------------------------

    def create_token(self, name: str, role: str) -> TokenCreated:
        return TokenCreated.model_validate(self._post("/tokens", {"name": name, "role": role}))

    def tokens(self) -> list[TokenOut]:
        return [TokenOut.model_validate(t) for t in self._get("/tokens")]

    def revoke_token(self, token_id: int) -> TokenOut:
        return TokenOut.model_validate(self._http.request("DELETE", f"{API}/tokens/{token_id}"))

    def create_webhook(self, url: str, events: list[str], secret: str, name: str | None = None) -> WebhookOut:
        body = _given({"url": url, "events": events, "secret": secret, "name": name})
        return WebhookOut.model_validate(self._post("/webhooks", body))

    def webhooks(self) -> list[WebhookOut]:
        return [WebhookOut.model_validate(w) for w in self._get("/webhooks")]

    def delete_webhook(self, webhook_id: int) -> None:
        self._http.request("DELETE", f"{API}/webhooks/{webhook_id}")

    def deliveries(self, webhook_id: int, *, after: int = 0, page_size: int = 500) -> Iterator[DeliveryOut]:
        """A webhook's deliveries after delivery id `after`, oldest first, with their status."""
        return self._pages(f"/webhooks/{webhook_id}/deliveries", DeliveryOut, "after", after, limit=page_size)

    # ---- the worker protocol (worker role): idempotent messages, retried until they land ------------

    def register(self, hello: WorkerHello) -> Registered:
        return Registered.model_validate(self._post("/workers", hello, idempotent=True))

    def claim(self, worker_id: int, wait_s: float = 0.0, *, nodes: int = 1,
              processes_per_node: int | None = None) -> Claim | None:
        """The next queued run this worker can launch (`nodes` machines, at most `processes_per_node`
        ranks on each; None: any), long-polling up to `wait_s`; None when nothing was queued by then."""
        ask = ClaimRequest(wait_s=wait_s, nodes=nodes, processes_per_node=processes_per_node)
        answer = self._http.request("POST", f"{API}/workers/{worker_id}/claim", ask,
                                    idempotent=True, timeout=wait_s + 30)
        return None if answer is None else Claim.model_validate(answer)

    def heartbeat(self, run_id: int, beat: Heartbeat) -> HeartbeatAnswer:
        return self._send(f"/runs/{run_id}/heartbeat", beat, HeartbeatAnswer)

    def report_epoch(self, run_id: int, message: EpochMessage) -> EpochAnswer:
        return self._send(f"/runs/{run_id}/epochs", message, EpochAnswer)

    def report_checkpoint(self, run_id: int, message: CheckpointMessage) -> CheckpointAnswer:
        return self._send(f"/runs/{run_id}/checkpoints", message, CheckpointAnswer)

    def alert(self, run_id: int, message: Alert) -> AlertAnswer:
        return self._send(f"/runs/{run_id}/alerts", message, AlertAnswer)

    def send_logs(self, run_id: int, batch: LogBatch) -> LogAnswer:
        return self._send(f"/runs/{run_id}/logs", batch, LogAnswer)

    def finish(self, run_id: int, message: Finish) -> FinishAnswer:
        return self._send(f"/runs/{run_id}/finish", message, FinishAnswer)

    # ---- plumbing ----------------------------------------------------------------------------------

    def _get(self, path: str, **params: Any) -> Any:
        return self._http.request("GET", API + path, params=params)

    def _post(self, path: str, body: BaseModel | dict[str, Any] | None = None, *, idempotent: bool = False) -> Any:
        return self._http.request("POST", API + path, body, idempotent=idempotent)

    def _accepted(self, path: str, body: dict[str, Any] | None = None) -> Accepted:
        return Accepted.model_validate(self._post(path, body))

    def _send(self, path: str, message: BaseModel, answer: type[M]) -> M:
        return answer.model_validate(self._post(path, message, idempotent=True))

    def _pages(self, path: str, model: type[M], cursor_name: str, cursor: Any, **params: Any) -> Iterator[M]:
        while True:
            page = self._get(path, **{cursor_name: cursor}, **params)
            yield from (model.model_validate(item) for item in page["items"])
            if not page.get("next_cursor"):
                return
            cursor = page["next_cursor"]


def _given(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _reason(reason: str | None) -> dict[str, Any] | None:
    return {"reason": reason} if reason else None


__all__ = ["FINAL", "SalaClient"]
