"""The dashboard in a real browser (Debian's chromium via Playwright) against a live `sala server`,
with a fake worker training runs through the real worker protocol over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import screenshot
from tests.browser.worker_driver import FakeWorker, bulk_history
from tests.live import ROOT, LiveServer, live_server, run_sala

POLL = 400  # ms between dashboard polls in tests

# three stages: the first passes its threshold after a few epochs; the others never move on their own,
# so a jump to stage 3 is always a real move
RECIPE = {
    "name": "dashboard-test",
    "training": {"steps_per_epoch": 30, "max_epochs": 400},
    "curriculum": {"metric": "val_sequence_accuracy", "stages": [
        {"name": "single_character", "content": "characters", "success_threshold": 0.9, "min_epochs": 3,
         "max_epochs": 8, "patience": 6, "lr_multiplier": 1.0},
        {"name": "simple_combinations", "content": "combinations", "success_threshold": 0.999, "min_epochs": 3,
         "max_epochs": 1000, "patience": 1000, "lr_multiplier": 0.8},
        {"name": "word_level", "content": "words", "success_threshold": 0.999, "min_epochs": 3,
         "max_epochs": 1000, "patience": 1000, "lr_multiplier": 0.5},
    ]},
    "checkpoint": {"keep_last": 3, "keep_best": 1, "best_metric": "val_cer"},
}


@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    with live_server(tmp_path) as live:
        yield live


@pytest.fixture
def worker(server) -> Iterator[FakeWorker]:
    with FakeWorker(server.api, epoch_seconds=0.25) as fake:
        yield fake


def create(server: LiveServer, name: str, recipe: dict | None = None, **extra) -> dict:
    answer = httpx.post(f"{server.api}/runs", json={"name": name, "recipe": recipe or RECIPE, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


def points(page, chart: str) -> int:
    return int(page.get_attribute(f"[data-chart={chart}]", "data-points") or 0)


def test_runs_table_fills_and_filters_by_status(server, worker, page):
    training = create(server, "ខ្មែរ-crnn baseline")
    worker.wait_for(lambda: worker.epochs_reported >= 2, what="two epochs")
    create(server, "queued behind it")  # the one worker is busy: this one stays queued
    page.goto(f"{server.url}/?poll={POLL}")
    page.wait_for_selector(f"#runs-table tr[data-run-id='{training['id']}']")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr[data-run-id]').length === 2")
    row = page.locator(f"#runs-table tr[data-run-id='{training['id']}']")
    assert row.locator("[data-status]").inner_text().strip().endswith("running")
    assert "single_character (1/3)" in row.inner_text() or "simple_combinations (2/3)" in row.inner_text()
    assert re.search(r"\d+/400", row.inner_text())
    # epoch, CER and lr fill in as the worker reports
    page.wait_for_function(f"document.querySelector(\"#runs-table tr[data-run-id='{training['id']}'] td:nth-child(5)\")"
                           ".innerText !== '–'")
    page.select_option("#status-filter", "running")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr[data-run-id]').length === 1")
    assert page.locator("#runs-table tbody tr[data-run-id]").get_attribute("data-run-id") == str(training["id"])
    page.select_option("#status-filter", "")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr[data-run-id]').length === 2")
    screenshot(page, "runs-page.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "runs-page-phone.png", full_page=True)


def test_run_page_draws_grows_and_applies_stage_jump_and_lr_change(server, worker, page):
    run = create(server, "steer me")
    worker.wait_for(lambda: worker.epochs_reported >= 3, what="three epochs")
    page.goto(f"{server.url}/?poll={POLL}#/runs/{run['id']}")
    page.wait_for_selector("#view[data-loaded=run]")
    for chart in ("loss", "val", "lr", "steps", "weights"):
        assert points(page, chart) > 0, chart
        assert page.locator(f"[data-chart={chart}] path.series").count() >= 1, chart
    assert page.locator("[data-chart=val] line.threshold").count() >= 1
    assert page.locator("[data-chart=loss] rect.band").count() >= 1

    # live: the charts grow between polls without reloading the page
    before = points(page, "loss"), points(page, "steps")
    page.wait_for_function(f"+document.querySelector('[data-chart=loss]').dataset.points > {before[0]}", timeout=10_000)
    page.wait_for_function(f"+document.querySelector('[data-chart=steps]').dataset.points > {before[1]}", timeout=10_000)

    # jump to the last stage by clicking, with the confirmation accepted
    page.select_option("#stage-select", "3")
    page.click("button[data-action=jump]")
    assert any("Jump run" in m and "word_level" in m for m in page.dialogs)
    request = page.locator("#requests li").first
    request.wait_for()
    jump_id = request.get_attribute("data-event-id")
    page.wait_for_selector(f"#requests li[data-event-id='{jump_id}'][data-state=applied]")
    page.wait_for_selector(f"#event-log tr[data-event-id='{jump_id}'][data-kind=stage_set][data-state=applied]")
    assert "applied at step" in page.locator(f"#event-log tr[data-event-id='{jump_id}']").inner_text()
    page.wait_for_selector(f"[data-chart=val] .marker[data-event-id='{jump_id}']")
    page.wait_for_selector("[data-chart=val] rect.band[data-stage='3']", timeout=15_000)  # epochs now train in stage 3
    page.wait_for_selector("#stage-timeline li[data-reason=manual]")
    assert "word_level (3/3)" in page.inner_text("#run-stage")

    # scale the learning rate by clicking
    page.fill("#lr-value", "0.5")
    page.click("button[data-action=lr-scale]")
    assert any("Scale the learning rate by ×0.5" in m for m in page.dialogs)
    lr_request = page.locator("#requests li[data-event-id]").nth(1)
    lr_request.wait_for()
    lr_id = lr_request.get_attribute("data-event-id")
    assert lr_id != jump_id
    page.wait_for_selector(f"#requests li[data-event-id='{lr_id}'][data-state=applied]")
    page.wait_for_selector(f"#event-log tr[data-event-id='{lr_id}'][data-kind=lr_scale][data-state=applied]")
    page.wait_for_selector(f"[data-chart=lr] .marker[data-event-id='{lr_id}']")
    page.wait_for_selector(f"[data-chart=steps] .marker[data-event-id='{lr_id}']")
    assert "scale" in page.inner_text(".run-head")
    acked = dict(worker.acked)
    assert int(jump_id) in acked and int(lr_id) in acked

    # a refused control shows the server's message
    page.click("button[data-action=resume]")
    page.wait_for_selector("#notice .alert.error")
    assert "cannot resume this run: it is already running" in page.inner_text("#notice")

    # checkpoints are listed with download links that work
    page.click("button[data-action=checkpoint]")
    page.wait_for_selector("#event-log tr[data-kind=checkpoint_requested][data-state=applied]")
    link = page.locator("#checkpoints a.download").first
    link.wait_for()
    file = httpx.get(server.url + link.get_attribute("href"))
    assert file.status_code == 200 and file.content.startswith(b"fake checkpoint")

    page.wait_for_timeout(2 * POLL)
    screenshot(page, "run-page.png", full_page=True)
    save_readme_screenshot(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(400)  # charts redraw for the new width
    assert int(page.locator("[data-chart=val] svg").get_attribute("width")) <= 390
    screenshot(page, "run-page-phone.png", full_page=True)


def save_readme_screenshot(page) -> None:
    """docs/img/run-page.png for the README: the top of the run page, small enough to commit."""
    target = ROOT / "docs" / "img" / "run-page.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1250})


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
    assert points(page, "loss") == 5000 * 4  # train_loss and one loss per task
    assert points(page, "lr") == 5000 * 2
    assert 0 < points(page, "steps") <= 2001
    assert page.locator("[data-chart=val] rect.band").count() == 5
    # drawn paths are downsampled to the pixel columns, not 5,000 vertices each
    d = page.get_attribute("[data-chart=loss] path.series", "d")
    assert d.count("L") < 5000
    timing = page.evaluate("window.salaTiming")
    assert timing["epochs"] == 5000
    screenshot(page, "long-run-page.png")
