"""Security promises, proved against the routes the app actually serves (read from the app, so a
new endpoint is covered the day it is added):

- every API route needs a token once tokens exist; every mutating route refuses viewers (403);
  each role reaches exactly the routes its grants allow (operators: no worker protocol, no tokens);
- a worker token touches only runs it holds a lease on (another run's lease → 409 stale_lease);
- checkpoint download never leaves the artifact store (`..`, absolute paths, symlinks, other
  fsspec protocols and chained URLs, a sibling directory sharing the root's prefix);
- tokens are stored hashed (the raw token is in no byte of the database files) and never logged;
- request size limits hold for a declared Content-Length and for a chunked body without one;
- loopback detection for the no-token mode (the refusal itself is tests/server/test_cli.py's).
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from server import auth
from server.settings import is_loopback
from tests.live import live_server, run_sala

API = "/api/v1"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
STREAMING = {("GET", f"{API}/events/stream")}

# A valid body for each lease-carrying worker route, keyed by the route's last path segment. A new
# worker route without an entry here fails test_every_worker_route_has_a_lease_sample, on purpose.
LEASE_BODIES = {
    "heartbeat": {"epoch": 0, "step": 1, "scalars": [{"step": 1, "loss": 1.0}]},
    "epochs": {"epoch": 1, "stage_index": 0, "step": 2, "metrics": {"val_cer": 0.5}},
    "checkpoints": {"uri": "file:///nowhere/ck.pt", "epoch": 1, "step": 2, "stage_index": 0,
                    "sha256": "0" * 64, "size": 1},
    "finish": {"status": "failed", "error": "not yours"},
    "alerts": {"kind": "nonfinite", "detail": {"consecutive": 5}},
    "logs": {"lines": [{"ts": "2026-01-01T00:00:00Z", "level": "INFO", "source": "t", "message": "not yours"}]},
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _grant_in(calls) -> str | None:
    """The grant named by a deps._grant closure among these dependency callables (searched deeply)."""
    stack = list(calls)
    while stack:
        call = stack.pop()
        if getattr(call, "__qualname__", "") == "_grant.<locals>.dependency" and call.__closure__:
            return next(c.cell_contents for c in call.__closure__ if isinstance(c.cell_contents, str))
    return None


def _dependency_calls(dependant) -> list:
    calls, stack = [], list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        calls.append(dep.call)
        stack.extend(dep.dependencies)
    return calls


def _walk(routes, prefix: str = "", included: tuple = ()):
    """Every APIRoute with its full path, through included routers (FastAPI keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route, included
        elif hasattr(route, "original_router"):
            ctx = route.include_context
            yield from _walk(route.original_router.routes, prefix + ctx.prefix,
                             included + tuple(d.dependency for d in ctx.dependencies))
        elif hasattr(route, "routes") and hasattr(route, "path"):  # a mounted sub-application
            yield from _walk(route.routes, prefix + route.path, included)


def api_routes(app) -> list[tuple[str, str, str | None]]:
    """(method, path, grant) for every method of every API route the app serves; checked against
    the OpenAPI schema so that no documented operation escapes the walk."""
    out = {}
    for path, route, included in _walk(app.routes):
        if path.startswith(API):
            grant = _grant_in([*_dependency_calls(route.dependant), *included])
            out.update({(m, path): grant for m in route.methods - {"HEAD"}})
    documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops if p.startswith(API)}
    assert documented <= set(out), f"routes the walk missed: {documented - set(out)}"
    return sorted((m, p, g) for (m, p), g in out.items())


@pytest.fixture
def tokens(app) -> dict[str, str]:
    made = {}
    with app.state.write_sessionmaker() as db, db.begin():
        for role in auth.ROLES:
            _, made[role] = auth.create_token(db, f"{role}-sec", role)
    return made


@pytest.fixture
def world(client, tokens, settings):
    """Two runs held by two workers (leases A and B), a queued run nobody holds."""
    admin, worker = bearer(tokens["admin"]), bearer(tokens["worker"])
    recipe = {"training": {"max_epochs": 3, "steps_per_epoch": 2}}
    ids = [client.post(f"{API}/runs", json={"name": f"r{i}", "recipe": recipe}, headers=admin).json()["id"]
           for i in range(3)]
    held = {}
    for name in ("a", "b"):
        wid = client.post(f"{API}/workers", json={"name": name}, headers=worker).json()["worker_id"]
        claim = client.post(f"{API}/workers/{wid}/claim", json={"wait_s": 0}, headers=worker).json()
        held[name] = (claim["run_id"], claim["lease_token"], wid)
    queued = next(i for i in ids if i not in {held["a"][0], held["b"][0]})
    return {"held": held, "queued": queued, "run": ids[0]}


def _fill(path: str, world) -> str:
    run_a = world["held"]["a"][0]
    return (path.replace("{run_id}", str(run_a)).replace("{worker_id}", str(world["held"]["a"][2]))
            .replace("{checkpoint_id}", "1").replace("{token_id}", "1").replace("{webhook_id}", "1"))


# ---- roles ---------------------------------------------------------------------------------------

def test_every_api_route_requires_a_grant_and_mutations_need_more_than_read(app):
    routes = api_routes(app)
    assert len(routes) >= 30, routes
    missing = [(m, p) for m, p, g in routes if g is None]
    assert not missing, f"API routes without an auth dependency: {missing}"
    read_only_writes = [(m, p) for m, p, g in routes if m in MUTATING and g == "read"]
    assert not read_only_writes, f"mutating routes a viewer may call: {read_only_writes}"


def test_no_token_is_refused_everywhere_once_tokens_exist(client, tokens, world):
    for method, path, _ in api_routes(client.app):
        if (method, path) in STREAMING:
            continue
        answer = client.request(method, _fill(path, world), json={} if method in MUTATING else None)
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
        assert answer.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize("role", auth.ROLES)
def test_each_role_is_refused_exactly_the_routes_its_grants_exclude(client, tokens, world, role):
    """viewer: every mutation 403; operator: worker protocol and tokens 403; worker: run control
    and tokens 403. Refused before the body is even validated, so `{}` is enough."""
    refused = [(m, p) for m, p, g in api_routes(client.app) if g not in auth.GRANTS[role]]
    if role == "viewer":
        assert {(m, p) for m, p, _ in api_routes(client.app) if m in MUTATING} <= set(refused)
    if role == "operator":
        assert any("/claim" in p for _, p in refused) and any(p.startswith(f"{API}/tokens") for _, p in refused)
    for method, path in refused:
        answer = client.request(method, _fill(path, world), json={}, headers=bearer(tokens[role]))
        assert answer.status_code == 403, (role, method, path, answer.status_code, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"
    assert (role == "admin") == (not refused)


def test_a_revoked_token_is_refused_at_once(client, tokens):
    listed = client.get(f"{API}/tokens", headers=bearer(tokens["admin"])).json()
    operator = next(t for t in listed if t["role"] == "operator")
    assert client.delete(f"{API}/tokens/{operator['id']}", headers=bearer(tokens["admin"])).status_code == 200
    answer = client.post(f"{API}/runs", json={"name": "x"}, headers=bearer(tokens["operator"]))
    assert answer.status_code == 401


# ---- leases --------------------------------------------------------------------------------------

def _lease_routes(app) -> list[tuple[str, str]]:
    return [(m, p) for m, p, g in api_routes(app) if g == "work" and "{run_id}" in p and m in MUTATING]


def test_every_worker_route_has_a_lease_sample(app):
    routes = _lease_routes(app)
    assert len(routes) >= 5, routes
    unknown = [p for _, p in routes if p.rsplit("/", 1)[1] not in LEASE_BODIES]
    assert not unknown, f"add a valid body to LEASE_BODIES for {unknown}"


def test_a_lease_works_only_on_its_own_run(client, tokens, world):
    worker = bearer(tokens["worker"])
    (run_a, lease_a, _), (run_b, lease_b, _) = world["held"]["a"], world["held"]["b"]
    for method, path in _lease_routes(client.app):
        body = LEASE_BODIES[path.rsplit("/", 1)[1]]
        for run_id, lease in ((run_b, lease_a), (run_a, lease_b), (world["queued"], lease_a),
                              (world["queued"], "f" * 32)):
            answer = client.request(method, path.replace("{run_id}", str(run_id)),
                                    json={**body, "lease_token": lease}, headers=worker)
            assert answer.status_code == 409, (path, run_id, answer.status_code, answer.text)
            assert answer.json()["error"]["code"] == "stale_lease"
    # the right lease still works, and nothing above changed run B
    ok = client.post(f"{API}/runs/{run_a}/heartbeat", json={**LEASE_BODIES["heartbeat"], "lease_token": lease_a},
                     headers=worker)
    assert ok.status_code == 200, ok.text
    run_b_now = client.get(f"{API}/runs/{run_b}", headers=worker).json()
    assert run_b_now["status"] == "running" and run_b_now["epoch"] == 0 and run_b_now["step"] == 0
    assert client.get(f"{API}/runs/{run_b}/checkpoints", headers=worker).json() == []


def test_lease_tokens_are_never_shown_to_readers(client, tokens, world):
    viewer = bearer(tokens["viewer"])
    leases = [world["held"][k][1] for k in ("a", "b")]
    for method, path, _ in api_routes(client.app):
        if method != "GET" or (method, path) in STREAMING or "checkpoint_id" in path:
            continue
        for run_id in (world["held"]["a"][0], world["held"]["b"][0]):
            text = client.get(path.replace("{run_id}", str(run_id)), headers=viewer).text
            assert not any(lease in text for lease in leases), path


def test_a_worker_token_cannot_claim_as_another_tokens_worker(client, tokens, app):
    with app.state.write_sessionmaker() as db, db.begin():
        _, other = auth.create_token(db, "worker-2", "worker")
    victim = client.post(f"{API}/workers", json={"name": "victim"}, headers=bearer(tokens["worker"])).json()
    client.post(f"{API}/runs", json={"name": "r"}, headers=bearer(tokens["admin"]))
    answer = client.post(f"{API}/workers/{victim['worker_id']}/claim", json={"wait_s": 0}, headers=bearer(other))
    assert answer.status_code == 403, answer.status_code


# ---- checkpoint download stays inside the store -----------------------------------------------

def _escapes(root: Path, tmp_path: Path) -> list[str]:
    outside = tmp_path / "secret.txt"
    outside.write_text("do not serve")
    sibling = Path(f"{root}-evil")
    sibling.mkdir()
    (sibling / "ck.pt").write_text("do not serve")
    (root / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    (root / "filelink.pt").symlink_to(outside)
    return [
        f"file://{root}/../secret.txt",
        f"file://{root}/run-1/../../secret.txt",
        f"file://{outside}",
        str(outside),                                  # no protocol: an absolute local path
        "secret.txt",                                  # no protocol: relative to the server's cwd
        f"file://{root}/filelink.pt",                  # a symlink file inside the store
        f"file://{root}/dirlink/secret.txt",           # through a symlinked directory
        f"file://{sibling}/ck.pt",                     # shares the root's prefix, not its directory
        f"file://{root}/%2e%2e/secret.txt",
        "file:///etc/passwd",
        "memory://ck.pt",
        f"memory://{root}/ck.pt",
        "http://127.0.0.1:9/ck.pt",
        f"simplecache::file://{outside}",
        f"zip://secret.txt::file://{outside}",
    ]


def _record(app, run_id: int, uri: str) -> int:
    """A checkpoint row as a server that did not check reports could have stored it."""
    from server.models import Checkpoint

    with app.state.write_sessionmaker() as db, db.begin():
        row = Checkpoint(run_id=run_id, attempt=1, uri=uri, epoch=1, step=2, stage_index=0, size=1,
                         sha256=hashlib.sha256(b"x").hexdigest())
        db.add(row)
        db.flush()
        return row.id


def _report(client, tokens, world, uri: str):
    run_a, lease_a, _ = world["held"]["a"]
    return client.post(f"{API}/runs/{run_a}/checkpoints", headers=bearer(tokens["worker"]), json={
        "lease_token": lease_a, "uri": uri, "epoch": 1, "step": 2, "stage_index": 0,
        "sha256": hashlib.sha256(b"x").hexdigest(), "size": 1})


def test_a_checkpoint_is_accepted_only_inside_its_runs_directory(client, tokens, world, settings, tmp_path):
    """Checked when reported (403, as downloads are), so that deleting the run or retention can
    never be made to delete a file outside the store, or another run's."""
    root = Path(settings.artifacts_url.removeprefix("file://"))
    run_a, run_b = world["held"]["a"][0], world["held"]["b"][0]
    (root / f"run-{run_b}").mkdir()
    (root / f"run-{run_b}" / "ck.pt").write_text("run b's")
    others = [f"file://{root}/run-{run_b}/ck.pt", f"file://{root}/run-{run_a}/../run-{run_b}/ck.pt",
              f"file://{root}/ck.pt"]
    for uri in [*_escapes(root, tmp_path), *others]:
        answer = _report(client, tokens, world, uri)
        assert answer.status_code == 403, (uri, answer.status_code, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"
    assert client.get(f"{API}/runs/{run_a}/checkpoints", headers=bearer(tokens["viewer"])).json() == []


def test_deleting_a_run_deletes_files_only_in_its_own_directory(client, tokens, world, settings, app, tmp_path):
    """Rows stored before reports were checked are checked again before their files are deleted."""
    root = Path(settings.artifacts_url.removeprefix("file://"))
    doomed, other = world["queued"], world["held"]["b"][0]
    own = root / f"run-{doomed}" / "ck.pt"
    own.parent.mkdir(parents=True)
    own.write_text("goes with its run")
    (root / f"run-{other}").mkdir()
    (root / f"run-{other}" / "ck.pt").write_text("stays")
    (own.parent / "link.pt").symlink_to(root / f"run-{other}" / "ck.pt")
    for uri in [*_escapes(root, tmp_path), f"file://{root}/run-{other}/ck.pt", f"file://{own.parent}/link.pt",
                f"file://{own}"]:
        _record(app, doomed, uri)
    assert client.delete(f"{API}/runs/{doomed}", headers=bearer(tokens["admin"])).status_code == 204
    assert not own.exists()
    assert (tmp_path / "secret.txt").read_text() == "do not serve"
    assert (root / f"run-{other}" / "ck.pt").read_text() == "stays"
    assert Path(f"{root}-evil/ck.pt").exists() and (own.parent / "link.pt").is_symlink()


def test_checkpoint_download_cannot_leave_the_store(client, tokens, world, settings, app, tmp_path):
    import fsspec

    root = Path(settings.artifacts_url.removeprefix("file://"))
    fs = fsspec.filesystem("memory")
    with fs.open(f"{root}/ck.pt", "wb") as handle:  # a memory:// file that would be served if allowed
        handle.write(b"do not serve")
    with fs.open("/ck.pt", "wb") as handle:
        handle.write(b"do not serve")
    run_a = world["held"]["a"][0]
    try:
        for uri in _escapes(root, tmp_path):
            cid = _record(app, run_a, uri)
            answer = client.get(f"{API}/runs/{run_a}/checkpoints/{cid}/file", headers=bearer(tokens["viewer"]))
            assert answer.status_code in (403, 404), (uri, answer.status_code, answer.text[:200])
            assert b"do not serve" not in answer.content and b"root:" not in answer.content, uri
    finally:
        fs.rm("/", recursive=True)


def test_foreign_and_chained_uris_are_refused_without_being_opened(client, tokens, world, app, tmp_path):
    outside = tmp_path / "not-a-zip.txt"
    outside.write_text("do not open")
    run_a = world["held"]["a"][0]
    statuses = {}
    for uri in ("http://127.0.0.1:9/ck.pt", f"zip://ck.pt::file://{outside}"):
        statuses[uri] = (_report(client, tokens, world, uri).status_code,
                         client.get(f"{API}/runs/{run_a}/checkpoints/{_record(app, run_a, uri)}/file",
                                    headers=bearer(tokens["viewer"])).status_code)
    assert set(statuses.values()) == {(403, 403)}, statuses


def test_a_checkpoint_inside_the_store_is_still_served(client, tokens, world, settings):
    root = Path(settings.artifacts_url.removeprefix("file://"))
    run_a, lease_a, _ = world["held"]["a"]
    path = root / f"run-{run_a}" / "ok.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    cid = client.post(f"{API}/runs/{run_a}/checkpoints", headers=bearer(tokens["worker"]), json={
        "lease_token": lease_a, "uri": f"file://{path}", "epoch": 1, "step": 2, "stage_index": 0,
        "sha256": hashlib.sha256(b"weights").hexdigest(), "size": 7}).json()["checkpoint_id"]
    answer = client.get(f"{API}/runs/{run_a}/checkpoints/{cid}/file", headers=bearer(tokens["viewer"]))
    assert answer.status_code == 200 and answer.content == b"weights"


# ---- tokens: hashed at rest, never logged ---------------------------------------------------------

def test_raw_tokens_are_in_no_byte_of_the_database(tmp_path):
    made = [run_sala("tokens", "create", "--role", role, "--name", f"t-{role}", tmp_path=tmp_path)
            for role in ("admin", "worker")]
    raw = [m.stdout.strip() for m in made]
    assert all(r.startswith("sala_") and len(r) > 40 for r in raw), raw
    with live_server(tmp_path) as server:  # use them, so last_used_at is written too
        for token in raw:
            assert httpx.get(f"{server.api}/runs", headers=bearer(token), timeout=10).status_code == 200
        created = httpx.post(f"{server.api}/tokens", json={"name": "api", "role": "viewer"},
                             headers=bearer(raw[0]), timeout=10).json()["token"]
        assert httpx.get(f"{server.api}/runs", headers=bearer(created), timeout=10).status_code == 200
    files = [p for p in tmp_path.iterdir() if p.name.startswith("sala.db")]  # the db, its WAL and shm
    blob = b"".join(p.read_bytes() for p in files)
    assert blob and len(files) >= 1
    for token in (*raw, created):
        assert token.encode() not in blob
        assert token[len(auth.TOKEN_PREFIX):].encode() not in blob
        assert hashlib.sha256(token.encode()).hexdigest().encode() in blob


def test_tokens_and_authorization_headers_are_never_logged(tmp_path):
    admin = run_sala("tokens", "create", "--role", "admin", "--name", "log", tmp_path=tmp_path).stdout.strip()
    wrong = "sala_" + "Q" * 43
    env = {"SALA_LOG_LEVEL": "debug", "SALA_LEASE_SECONDS": "1", "SALA_REAPER_SECONDS": "0.2"}
    with live_server(tmp_path, env) as server:
        api, h = server.api, bearer(admin)
        created = httpx.post(f"{api}/tokens", json={"name": "v", "role": "worker"}, headers=h, timeout=10).json()
        worker = bearer(created["token"])
        httpx.post(f"{api}/runs", json={"name": "r"}, headers=h, timeout=10)
        wid = httpx.post(f"{api}/workers", json={"name": "w"}, headers=worker, timeout=10).json()["worker_id"]
        claim = httpx.post(f"{api}/workers/{wid}/claim", json={"wait_s": 0}, headers=worker, timeout=10).json()
        lease = claim["lease_token"]
        httpx.post(f"{api}/runs/{claim['run_id']}/heartbeat", headers=worker, timeout=10,
                   json={"lease_token": lease, "epoch": 0, "step": 1})
        httpx.post(f"{api}/runs/{claim['run_id']}/heartbeat", headers=worker, timeout=10,
                   json={"lease_token": "f" * 32, "epoch": 0, "step": 1})     # stale: logged as refused
        httpx.get(f"{api}/runs", headers=bearer(wrong), timeout=10)            # unknown token: 401
        httpx.get(f"{api}/tokens", headers=worker, timeout=10)                 # wrong role: 403
        httpx.get(f"{api}/runs", headers={"Authorization": f"Basic {admin}"}, timeout=10)
        httpx.post(f"{api}/runs", content=b"{not json", headers={**h, "Content-Type": "application/json"},
                   timeout=10)
        from tests.e2e.conftest import wait_for  # the reaper expires the lease and logs it
        wait_for(lambda: any(e["kind"] == "lease_expired" for e in httpx.get(
            f"{api}/runs/{claim['run_id']}/events", headers=h, timeout=10).json()["items"]), 60, "the lease to expire")
        log = server.output()
    assert "GET /api/v1/runs" in log, log[-2000:]  # the access log is on, so silence proves something
    for secret in (admin, created["token"], wrong, lease, admin[len(auth.TOKEN_PREFIX):]):
        assert secret not in log, f"secret {secret[:9]}… appears in the server log"
    assert "Bearer" not in log and "authorization" not in log.lower()


# ---- request size limits ------------------------------------------------------------------------

def _raw(url: str, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while b"\r\n\r\n" not in data or not _complete(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


CHUNK = b"y" * 1500


def _chunked(head: str, *parts: bytes) -> bytes:
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() \
        + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def _too_big_chunked(head: str) -> bytes:
    return _chunked(head, b'{"name": "' + CHUNK, CHUNK, CHUNK, b'"}')


LIMIT = 4096
HEAD = "POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def test_request_size_limits_hold_declared_and_chunked(tmp_path):
    with live_server(tmp_path, {"SALA_MAX_BODY_BYTES": str(LIMIT)}) as server:
        # a declared length over the limit is refused before a byte of the body is read
        status, data = _raw(server.url, (HEAD + "Content-Length: 1000000000\r\n\r\n").encode() + b"{")
        assert status == 413 and b"payload_too_large" in data, data[:300]
        # a chunked body with no length, growing past the limit, is refused (413: see the xfail below)
        status, data = _raw(server.url, _too_big_chunked(HEAD))
        assert status in (400, 413), data[:300]
        # a chunked body under the limit is accepted, so the refusal above is about size
        status, data = _raw(server.url, _chunked(HEAD, b'{"name": "chunked"}'))
        assert status == 201, data[:300]
        # every mutating route is behind the same limit (the middleware wraps the whole app)
        big = {"name": "x", "recipe": {"name": "y" * (LIMIT + 10)}}
        for target in ("/api/v1/runs", "/api/v1/tokens", "/api/v1/workers", "/api/v1/runs/1/heartbeat"):
            answer = httpx.post(server.url + target, json=big, timeout=10)
            assert answer.status_code == 413, (target, answer.status_code)
        names = [r["name"] for r in httpx.get(f"{server.api}/runs", timeout=10).json()["items"]]
    assert names == ["chunked"]  # nothing oversized was stored


def test_a_chunked_body_over_the_limit_is_a_413(tmp_path):
    with live_server(tmp_path, {"SALA_MAX_BODY_BYTES": str(LIMIT)}) as server:
        status, data = _raw(server.url, _too_big_chunked(HEAD))
    assert status == 413 and b"payload_too_large" in data, data[:300]


# ---- availability ---------------------------------------------------------------------------------

def test_a_hundred_concurrent_readers_are_served(tmp_path):
    import asyncio
    import time
    from concurrent.futures import ThreadPoolExecutor

    async def burst(api: str) -> tuple[float, set]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=api, timeout=30, limits=limits) as client:
            began = time.monotonic()
            answers = await asyncio.gather(*(client.get("/runs", params={"limit": 50}) for _ in range(100)),
                                           return_exceptions=True)
            return time.monotonic() - began, {getattr(a, "status_code", type(a).__name__) for a in answers}

    with live_server(tmp_path, {"SALA_LOG_LEVEL": "warning"}) as server:
        for i in range(10):
            httpx.post(f"{server.api}/runs", json={"name": f"r{i}"}, timeout=10)
        # in a thread of its own: another suite's browser may hold a running loop in this one
        with ThreadPoolExecutor(1) as pool:
            took, statuses = pool.submit(asyncio.run, burst(server.api)).result()
        server.process.kill()  # a deadlocked server would hold the teardown's graceful stop
    # a pool smaller than the thread pool deadlocked here: 500s after the pool timeout (10 s);
    # the bound on time is loose because CI machines may be busy
    assert statuses == {200} and took < 25, (took, statuses)


# ---- binding --------------------------------------------------------------------------------------

@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("10.0.0.1", False),
    ("example.com", False), ("localhost.example.com", False), ("", False), ("::ffff:8.8.8.8", False),
])
def test_only_loopback_addresses_count_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_sala_up_also_refuses_a_public_address_without_tokens(tmp_path):
    """`sala server` is tests/server/test_cli.py's; `sala up` and an IPv6 wildcard here."""
    for args in (("up", "--host", "0.0.0.0", "--port", "1", "--workers", "0"), ("server", "--host", "::", "--port", "1")):
        result = run_sala(*args, tmp_path=tmp_path)
        assert result.returncode != 0 and "sala tokens create" in result.stderr, (args, result.stderr)
