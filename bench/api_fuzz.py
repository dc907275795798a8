"""Schemathesis against `/openapi.json` with an admin token, on SQLite or PostgreSQL: ≥ 2,000 requests.

The same harness as tests/fuzz/test_api_fuzz.py (positive and negative cases for every operation,
half of the ids aimed at rows that exist) with a bigger budget. Prints the request count, the
statuses, the 5xx count and every kind of schema mismatch; exits 1 on any 5xx or on a 2xx that
does not match its documented schema.

Usage: python bench/api_fuzz.py [--examples N] [--seed N] [--backend sqlite|postgresql]
(PostgreSQL: a throwaway database on the server at SALA_TEST_PG_URL, as the tests use.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import create_pg_database, drop_pg_database  # noqa: E402
from tests.fuzz.test_api_fuzz import fuzz_fresh_app  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=40, help="cases per operation and mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    url = create_pg_database() if args.backend == "postgresql" else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = fuzz_fresh_app(Path(tmp), examples=args.examples, seed=args.seed, database_url=url)
    finally:
        if url:
            drop_pg_database(url)

    print(report.summary())
    print("requests per operation:")
    for label, n in sorted(report.per_operation.items()):
        print(f"  {n:5d}  {label}")
    kinds = Counter((f.operation, f.status, f.check) for f in report.findings if 200 <= f.status < 300)
    for (label, status, check), n in sorted(kinds.items()):
        print(f"  2xx mismatch: {label} → {status} {check} ×{n}")
    server_errors = report.server_errors()
    for finding in server_errors[:20]:
        print(f"5xx: {finding.operation} → {finding.status}: {finding.message}")
    bad_success = report.nonconforming(errors_too=False, content_types=False)
    ok = report.requests >= 2000 and not server_errors and not bad_success
    print("RESULT:", "ok" if ok else "FAILED",
          f"({report.requests} requests, {len(server_errors)} 5xx, {len(bad_success)} 2xx schema mismatches)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
