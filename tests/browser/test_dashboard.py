"""The dashboard in a real browser (Debian's chromium via Playwright) against a live `sala server`,
for what needs no training: a bad recipe's field errors, the token box, and a long history written
straight into the database. Runs trained by a real worker: tests/browser/test_real_worker.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import screenshot
from tests.browser.worker_driver import bulk_history
from tests.live import LiveServer, live_server, run_sala

POLL = 400  # ms between dashboard polls in tests

@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    with live_server(tmp_path) as live:
        yield live


def create(server: LiveServer, name: str, recipe: dict) -> dict:
    answer = httpx.post(f"{server.api}/runs", json={"name": name, "recipe": recipe})
    assert answer.status_code == 201, answer.text
    return answer.json()


def points(page, chart: str) -> int:
    return int(page.get_attribute(f"[data-chart={chart}]", "data-points") or 0)


def test_bad_recipe_shows_field_errors_next_to_their_paths(server, page):
    page.goto(f"{server.url}/?poll={POLL}")
    page.wait_for_selector("#view[data-loaded=runs]")
    page.click("#new-run")
    page.fill("#run-name", "bad recipe")
    page.fill("#run-recipe", "\n".join([
        "training:",
        "  max_epochs: 10",
        "  batch_size: -4",
        "curriculum:",
        "  stages:",
        "    - {name: a, content: characters, success_threshold: 0.5}",
        "    - name: b",
        "      content: words",
        "      success_threshold: 1.5",
    ]))
    page.click("#create-run button[type=submit]")
    threshold = page.locator("[data-for=recipe] .field-error[data-path='recipe.curriculum.stages[1].success_threshold']")
    threshold.wait_for()
    assert "line 9" in threshold.inner_text()
    assert page.locator("[data-for=recipe] .field-error[data-path='recipe.training.batch_size']").count() == 1
    assert "line 3" in page.inner_text("[data-for=recipe] .field-error[data-path='recipe.training.batch_size']")
    screenshot(page, "create-run-errors.png", full_page=True)

    page.fill("#run-name", "")
    page.fill("#run-recipe", "training: {max_epochs: 5}")
    page.click("#create-run button[type=submit]")
    page.locator("[data-for=name] .field-error[data-path=name]").wait_for()

    page.fill("#run-name", "good recipe")
    page.click("#create-run button[type=submit]")
    page.wait_for_selector("#view[data-loaded=run]")
    assert "good recipe" in page.inner_text("#run-name")


def test_token_box_on_401_keeps_the_token(tmp_path, page):
    with live_server(tmp_path) as server:
        made = run_sala("tokens", "create", "--role", "viewer", "--name", "browser", tmp_path=tmp_path)
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip().splitlines()[0]
        page.goto(f"{server.url}/")
        page.wait_for_selector("#token-box:not([hidden])")
        assert "requires a token" in page.inner_text("#token-why")
        page.fill("#token-input", token)
        page.click("#token-box button[type=submit]")
        page.wait_for_selector("#view[data-loaded=runs]")
        assert page.evaluate("localStorage.getItem('sala.token')") == token
        assert page.locator("#token-box").is_hidden()
        page.reload()
        page.wait_for_selector("#view[data-loaded=runs]")  # remembered across reloads
        assert page.locator("#token-box").is_hidden()


def test_long_run_opens_and_draws(server, page, tmp_path):
    """5,000 epochs and 10^5 step points render; bench/dashboard_load.py measures how fast."""
    run = create(server, "long run", {"training": {"max_epochs": 5000, "steps_per_epoch": 20}})
    bulk_history(f"sqlite:///{Path(tmp_path) / 'sala.db'}", run["id"], epochs=5000, steps=100_000)
    page.goto(f"{server.url}/#/runs/{run['id']}")
    page.wait_for_selector("#view[data-loaded=run]", timeout=30_000)
    assert points(page, "loss") == 5000 * 4  # train_loss and train_loss_<task> for three tasks
    assert points(page, "lr") == 5000 * 2
    assert 0 < points(page, "steps") <= 2001
    assert page.locator("[data-chart=val] rect.band").count() == 5
    # drawn paths are downsampled to the pixel columns, not 5,000 vertices each
    d = page.get_attribute("[data-chart=loss] path.series", "d")
    assert d.count("L") < 5000
    timing = page.evaluate("window.salaTiming")
    assert timing["epochs"] == 5000
    screenshot(page, "long-run-page.png")


def test_the_dashboard_polls_columns_conditionally(server, page, tmp_path):
    """Histories come as `?format=columns`, and an unchanged one as a bodiless 304 (If-None-Match)."""
    run = create(server, "polled", {"training": {"max_epochs": 50, "steps_per_epoch": 20}})
    bulk_history(f"sqlite:///{Path(tmp_path) / 'sala.db'}", run["id"], epochs=20, steps=400)
    sent = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("if-none-match"))))
    page.goto(f"{server.url}/?poll={POLL}#/runs/{run['id']}")
    page.wait_for_selector("#view[data-loaded=run]", timeout=30_000)
    assert points(page, "steps") > 0
    with page.expect_response(lambda r: "/epochs?" in r.url and r.status == 304, timeout=30_000):
        pass
    columns = [(url, etag) for url, etag in sent if "format=columns" in url]
    assert any("/epochs?" in url for url, _ in columns) and any("/steps?" in url for url, _ in columns)
    assert any(etag for _, etag in columns)


def test_what_a_person_types_in_the_controls_survives_the_run_changing(server, page):
    """The controls are rebuilt when the run changes (each epoch); a half-typed lr or a chosen stage
    must not vanish between typing and clicking."""
    run = create(server, "steered", {"training": {"max_epochs": 50, "steps_per_epoch": 20}})
    page.goto(f"{server.url}/?poll={POLL}#/runs/{run['id']}")
    page.wait_for_selector("#view[data-loaded=run]")
    page.fill("#lr-value", "0.5")
    page.select_option("#stage-select", "2")
    page.focus("#lr-value")
    renamed = httpx.patch(f"{server.api}/runs/{run['id']}", json={"name": "steered, renamed"})
    assert renamed.status_code == 200, renamed.text
    page.wait_for_function("document.querySelector('#run-name').textContent.includes('renamed')")
    assert page.input_value("#lr-value") == "0.5"
    assert page.input_value("#stage-select") == "2"
    assert page.evaluate("document.activeElement.id") == "lr-value"
    with page.expect_event("dialog"):
        page.click("button[data-action=lr-scale]")
    assert any("Scale the learning rate by ×0.5" in m for m in page.dialogs)
