"""Browsers are clients too, and not always their user's: any web page may send a "simple"
cross-origin POST (a text/plain or form body, or none) without asking first, and a DNS-rebound
name makes a page same-origin with a server on loopback. With auth off (loopback, no tokens)
either would let any site steer runs. Three checks, as plain ASGI before any route runs:

- Host: a server bound to loopback answers only to loopback names (`localhost`, `127.x.x.x`,
  `[::1]`), its own `SALA_HOST` and `SALA_ALLOWED_HOSTS`: a rebound name is refused (403).
- Origin: a request that changes something, sent by a page of another origin, is refused (403)
  unless `SALA_CORS_ORIGINS` lists that origin (whose preflights Starlette's CORS middleware answers).
- Content-Type: a request that changes something and has a body (or names a type) must be JSON
  (415), a type no page can send across origins without a preflight.

Clients that are not browsers send no Origin and are unaffected by the second check.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers

from server.errors import Forbidden, UnsupportedMediaType, send_error
from server.settings import Settings, is_loopback

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BrowserGuard:
    def __init__(self, app, settings: Settings):
        self.app = app
        self.check_host = settings.binds_loopback
        self.hosts = settings.extra_hosts | {settings.host.lower()}
        self.origins = settings.origins

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self._host(headers.get("host")) or (
            scope["method"] in MUTATING and (self._origin(headers) or _media_type(headers)))
        if refusal:
            return await send_error(send, refusal)
        await self.app(scope, receive, send)

    def _host(self, host: str | None) -> Forbidden | None:
        if not self.check_host or host is None:
            return None
        name = _hostname(host)
        if is_loopback(name) or name in self.hosts:
            return None
        return Forbidden(f"this server answers to loopback names only, not Host {host!r}: a web page "
                         "may have renamed it; add the name to SALA_ALLOWED_HOSTS if it is yours")

    def _origin(self, headers: Headers) -> Forbidden | None:
        origin = headers.get("origin")
        if origin is None:
            return None
        same_origin = urlsplit(origin).netloc.lower() == headers.get("host", "").lower()
        if same_origin or origin.rstrip("/").lower() in self.origins:
            return None
        return Forbidden(f"a page of {origin} may not change anything here: only this server's own pages "
                         "and the origins in SALA_CORS_ORIGINS may")


def _media_type(headers: Headers) -> UnsupportedMediaType | None:
    declared = headers.get("content-type")
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if declared is None and not has_body:
        return None
    media = (declared or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return None
    return UnsupportedMediaType(f"send the body as JSON (Content-Type: application/json), not {declared or 'untyped'}")


def _hostname(host: str) -> str:
    """`Host` without its port: `[::1]:8000` → `::1`, `Localhost:8000` → `localhost`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
