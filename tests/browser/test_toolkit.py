"""The dashboard's compare view and log panel in chromium, against a live server fed through the
worker protocol by the typed client (no training needed): runs picked in the list are laid over
each other with a stage lane each and their recipe differences; the log panel follows new lines;
a note edited on the run page is saved (PATCH) and shown."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from client import SalaClient
from core.protocol import EpochMessage, LogBatch, LogLine, WorkerHello
from tests.browser.conftest import screenshot
from tests.live import live_server

POLL = 300
STAGES = {"curriculum": {"stages": [{"name": "chars", "content": "characters", "success_threshold": 0.9},
                                    {"name": "words", "content": "words", "success_threshold": 0.9}]},
          "training": {"max_epochs": 10}}


@pytest.fixture
def fed(tmp_path) -> Iterator[tuple[str, SalaClient, list[tuple[int, str]]]]:
    """Two runs held by one 'worker', each with epochs over two stages."""
    with live_server(tmp_path) as server, SalaClient(server.url) as sala:
        made = [sala.create_run({**STAGES, "optimizer": {"lr": lr}}, name=f"lr {lr}").id for lr in (0.001, 0.0005)]
        worker = sala.register(WorkerHello(name="feeder")).worker_id
        leases = []
        for _ in made:
            claim = sala.claim(worker)
            leases.append((claim.run_id, claim.lease_token))
        for run_id, lease in leases:
            for epoch in range(1, 7):
                sala.report_epoch(run_id, EpochMessage(
                    lease_token=lease, epoch=epoch, stage_index=0 if epoch <= 3 else 1, step=50 * epoch,
                    metrics={"val_cer": 1.0 / (epoch + run_id), "train_loss": 3.0 - 0.3 * epoch}, lr={}))
        yield server.url, sala, leases


def line(message: str, level: str = "INFO") -> LogLine:
    return LogLine(ts=dt.datetime.now(dt.UTC), level=level, source="sala.trainer", message=message)


def test_compare_lays_runs_over_each_other_with_their_recipe_differences(fed, page):
    url, _, leases = fed
    page.goto(f"{url}/?poll={POLL}")
    page.wait_for_selector("#view[data-loaded=runs]")
    assert page.is_disabled("#compare-runs")
    for run_id, _ in leases:
        page.check(f"tr[data-run-id='{run_id}'] input.pick")
    page.click("#compare-runs")
    page.wait_for_selector("#view[data-loaded=compare]")
    assert page.input_value("#compare-metric") == "val_cer"
    chart = "[data-chart=compare]"
    assert page.locator(f"{chart} .series").count() == 2 and page.get_attribute(chart, "data-points") == "12"
    lanes = {page.get_attribute(b, "data-lane") for b in [f"{chart} rect.band >> nth={i}" for i in range(4)]}
    assert lanes == {"0", "1"} and page.locator(f"{chart} rect.band").count() == 4  # two stages per run
    diff = page.inner_text("#recipe-diff")
    assert "optimizer.lr" in diff and "0.0005" in diff and "curriculum" not in diff
    page.select_option("#compare-x", "step")
    page.wait_for_function("location.hash.includes('x=step')")
    assert page.text_content(f"{chart} .axis-label") == "step"
    screenshot(page, "compare.png", full_page=True)


def test_log_panel_follows_new_lines_and_the_note_is_saved(fed, page):
    url, sala, leases = fed
    run_id, lease = leases[0]
    sala.send_logs(run_id, LogBatch(lease_token=lease, lines=[line("epoch 1 started"), line("font missing", "WARNING")]))
    page.goto(f"{url}/?poll={POLL}#/runs/{run_id}")
    page.wait_for_selector("#view[data-loaded=run]")
    page.wait_for_selector("#log-panel .log-line >> text=font missing")
    assert page.locator("#log-panel .log-line.level-warning").count() == 1
    sala.send_logs(run_id, LogBatch(lease_token=lease, lines=[line("Traceback: boom", "ERROR")], dropped=7))
    page.wait_for_selector("#log-panel .log-line.level-error >> text=Traceback: boom")
    page.wait_for_selector("#log-dropped >> text=7 (attempt 1)")
    assert page.locator("#log-panel .log-line").count() == 3

    page.click("#edit-run-button")
    page.fill("#edit-tags", "baseline, fonts")
    page.fill("#edit-note", "## Why\nthe lr halves at stage 2")
    page.click("#edit-run button[type=submit]")
    page.wait_for_selector("#run-note >> text=the lr halves at stage 2")
    run = sala.run(run_id)
    assert run.note == "## Why\nthe lr halves at stage 2" and run.tags == ["baseline", "fonts"]
    page.wait_for_selector("#event-log tr[data-kind=run_updated]")
    screenshot(page, "run-logs-notes.png", full_page=True)
