"""The dashboard in a real browser against a live `sala server` and a REAL `sala worker` subprocess
training a tiny three-task run (character recognition + confidence + language modelling, uncertainty
weighting): the runs table fills, the run page's charts draw the trainer's own metrics and grow,
and a stage jump and an lr change made by clicking are applied by the worker and show on the charts
and in the event log. One server, one worker and one run serve the module's tests."""

from __future__ import annotations

import os

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS, screenshot
from tests.e2e.conftest import TINY, Workers, get, wait_for
from tests.live import ROOT, LiveServer, live_server

POLL = 400  # ms between dashboard polls in tests
TASKS = ("character_recognition", "confidence_prediction", "language_modeling")

# TINY with three task heads and three stages: the first passes its (zero) threshold after 3 epochs;
# the others never move on their own, so the jump to stage 3 is a real, manual move.
RECIPE = {
    **TINY,
    "name": "dashboard-real-worker",
    "training": {"batch_size": 4, "steps_per_epoch": 8, "max_epochs": 2000, "precision": "fp32"},
    "tasks": [{"type": "character_recognition", "weight": 1.0}, {"type": "confidence_prediction", "weight": 0.3},
              {"type": "language_modeling", "weight": 0.2}],
    "task_weighting": "uncertainty",
    "checkpoint": {"every_epochs": 10, "keep_last": 2, "keep_best": 1, "compression": "none"},
    "curriculum": {"stages": [
        {"name": "single_character", "content": "characters", "success_threshold": 0.0, "min_epochs": 3,
         "max_epochs": 3, "patience": 3, "augmentation": 0.0, "lr_multiplier": 1.0},
        {"name": "simple_combinations", "content": "combinations", "success_threshold": 0.999, "min_epochs": 3,
         "max_epochs": 2000, "patience": 2000, "augmentation": 0.0, "lr_multiplier": 0.5},
        {"name": "word_level", "content": "words", "success_threshold": 0.999, "min_epochs": 3,
         "max_epochs": 2000, "patience": 2000, "augmentation": 0.0, "lr_multiplier": 0.5},
    ]},
}


@dataclass
class Live:
    server: LiveServer
    workers: Workers
    run: dict

    def epochs(self) -> list[dict]:
        return get(self.server.api, f"/runs/{self.run['id']}/epochs")["items"]

    def diagnostics(self) -> str:
        return self.workers.logs() + "\n--- server\n" + self.server.output()[-3000:]


@pytest.fixture(scope="module")
def live(browser, tmp_path_factory) -> Iterator[Live]:
    """Started after `browser`, so that without chromium the tests skip before a worker starts."""
    tmp = tmp_path_factory.mktemp("real-worker")
    pool = Workers(tmp)
    with live_server(tmp) as server:
        answer = httpx.post(f"{server.api}/runs", json={"name": "ខ្មែរ crnn · real worker", "recipe": RECIPE,
                                                        "tags": ["browser", "tiny"]})
        assert answer.status_code == 201, answer.text
        state = Live(server, pool, answer.json())
        pool.start(server.url, "w-browser")
        try:
            yield state
        finally:
            pool.stop_all()
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "browser-real-worker.log").write_text(state.diagnostics())


def points(page, chart: str) -> int:
    return int(page.get_attribute(f"[data-chart={chart}]", "data-points") or 0)


def series_names(page, chart: str) -> set[str]:
    return set(page.eval_on_selector_all(f"[data-chart={chart}] path.series", "ps => ps.map(p => p.dataset.series)"))


def test_runs_table_fills_with_a_real_worker(live, page):
    rid = live.run["id"]
    wait_for(lambda: len(live.epochs()) >= 1, 120, "the worker's first epoch", diagnostics=live.diagnostics)
    queued = httpx.post(f"{live.server.api}/runs", json={"name": "queued behind it", "recipe": RECIPE}).json()
    page.goto(f"{live.server.url}/?poll={POLL}")
    row = page.locator(f"#runs-table tr[data-run-id='{rid}']")
    row.wait_for()
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr[data-run-id]').length === 2")
    assert row.locator("[data-status]").inner_text().strip().endswith("running")
    assert re.search(r"\d+/2000", row.inner_text())
    assert "w-browser #" in row.inner_text()
    assert "(1/3)" in row.inner_text() or "(2/3)" in row.inner_text()
    # CER and effective lr come from the worker's reports
    cells = row.locator("td")  # a compare checkbox, name, status, stage, epoch, CER, seq acc, lr, …
    assert re.fullmatch(r"\d\.\d{3}", cells.nth(5).inner_text().strip())
    assert re.fullmatch(r"\d\.\d{2}e-\d+", cells.nth(7).inner_text().strip())
    page.locator(f"#runs-table tr[data-run-id='{queued['id']}'] [data-status=queued]").wait_for()
    page.select_option("#status-filter", "running")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr[data-run-id]').length === 1")
    assert page.locator("#runs-table tbody tr[data-run-id]").get_attribute("data-run-id") == str(rid)
    page.select_option("#status-filter", "")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr[data-run-id]').length === 2")
    screenshot(page, "runs-page.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "runs-page-phone.png", full_page=True)


def test_run_page_with_a_real_worker_draws_grows_and_applies_clicked_overrides(live, page):
    rid = live.run["id"]
    api = live.server.api
    # stage 1 passes its threshold at epoch 3: the first band and an automatic move are on the page
    wait_for(lambda: len(live.epochs()) >= 4, 120, "four epochs", diagnostics=live.diagnostics)
    page.goto(f"{live.server.url}/?poll={POLL}#/runs/{rid}")
    page.wait_for_selector("#view[data-loaded=run]")

    # the trainer's own metric names: total + one loss per task, CER / sequence accuracy, lr, weights
    assert series_names(page, "loss") == {"total", *TASKS}
    assert {"val_cer", "val_sequence_accuracy"} <= series_names(page, "val")
    assert series_names(page, "lr") == {"effective", "schedule"}
    assert series_names(page, "weights") == set(TASKS)
    assert {"total", *TASKS} <= series_names(page, "steps")
    for chart in ("loss", "val", "lr", "steps", "weights", "metric"):
        assert points(page, chart) > 0, chart
    assert page.get_attribute("[data-chart=loss]", "data-log") == "true"  # the task losses differ by 10-100×
    assert page.locator("[data-chart=val] line.threshold").count() >= 1
    assert page.locator("[data-chart=loss] rect.band").count() >= 2
    page.wait_for_selector("#stage-timeline li[data-reason=threshold]")
    # any other metric can be picked
    options = page.eval_on_selector_all("#metric-select option", "os => os.map(o => o.value)")
    assert {"val_loss", "val_confidence_ece", "val_perplexity", "grad_norm", "nonfinite_steps"} <= set(options)
    page.select_option("#metric-select", "val_confidence_ece")
    page.wait_for_selector("[data-chart=metric] path.series[data-series=val_confidence_ece]")

    # live: the charts grow between polls without reloading the page
    before = points(page, "loss"), points(page, "steps")
    page.wait_for_function(f"+document.querySelector('[data-chart=loss]').dataset.points > {before[0]}")
    page.wait_for_function(f"+document.querySelector('[data-chart=steps]').dataset.points > {before[1]}")
    assert page.locator("[data-chart=metric] path.series[data-series=val_confidence_ece]").count() == 1  # choice kept

    # jump to the last stage by clicking, with the confirmation accepted
    page.select_option("#stage-select", "3")
    with page.expect_event("dialog", timeout=30_000):  # the confirmation may come late on a busy machine
        page.click("button[data-action=jump]")
    assert any("Jump run" in m and "word_level" in m for m in page.dialogs)
    request = page.locator("#requests li").first
    request.wait_for()
    jump_id = request.get_attribute("data-event-id")
    page.wait_for_selector(f"#requests li[data-event-id='{jump_id}'][data-state=applied]")
    page.wait_for_selector(f"#event-log tr[data-event-id='{jump_id}'][data-kind=stage_set][data-state=applied]")
    assert "applied at step" in page.locator(f"#event-log tr[data-event-id='{jump_id}']").inner_text()
    page.wait_for_selector(f"[data-chart=val] .marker[data-event-id='{jump_id}']")
    page.wait_for_selector("[data-chart=val] rect.band[data-stage='3']")  # epochs now train in stage 3
    page.wait_for_selector("#stage-timeline li[data-reason=manual]")
    assert "word_level (3/3)" in page.inner_text("#run-stage")

    # scale the learning rate by clicking; the worker's epochs then report the halved effective lr
    lr_before = get(api, f"/runs/{rid}")["lr"]["effective"]
    page.fill("#lr-value", "0.5")
    with page.expect_event("dialog", timeout=30_000):
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
    applied_step = next(e for e in get(api, f"/runs/{rid}/events")["items"] if e["id"] == int(lr_id))["applied_step"]
    later = wait_for(lambda: [e for e in live.epochs() if e["step"] > applied_step], 60, "an epoch after the lr change",
                     diagnostics=live.diagnostics)[0]
    assert later["stage"]["index"] == 3
    assert abs(later["lr"]["effective"] - lr_before * 0.5) < 1e-12 and later["lr"]["override_scale"] == 0.5
    # the effective-lr line drops to it
    page.wait_for_function(f"+document.querySelector('[data-chart=lr]').dataset.points >= {2 * later['epoch']}")

    # a refused control shows the server's message
    page.click("button[data-action=resume]")
    page.wait_for_selector("#notice .alert.error")
    assert "cannot resume this run: it is already running" in page.inner_text("#notice")

    # "checkpoint now" is applied; the worker's checkpoints are listed and download
    page.click("button[data-action=checkpoint]")
    page.wait_for_selector("#event-log tr[data-kind=checkpoint_requested][data-state=applied]")
    link = page.locator("#checkpoints a.download").first
    link.wait_for()
    checkpoint_id = int(page.locator("#checkpoints tr[data-checkpoint-id]").first.get_attribute("data-checkpoint-id"))
    size = next(c["size"] for c in get(api, f"/runs/{rid}/checkpoints") if c["id"] == checkpoint_id)
    file = httpx.get(live.server.url + link.get_attribute("href"), timeout=30)
    assert file.status_code == 200 and len(file.content) == size > 0

    # a few more epochs so the pictures show the stage-3 band after the markers
    epoch_now = len(live.epochs())
    page.wait_for_function(f"parseInt(document.querySelector('#run-epoch').innerText) >= {epoch_now + 3}",
                           timeout=30_000)
    page.mouse.move(0, 0)
    screenshot(page, "run-page.png", full_page=True)
    save_readme_screenshot(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("parseInt(document.querySelector('[data-chart=val] svg').getAttribute('width')) <= 390")
    screenshot(page, "run-page-phone.png", full_page=True)


def save_readme_screenshot(page) -> None:
    """docs/img/run-page.png for the README and docs/DASHBOARD.md: the run page down to the end of
    its charts, as a palette PNG when Pillow is there (well under 200 KB)."""
    if os.environ.get("SALA_UPDATE_README_IMAGE") != "1":
        target = ARTIFACTS / "readme-run-page.png"  # the committed image changes only when asked
    else:
        target = ROOT / "docs" / "img" / "run-page.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    bottom = page.evaluate("document.querySelector('.charts').getBoundingClientRect().bottom + window.scrollY")
    page.screenshot(path=str(target), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": bottom + 16})
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(target) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(target, optimize=True)
