"""How long the dashboard takes to open a long run: 5,000 epochs and 10^5 step points.

Starts `sala server` on SQLite, writes the history straight into the database, then opens the run
page in Debian's chromium (Playwright) several times and reports, from the page's own
performance timing: navigation start → run page fully drawn (all charts, tables), and the part of
that spent after the app started (fetches + drawing). The target is under a second.

Usage: python bench/dashboard_load.py [--epochs N] [--steps N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.worker_driver import bulk_history  # noqa: E402
from tests.live import live_server  # noqa: E402

TARGET_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"skipped: {CHROMIUM} is missing (run .ci/install-browser)")
        return 0
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, live_server(Path(tmp)) as server:
        recipe = {"training": {"max_epochs": args.epochs, "steps_per_epoch": max(1, args.steps // args.epochs)}}
        run = httpx.post(f"{server.api}/runs", json={"name": "long run", "recipe": recipe}).raise_for_status().json()
        bulk_history(f"sqlite:///{Path(tmp) / 'sala.db'}", run["id"], epochs=args.epochs, steps=args.steps)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server.url}/#/")  # warm the static files and the font, as a person's second visit
            page.wait_for_selector("#view[data-loaded=runs]")
            totals, app_parts = [], []
            for _ in range(args.repeat):
                page.goto("about:blank")
                page.goto(f"{server.url}/#/runs/{run['id']}")
                page.wait_for_selector("#view[data-loaded=run]", timeout=30_000)
                timing = page.evaluate("window.salaTiming")
                points = int(page.get_attribute("[data-chart=loss]", "data-points"))
                assert points >= args.epochs, points
                totals.append(timing["sinceNavigationMs"] / 1000)
                app_parts.append(timing["runRenderedMs"] / 1000)
            browser.close()
        median = statistics.median(totals)
        print(f"run with {args.epochs} epochs and {args.steps} step points, {args.repeat} opens:")
        print(f"  navigation → fully drawn: median {median:.3f}s  (min {min(totals):.3f}s, max {max(totals):.3f}s)")
        print(f"  app start → fully drawn:  median {statistics.median(app_parts):.3f}s")
        print(f"  target < {TARGET_S:.1f}s: {'met' if median < TARGET_S else 'NOT met'}")
        return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
