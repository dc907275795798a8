"""`sala runs`: list, read and steer runs on a server from a terminal, through `client.SalaClient`.

The server and token come from `--url` / `--token` (before the subcommand), else `SALA_URL` /
`SALA_TOKEN`, else the config file (`client.config`). An error is printed as the API gave it
(`409 conflict: cannot resume this run: it is already queued`, with the field paths of a 422) and
exits 1; a server that does not answer exits 2. Read commands print JSON with `--json`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from client import ApiError, SalaClient, Unreachable

app = typer.Typer(no_args_is_help=True, help="List, read and steer runs on a server.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
RunId = Annotated[int, typer.Argument(help="Run id.", min=1)]
Reason = Annotated[Optional[str], typer.Option(help="Why, for the audit log.")]


@app.callback()
def connect(ctx: typer.Context,
            url: Annotated[Optional[str], typer.Option(help="Server URL (default SALA_URL, the config file, "
                                                       "or http://127.0.0.1:8000).")] = None,
            token: Annotated[Optional[str], typer.Option(help="API token (default SALA_TOKEN or the config file).")]
            = None) -> None:
    ctx.obj = {"url": url, "token": token}
    logging.getLogger("sala.client").setLevel(logging.ERROR)  # a retry is no news to a person; the outcome is


@contextmanager
def session(ctx: typer.Context) -> Iterator[SalaClient]:
    """The client, with the API's errors printed as it gave them."""
    try:
        with SalaClient(ctx.obj["url"], ctx.obj["token"], retry_for=5.0) as sala:
            yield sala
    except ApiError as exc:
        err.print(f"error: {exc.status} {exc.code}: {exc.message}", markup=False)
        for detail in exc.details:
            err.print(f"  {detail.get('path')}: {detail.get('message')}", markup=False)
        raise typer.Exit(1) from None
    except (Unreachable, ValueError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None


def emit(value: BaseModel | list) -> None:
    """The API's JSON on one line (for jq)."""
    items = value if isinstance(value, list) else [value]
    data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in items]
    print(json.dumps(data if isinstance(value, list) else data[0], ensure_ascii=False))


# ---- reading -------------------------------------------------------------------------------------


@app.command("list")
def list_runs(ctx: typer.Context,
              status: Annotated[Optional[str], typer.Option(help="One status or several, comma-separated.")] = None,
              tag: Annotated[Optional[str], typer.Option(help="Only runs with this tag.")] = None,
              limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many runs.")] = 50,
              as_json: Json = False) -> None:
    """Runs, newest first (paged through as needed)."""
    with session(ctx) as sala:
        runs = [r for _, r in zip(range(limit), sala.runs(status=status, tag=tag, page_size=min(limit, 500)))]
    if as_json:
        return emit(runs)
    table = Table("id", "name", "status", "stage", "epoch", "val_cer", "lr", "tags", box=None)
    for r in runs:
        table.add_row(str(r.id), r.name, r.status, f"{r.stage.index}/{r.stage_count} {r.stage.name}",
                      f"{r.epoch}/{r.max_epochs}", _num(r.latest.get("val_cer")), f"{r.lr.effective:.2e}",
                      ",".join(r.tags))
    out.print(table)


@app.command()
def show(ctx: typer.Context, run_id: RunId, as_json: Json = False) -> None:
    """One run: status, stage, lr, latest metrics, note."""
    with session(ctx) as sala:
        run = sala.run(run_id)
    if as_json:
        return emit(run)
    override = f" (override {json.dumps(run.lr.override)})" if run.lr.override else ""
    rows = [("name", run.name), ("status", run.status + (f": {run.error}" if run.error else "")),
            ("stage", f"{run.stage.index}/{run.stage_count} {run.stage.name}" + (" (held)" if run.stage_held else "")),
            ("epoch", f"{run.epoch}/{run.max_epochs}"), ("step", str(run.step)),
            ("lr", f"{run.lr.effective:.3e}{override}" + (f" ×{run.lr.auto_scale} automatic"
                                                          if run.lr.auto_scale != 1 else "")),
            ("attempt", f"{run.attempt} (restarts {run.restarts}/{run.max_restarts})"),
            ("tags", ", ".join(run.tags) or "–"), ("worker", str(run.worker_id or "–")),
            ("created", run.created_at.isoformat())]
    rows += [(k, _num(v)) for k, v in sorted(run.latest.items())]
    table = Table(show_header=False, box=None)
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    if run.note:
        out.print("\n" + run.note, markup=False)


@app.command()
def logs(ctx: typer.Context, run_id: RunId,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")]
         = False,
         attempt: Annotated[Optional[int], typer.Option(min=1, help="Only this attempt's lines.")] = None,
         after: Annotated[int, typer.Option(min=0, help="Only lines after this line id.")] = 0,
         as_json: Json = False) -> None:
    """What the run's worker wrote: log records, stdout and stderr."""
    with session(ctx) as sala:
        lines = sala.follow_logs(run_id, after=after, attempt=attempt) if follow else \
            sala.logs(run_id, after=after, attempt=attempt)
        try:
            for line in lines:
                if as_json:
                    print(line.model_dump_json(), flush=True)
                else:
                    print(f"{line.ts:%H:%M:%S} [{line.attempt}] {line.level:<7} {line.source}: {line.message}",
                          flush=True)
        except KeyboardInterrupt:
            return
        dropped = {k: v for k, v in sala.log_page(run_id, after=2**62).dropped.items() if v}
    if dropped and not as_json:
        err.print(f"(oldest lines dropped by the size cap, per attempt: {dropped})")


@app.command()
def checkpoints(ctx: typer.Context, run_id: RunId,
                download: Annotated[Optional[int], typer.Option(help="Download this checkpoint id …")] = None,
                to: Annotated[Optional[Path], typer.Option("--out", help="… to this file.")] = None,
                as_json: Json = False) -> None:
    """A run's checkpoints, or one of them downloaded (its checksum checked)."""
    with session(ctx) as sala:
        if download is not None:
            target = to or Path(f"run{run_id}-ckpt{download}.pt")
            digest = sala.download_checkpoint(run_id, download, target)
            return out.print(f"{target}  sha256 {digest}")
        listed = sala.checkpoints(run_id)
    if as_json:
        return emit(listed)
    table = Table("id", "epoch", "step", "stage", "size", "val_cer", "kept", box=None)
    for c in listed:
        table.add_row(str(c.id), str(c.epoch), str(c.step), str(c.stage), str(c.size),
                      _num(c.metrics.get("val_cer")), "yes" if c.kept else "deleted")
    out.print(table)


# ---- creating and steering -------------------------------------------------------------------------


@app.command()
def create(ctx: typer.Context,
           recipe: Annotated[Path, typer.Argument(help="Recipe file (YAML or JSON); the server validates it.",
                                                  exists=True, dir_okay=False)],
           name: Annotated[Optional[str], typer.Option(help="Run name (default: the file's stem).")] = None,
           tag: Annotated[Optional[list[str]], typer.Option(help="A tag; repeat for more.")] = None,
           priority: Annotated[int, typer.Option(help="Higher is claimed first.")] = 0,
           max_restarts: Annotated[Optional[int], typer.Option(min=0, max=100)] = None,
           as_json: Json = False) -> None:
    """Queue a run of RECIPE; prints its id."""
    with session(ctx) as sala:
        run = sala.create_run(recipe.read_text(encoding="utf-8"), name=name or recipe.stem, tags=tag or [],
                              priority=priority, max_restarts=max_restarts)
    emit(run) if as_json else out.print(f"run {run.id} {run.status}: {run.name}")


@app.command()
def edit(ctx: typer.Context, run_id: RunId, name: Annotated[Optional[str], typer.Option()] = None,
         tag: Annotated[Optional[list[str]], typer.Option(help="The run's tags (replacing them); repeat.")] = None,
         clear_tags: Annotated[bool, typer.Option(help="Remove every tag.")] = False,
         note: Annotated[Optional[str], typer.Option(help="A markdown note (replacing it); '' clears it.")] = None,
         note_file: Annotated[Optional[Path], typer.Option(help="The note from a file.", exists=True)] = None) -> None:
    """Change a run's name, tags or note (any state; audited)."""
    changes: dict[str, Any] = {"name": name, "tags": [] if clear_tags else tag,
                               "note": note_file.read_text(encoding="utf-8") if note_file else note}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise typer.BadParameter("give --name, --tag, --clear-tags, --note or --note-file")
    with session(ctx) as sala:
        run = sala.update_run(run_id, **changes)
    out.print(f"run {run.id}: {run.name} [{', '.join(run.tags)}]")


def _accepted(ctx: typer.Context, call: Callable[[SalaClient], Any]) -> None:
    with session(ctx) as sala:
        answer = call(sala)
    run = answer.run
    out.print(f"run {run.id} {run.status}, stage {run.stage.index} {run.stage.name}"
              f"{' (held)' if run.stage_held else ''}, lr {run.lr.effective:.3e} (event {answer.event_id})")


@app.command()
def stop(ctx: typer.Context, run_id: RunId, reason: Reason = None) -> None:
    """Stop a run (a running one checkpoints first)."""
    _accepted(ctx, lambda s: s.stop(run_id, reason))


@app.command()
def pause(ctx: typer.Context, run_id: RunId, reason: Reason = None) -> None:
    """Pause a run (a running one checkpoints and is released)."""
    _accepted(ctx, lambda s: s.pause(run_id, reason))


@app.command()
def resume(ctx: typer.Context, run_id: RunId) -> None:
    """Queue a paused run again."""
    _accepted(ctx, lambda s: s.resume(run_id))


@app.command()
def checkpoint(ctx: typer.Context, run_id: RunId) -> None:
    """Ask the worker training a run to save a checkpoint at its next step."""
    _accepted(ctx, lambda s: s.request_checkpoint(run_id))


@app.command()
def stage(ctx: typer.Context, run_id: RunId,
          to: Annotated[Optional[str], typer.Argument(help="Stage number (from 1) or name to jump to.")] = None,
          advance: Annotated[bool, typer.Option("--advance", help="Move to the next stage.")] = False,
          hold: Annotated[Optional[bool], typer.Option("--hold/--release", help="Stop or allow automatic moves.")]
          = None,
          reason: Reason = None, as_json: Json = False) -> None:
    """Jump to a stage, advance, hold or release; with none of them, show the stages."""
    if sum([to is not None, advance, hold is not None]) > 1:
        raise typer.BadParameter("give one of TO, --advance or --hold/--release")
    if to is not None:
        return _accepted(ctx, lambda s: s.set_stage(run_id, int(to) if to.isdigit() else to, reason))
    if advance:
        return _accepted(ctx, lambda s: s.advance_stage(run_id, reason))
    if hold is not None:
        return _accepted(ctx, lambda s: s.hold_stage(run_id, hold))
    with session(ctx) as sala:
        stages = sala.stages(run_id)
    if as_json:
        return emit(stages)
    table = Table("", "stage", "content", "threshold", "epochs", box=None)
    for s in stages.stages:
        here = "→" if s["index"] == stages.current.index else ""
        table.add_row(here, f"{s['index']} {s['name']}", s["content"], f"{s['metric'] or 'default'} ≥ "
                      f"{s['success_threshold']}", f"{s['min_epochs']}–{s['max_epochs']}")
    out.print(table)
    out.print(f"held: {stages.held}; transitions: {len(stages.transitions)}")


@app.command()
def lr(ctx: typer.Context, run_id: RunId,
       scale: Annotated[Optional[float], typer.Option(help="Set the override scale (it does not compound).")] = None,
       set_lr: Annotated[Optional[float], typer.Option("--set", help="An absolute lr until cleared.")] = None,
       clear: Annotated[bool, typer.Option("--clear", help="Remove the override.")] = False,
       reason: Reason = None, as_json: Json = False) -> None:
    """Scale, set or clear the lr override; with none of them, show the lr and its parts."""
    if sum([scale is not None, set_lr is not None, clear]) > 1:
        raise typer.BadParameter("give one of --scale, --set or --clear")
    if scale is not None or set_lr is not None or clear:
        return _accepted(ctx, lambda s: s.set_lr(run_id, lr=set_lr, scale=scale, clear=clear, reason=reason))
    with session(ctx) as sala:
        parts = sala.lr(run_id)
    if as_json:
        return emit(parts)
    schedule = "–" if parts.schedule is None else f"{parts.schedule:.3e}"
    out.print(f"effective {parts.effective:.3e} = schedule {schedule} (base {parts.base_lr:.3e}) "
              f"× stage {parts.stage_multiplier} × override {json.dumps(parts.override)} × automatic {parts.auto_scale}")


@app.command()
def fork(ctx: typer.Context, run_id: RunId,
         checkpoint_id: Annotated[Optional[int], typer.Option("--checkpoint", help="Start from this checkpoint.")]
         = None,
         patch: Annotated[Optional[str], typer.Option(help="Recipe patch as JSON, e.g. '{\"optimizer\": {\"lr\": 5e-4}}'.")]
         = None,
         name: Annotated[Optional[str], typer.Option()] = None) -> None:
    """A new queued run from this one, its recipe patched."""
    try:
        recipe_patch = json.loads(patch) if patch else None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--patch") from None
    with session(ctx) as sala:
        child = sala.fork(run_id, checkpoint_id=checkpoint_id, recipe_patch=recipe_patch, name=name)
    out.print(f"run {child.id} {child.status}: {child.name} (fork of {run_id})")


@app.command()
def delete(ctx: typer.Context, run_id: RunId,
           yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete a queued, paused or finished run with its checkpoint files."""
    if not yes:
        typer.confirm(f"Delete run {run_id} and its checkpoint files?", abort=True)
    with session(ctx) as sala:
        sala.delete_run(run_id)
    out.print(f"run {run_id} deleted")


@app.command()
def watch(ctx: typer.Context, run_id: RunId,
          interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
          once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False) -> None:
    """A live view of a run: status, stage and threshold, epoch and step, lr, last epochs, ETA."""
    from sala.watch import follow

    with session(ctx) as sala:
        follow(sala, run_id, out, interval=interval, once=once)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)
