"""`sala runs watch`: a run's state as one terminal frame, refreshed from the API with cursors
(only epochs after the last one seen are fetched)."""

from __future__ import annotations

import time
from collections import deque
from statistics import mean

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from client import SalaClient
from client.api import FINAL
from core.api import EpochOut, RunOut, StagesOut

SHOWN_EPOCHS = 8
COLUMNS = ("train_loss", "val_cer", "val_sequence_accuracy")


class View:
    def __init__(self, sala: SalaClient, run_id: int):
        self.sala, self.run_id = sala, run_id
        self.epochs: deque[EpochOut] = deque(maxlen=50)
        self.run: RunOut | None = None
        self.stages: StagesOut | None = None

    def refresh(self) -> RunOut:
        run = self.sala.run(self.run_id)
        if self.stages is None or (self.run and (run.stage, run.stage_held) != (self.run.stage, self.run.stage_held)):
            self.stages = self.sala.stages(self.run_id)
        after = self.epochs[-1].epoch if self.epochs else -1
        self.epochs.extend(self.sala.epochs(self.run_id, after=after))
        self.run = run
        return run

    def render(self) -> Group:
        run, stage = self.run, self.stages.stages[self.run.stage.index - 1]
        metric = stage.get("metric") or "val_sequence_accuracy"
        lr = run.lr
        facts = Table.grid(padding=(0, 2))
        for label, value in (
            ("status", f"[b]{run.status}[/b]  attempt {run.attempt}, worker {run.worker_id or '–'}"),
            ("stage", f"[b]{run.stage.index}/{run.stage_count} {run.stage.name}[/b]"
                      + ("  (held)" if run.stage_held else "")),
            ("threshold", f"{metric} ≥ {stage['success_threshold']}  (now {_num(run.latest.get(metric))})"),
            ("progress", f"epoch [b]{run.epoch}/{run.max_epochs}[/b]  step {run.step}"),
            ("lr", f"[b]{lr.effective:.3e}[/b] = schedule {_num(lr.schedule)} × stage {lr.stage_multiplier:g} "
                   f"× override {_override(lr.override)} × automatic {lr.auto_scale:g}"),
            ("ETA", self.eta()),
        ):
            facts.add_row(label, value)
        parts = [Panel(facts, title=f"{run.name} #{run.id}", expand=False), self._epochs_table()]
        if run.error:
            parts.append(Panel(run.error[-800:], title="error", style="red", expand=False))
        return Group(*parts)

    def _epochs_table(self) -> Table:
        table = Table("epoch", "stage", *COLUMNS, "lr", "s/epoch", title="last epochs", box=None)
        for e in list(self.epochs)[-SHOWN_EPOCHS:]:
            table.add_row(str(e.epoch), f"{e.stage.index} {e.stage.name}", *(_num(e.metrics.get(c)) for c in COLUMNS),
                          _num(e.lr.get("effective")), _num(e.duration_s))
        return table

    def eta(self) -> str:
        """Epochs left at the recent pace; the curriculum may finish sooner (max_epochs is the bound)."""
        if self.run.status in FINAL:
            return "done"
        durations = [e.duration_s for e in list(self.epochs)[-5:] if e.duration_s]
        if not durations:
            return "–"
        seconds = mean(durations) * max(0, self.run.max_epochs - self.run.epoch)
        return f"≤ {int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m{int(seconds % 60):02d}s"


def follow(sala: SalaClient, run_id: int, console: Console, *, interval: float, once: bool) -> None:
    view = View(sala, run_id)
    if once:
        view.refresh()
        console.print(view.render())
        return
    with Live(console=console, auto_refresh=False) as live:
        try:
            while True:
                run = view.refresh()
                live.update(view.render(), refresh=True)
                if run.status in FINAL:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return


def _num(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def _override(override: dict | None) -> str:
    if not override:
        return "none"
    return f"scale {override['scale']}" if "scale" in override else f"lr {override['lr']}"
