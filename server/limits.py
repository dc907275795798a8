"""Request body limit as plain ASGI middleware: it must see the bytes before FastAPI parses them,
and it counts a chunked body too, which a Content-Length check alone would miss."""

from __future__ import annotations

from server.errors import PayloadTooLarge, send_error


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        seen = 0
        too_large = False

        async def counted_receive():
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        refused = False

        async def tracked_send(message):
            nonlocal refused
            if too_large:  # whatever the app answers to a body cut short, the client hears 413
                if not refused:
                    refused = True
                    await self._refuse(send)
                return
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            pass
        if too_large and not refused:
            await self._refuse(send)

    async def _refuse(self, send):
        """Sent here, not raised: the body is refused before FastAPI's handlers ever see the request."""
        await send_error(send, PayloadTooLarge(f"request body is larger than {self.max_bytes} bytes"))


class _TooLarge(Exception):
    pass


class ConcurrencyLimit:
    """Admission control: at most `limit` requests in flight; the rest wait on the event loop,
    holding nothing. Each request holds at most one pooled connection at a time, so with the limit
    below the pool's size no request ever waits for a connection that a queued request holds
    (without it, 100 pollers exhausted the pool while finished requests waited for a thread).

    Workers' writes have a lane of their own (a quarter of the slots), so a crowd of dashboards
    cannot delay the heartbeats and reports that keep training runs alive. Long-polls and streams
    are exempt: they hold no connection while they wait."""

    EXEMPT_SUFFIXES = ("/claim", "/events/stream")
    WORKER_SUFFIXES = ("/heartbeat", "/epochs", "/checkpoints", "/alerts", "/finish")

    def __init__(self, app, limit: int):
        import anyio

        self.app = app
        worker_slots = max(1, limit // 4)
        self.readers = anyio.Semaphore(limit - worker_slots)
        self.workers = anyio.Semaphore(worker_slots)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].endswith(self.EXEMPT_SUFFIXES):
            return await self.app(scope, receive, send)
        worker_write = scope["method"] == "POST" and scope["path"].endswith(self.WORKER_SUFFIXES)
        async with self.workers if worker_write else self.readers:
            await self.app(scope, receive, send)
