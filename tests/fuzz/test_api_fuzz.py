"""Schemathesis against the app's own `/openapi.json`, with an admin token, on SQLite and PostgreSQL.

Every operation the schema lists is fuzzed with schema-valid (positive) and schema-breaking
(negative) requests. Half of the generated ids are swapped for ids that exist (runs in every
state, a registered worker, a held lease, checkpoints, tokens), so requests reach the code behind
the 404s. The CI budget is ~300 requests; `bench/api_fuzz.py` runs the same harness with ≥ 2,000.

Two promises are checked separately: no response is a 5xx and every 2xx response matches the
documented schema; and every response, 4xx included, matches the schema (the routers document
their error answers with `ErrorBody`).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server import auth, migrate  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.conftest import create_pg_database, drop_pg_database  # noqa: E402

API = "/api/v1"
# endpoints that never answer within a request's lifetime under a test client; and webhook creation,
# whose generated URLs the server would then post events to (tests/server/test_webhooks.py covers it)
NOT_FUZZED = {("GET", f"{API}/events/stream"), ("POST", f"{API}/webhooks")}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
@dataclass
class Finding:
    operation: str
    status: int
    check: str
    message: str


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    per_operation: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def server_errors(self) -> list[Finding]:
        return [f for f in self.findings if f.status >= 500 or f.check == "not_a_server_error"]

    def nonconforming(self, *, errors_too: bool, content_types: bool = True) -> list[Finding]:
        return [f for f in self.findings if f.check != "not_a_server_error"
                and (errors_too or 200 <= f.status < 300)
                and (content_types or f.check != "content_type_conformance")]

    def summary(self) -> str:
        by_check = Counter((f.check, f.status) for f in self.findings)
        lines = [f"{self.requests} requests over {len(self.per_operation)} operations in {self.seconds:.1f}s",
                 "statuses: " + ", ".join(f"{s}×{n}" for s, n in sorted(self.statuses.items())),
                 f"5xx: {sum(n for s, n in self.statuses.items() if s >= 500)}"]
        lines += [f"  {check} on {status}: {n}" for (check, status), n in sorted(by_check.items())]
        lines += [f"  no case generated: {u}" for u in self.unsatisfiable]
        return "\n".join(lines)


@dataclass
class World:
    """Ids that exist, so that fuzzed requests reach more than the 404 path."""

    admin_token: str
    admin_token_id: int
    runs: list[int]
    workers: list[int]
    checkpoints: list[int]
    tokens: list[int]
    lease: str


def seed_world(client, artifacts: Path) -> World:
    """Runs in several states, a worker holding a lease, a checkpoint file, spare tokens."""
    with client.app.state.write_sessionmaker() as db, db.begin():
        row, admin = auth.create_token(db, "fuzz-admin", "admin")
        admin_id = row.id
    client.headers["Authorization"] = f"Bearer {admin}"
    recipe = {"training": {"max_epochs": 4, "steps_per_epoch": 2},
              "curriculum": {"stages": [
                  {"name": "a", "content": "characters", "success_threshold": 0.5, "min_epochs": 1, "max_epochs": 2},
                  {"name": "b", "content": "words", "success_threshold": 0.5, "min_epochs": 1, "max_epochs": 2}]}}
    runs = [client.post(f"{API}/runs", json={"name": f"fuzz{i}", "recipe": recipe}).json()["id"] for i in range(4)]
    worker = client.post(f"{API}/workers", json={"name": "fuzz-worker"}).json()["worker_id"]
    claimed = client.post(f"{API}/workers/{worker}/claim", json={"wait_s": 0}).json()
    held, lease = claimed["run_id"], claimed["lease_token"]
    path = artifacts / f"run-{held}" / "ck.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"fuzz checkpoint")
    checkpoint = client.post(f"{API}/runs/{held}/checkpoints", json={
        "lease_token": lease, "uri": f"file://{path}", "epoch": 1, "step": 2, "stage_index": 0,
        "sha256": hashlib.sha256(b"fuzz checkpoint").hexdigest(), "size": path.stat().st_size}).json()
    client.post(f"{API}/runs/{runs[-1]}/pause")
    client.post(f"{API}/runs/{runs[-2]}/stop")
    spare = [client.post(f"{API}/tokens", json={"name": f"spare{i}", "role": "viewer"}).json()["id"]
             for i in range(2)]
    del client.headers["Authorization"]
    return World(admin, admin_id, runs, [worker], [checkpoint["checkpoint_id"]], spare, lease)


KNOWN_IDS = {"run_id": "runs", "worker_id": "workers", "checkpoint_id": "checkpoints", "token_id": "tokens"}


def fuzz(app, world: World, *, examples: int, seed: int = 0,
         modes: tuple[str, ...] = ("positive", "negative")) -> FuzzReport:
    """Up to `examples` generated cases per operation and mode; every response checked, none raised."""
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    report = FuzzReport()
    started = time.monotonic()
    operations = [r.ok() for r in schema.get_all_operations()]
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if (operation.method.upper(), operation.path) in NOT_FUZZED:
            continue
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=GenerationMode(mode))
            _run_operation(report, world, label, strategy, examples, seed)
    report.seconds = time.monotonic() - started
    return report


def _run_operation(report: FuzzReport, world: World, label: str, strategy, examples: int, seed: int) -> None:
    rng = random.Random(f"{seed}:{label}")

    @hypothesis_seed(int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:8], "big"))
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy, use_known=st.booleans())
    def one(case, use_known):
        _aim(case, world, rng, use_known)
        if _revokes_own_token(case, world):
            return
        try:
            response = case.call(headers={"Authorization": f"Bearer {world.admin_token}"})
        except Exception as exc:  # the ASGI client re-raises what the app raised after its 500
            report.requests += 1
            report.statuses[500] += 1
            report.per_operation[label] += 1
            report.findings.append(Finding(label, 500, "not_a_server_error",
                                           f"{type(exc).__name__}: {exc} body={str(case.body)[:200]}"))
            return
        report.requests += 1
        report.statuses[response.status_code] += 1
        report.per_operation[label] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                report.findings.append(Finding(label, response.status_code,
                                               _check_name(failure), str(failure)[:400]))
        if response.status_code >= 500 and not any(f.operation == label and f.status >= 500
                                                   for f in report.findings[-3:]):
            report.findings.append(Finding(label, response.status_code, "not_a_server_error",
                                           response.text[:400]))

    try:
        one()
    except Unsatisfiable as why:  # no negative case exists (no inputs)
        report.unsatisfiable.append(f"{label}: {type(why).__name__}")


def _aim(case, world: World, rng: random.Random, use_known: bool) -> None:
    """Point ids at existing rows half the time; never long-poll; always send our token."""
    if use_known and case.path_parameters:
        for name in list(case.path_parameters):
            pool = getattr(world, KNOWN_IDS.get(name, ""), None)
            if pool:
                case.path_parameters[name] = rng.choice(pool)
    if isinstance(case.body, dict):
        if "wait_s" in case.body and isinstance(case.body["wait_s"], (int, float)):
            case.body["wait_s"] = 0  # a claim may long-poll 60 s; the budget is requests, not seconds
        if use_known and "lease_token" in case.body:
            case.body["lease_token"] = world.lease
    if case.headers:
        case.headers.pop("authorization", None)
        case.headers.pop("Authorization", None)


def _revokes_own_token(case, world: World) -> bool:
    return case.method.upper() == "DELETE" and "token_id" in (case.path_parameters or {}) \
        and str(case.path_parameters["token_id"]) == str(world.admin_token_id)


def _check_name(failure) -> str:
    title = (getattr(failure, "title", "") or type(failure).__name__).lower()
    for words, name in (("server error", "not_a_server_error"), ("status code", "status_code_conformance"),
                        ("content-type", "content_type_conformance"), ("schema", "response_schema_conformance")):
        if words in title:
            return name
    return title


# ---- the tests ---------------------------------------------------------------------------------

CI_EXAMPLES = 5  # ~33 operations × 2 modes × ≤5 examples ≈ 300 requests


def fuzz_fresh_app(tmp: Path, *, examples: int, seed: int = 0, database_url: str | None = None) -> FuzzReport:
    """A migrated app (SQLite under `tmp`, or the empty database at `database_url`), seeded with a
    World, then fuzzed."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    url = database_url or f"sqlite:///{tmp / 'sala.db'}"
    migrate.upgrade(url)
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    # schemathesis's ASGI client names the server "testserver", which a loopback server must be told
    app = create_app(Settings(database_url=url, artifacts_url=f"file://{artifacts}", host="127.0.0.1",
                              allowed_hosts="testserver"))
    try:
        with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
            return fuzz(app, seed_world(client, artifacts), examples=examples, seed=seed)
    finally:
        app.state.engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed(request, tmp_path_factory) -> Iterator[FuzzReport]:
    url = create_pg_database() if request.param == "postgresql" else None
    try:
        report = fuzz_fresh_app(tmp_path_factory.mktemp("fuzz"), examples=CI_EXAMPLES, database_url=url)
    finally:
        if url:
            drop_pg_database(url)
    print(f"\n{request.param}: " + report.summary())
    yield report


def test_fuzzing_reaches_every_operation_with_a_budget(fuzzed):
    assert fuzzed.requests >= 250, fuzzed.summary()
    assert len(fuzzed.per_operation) >= 30, fuzzed.per_operation
    assert any(200 <= s < 300 for s in fuzzed.statuses), fuzzed.statuses  # not everything was refused


def test_no_fuzzed_request_gets_a_5xx(fuzzed):
    errors = fuzzed.server_errors()
    assert not errors, "\n".join(f"{e.operation} → {e.status}: {e.message}" for e in errors[:10])


def test_every_success_response_matches_the_schema(fuzzed):
    bad = fuzzed.nonconforming(errors_too=False, content_types=False)
    assert not bad, "\n".join(f"{e.operation} → {e.status} {e.check}: {e.message}" for e in bad[:10])


def test_every_success_content_type_is_documented(fuzzed):
    bad = [f for f in fuzzed.nonconforming(errors_too=False) if f.check == "content_type_conformance"]
    assert not bad, "\n".join(f"{e.operation} → {e.status} {e.check}: {e.message}" for e in bad[:10])


def test_every_response_including_errors_matches_the_schema(fuzzed):
    bad = fuzzed.nonconforming(errors_too=True)
    assert not bad, "\n".join(f"{e.operation} → {e.status} {e.check}: {e.message}" for e in bad[:10])


@pytest.mark.parametrize("scalar", [{"loss": 1.0}, {"step": None, "loss": 1.0}])
def test_a_heartbeat_scalar_without_a_step_is_a_422(tmp_path, scalar):
    from fastapi.testclient import TestClient

    from server.app import create_app

    url = f"sqlite:///{tmp_path / 'sala.db'}"
    migrate.upgrade(url)
    app = create_app(Settings(database_url=url, artifacts_url=f"file://{tmp_path}", host="127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        client.post(f"{API}/runs", json={"name": "r"})
        worker = client.post(f"{API}/workers", json={"name": "w"}).json()["worker_id"]
        claim = client.post(f"{API}/workers/{worker}/claim", json={"wait_s": 0}).json()
        answer = client.post(f"{API}/runs/{claim['run_id']}/heartbeat", json={
            "lease_token": claim["lease_token"], "epoch": 0, "step": 1, "scalars": [scalar]})
    app.state.engine.dispose()
    assert answer.status_code == 422, (answer.status_code, answer.text)
