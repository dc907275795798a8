"""`sala eval`: a checkpoint (and, with --tesseract, Tesseract's `khm` model) scored on a labelled folder.

Exit codes: 0 scored, 1 bad folder or rows, a missing Tesseract or a bad option, 2 unreadable checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from worker.train_cli import BEAM_WIDTH, DECODER, LENGTH_BONUS, LM_WEIGHT, BeamWidth, Decoder, LengthBonus, LmWeight

console = Console(stderr=True)


def eval_command(
    folder: Annotated[Path, typer.Argument(help="line images with a labels.jsonl (the real-data format)")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="checkpoint path or URL")] = ...,  # type: ignore[assignment]
    json_output: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
    with_tesseract: Annotated[bool, typer.Option("--tesseract", help="also score `tesseract -l khm --psm 7`")] = False,
    decoder: Decoder = DECODER,
    beam_width: BeamWidth = BEAM_WIDTH,
    lm_weight: LmWeight = LM_WEIGHT,
    length_bonus: LengthBonus = LENGTH_BONUS,
    limit: Annotated[Optional[int], typer.Option(min=1, help="score only the first N good rows")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="score the good rows of a folder with bad ones")] = False,
    jobs: Annotated[Optional[int], typer.Option(min=1, help="Tesseract processes at once (default: the CPU count)")] = None,
    readings: Annotated[Optional[Path], typer.Option(help="write each line's truth and readings here (JSONL)")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    progress: Annotated[bool, typer.Option(help="draw a progress bar")] = True,
) -> None:
    """CER over code points and over clusters and line accuracy, overall and per font/set/source label."""
    import torch

    from worker.evaluation import EvaluationError, check_tesseract, load_lines, score, tesseract, timed
    from worker.train_cli import open_reader

    try:
        lines, report = load_lines(folder, skip_bad=skip_bad, limit=limit)
        if with_tesseract:
            check_tesseract()
    except EvaluationError as exc:
        console.print(str(exc), soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    reader = open_reader(checkpoint, device=device, decoder=decoder, beam_width=beam_width, lm_weight=lm_weight,
                         length_bonus=length_bonus)
    torch.set_num_threads(1)  # one thread per reader, as Tesseract gets: ms per line compare per core
    readers = {"sala": (timed(lambda p: reader.read(p)[0]), 1)}
    if with_tesseract:
        readers["tesseract"] = (timed(tesseract), jobs or os.cpu_count() or 1)
    found = _read([line.image for line in lines], readers, progress)
    result = {"folder": str(folder), "lines": len(lines), "skipped_bad_rows": len(report.bad),
              "decoding": {"decoder": decoder, "beam_width": beam_width, "lm_weight": lm_weight,
                           "length_bonus": length_bonus},
              "readers": {name: score(lines, reads) for name, reads in found.items()}}
    if readings:
        _write_readings(readings, lines, found)
    if json_output:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        Console().print(_table(result))


def _read(paths: list[Path], readers: dict, progress: bool) -> dict[str, list]:
    """Each reader's readings of every path (reader name -> (read, processes at once)), with a bar each."""
    from worker.evaluation import read_all

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=not progress)
    found = {}
    with bar:
        for name, (read, jobs) in readers.items():
            task = bar.add_task(name, total=len(paths))
            found[name] = read_all(read, paths, jobs=jobs, on_line=lambda t=task: bar.advance(t))
    return found


def _table(result: dict) -> Table:
    numbers = [Column(h, justify="right", no_wrap=True, min_width=len(h)) for h in
               ("lines", "CER", "cluster CER", "line acc", "ms/line")]
    table = Table("reader", Column("lines of", overflow="fold"), *numbers,
                  title=f"{result['folder']}: {result['lines']} lines")
    for name, scores in result["readers"].items():
        table.add_row(name, "all", *_cells(scores["overall"]), style="bold")
        for key, values in scores["by"].items():
            for value, s in values.items() if len(values) > 1 else ():  # one value says nothing new
                table.add_row("", f"{key}: {value}", *_cells(s))
    return table


def _cells(s: dict) -> list[str]:
    return [str(s["lines"]), f"{s['cer']:.4f}", f"{s['cluster_cer']:.4f}", f"{s['line_accuracy']:.3f}",
            f"{s['ms_per_line']:.1f}"]


def _write_readings(path: Path, lines, found: dict[str, list]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, line in enumerate(lines):
            row = {"image": str(line.image), "text": line.text, **line.groups}
            row |= {name: reads[i].text for name, reads in found.items()}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
