"""`sala export`: the command; the work is in worker/export.py (imported only when it runs, so the
other `sala` commands do not wait for torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

FORMATS = ("onnx", "torchscript")


def export_command(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="checkpoint path or URL")],
    fmt: Annotated[str, typer.Option("--format", help="onnx | torchscript")],
    out: Annotated[Path, typer.Option("--out", help="file to write")],
    images: Annotated[Optional[list[Path]], typer.Argument(help="sample line images to verify on "
                                                           "(default: validation lines of the last stage)")] = None,
    samples: Annotated[int, typer.Option(min=1, max=256, help="sample lines rendered when no images are given")] = 8,
) -> None:
    """Export a checkpoint's reader (ONNX or TorchScript) and verify it reads as the checkpoint does."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"one of {', '.join(FORMATS)}", param_hint="--format")
    from worker.export import TOLERANCE, export

    try:
        check = export(checkpoint, fmt, out, images=images, samples=samples)
    except (ImportError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    verdict = (f"{check.lines} sample lines: max |Δ log-prob| {check.max_diff:.2e}, |Δ confidence| "
               f"{check.confidence_diff:.2e} (tolerance {TOLERANCE:g}), same text {check.same_text}/{check.lines}")
    if not check.ok:
        typer.echo(f"error: the exported model reads differently; not kept. {verdict}", err=True)
        raise typer.Exit(1)
    typer.echo(f"wrote {out} ({fmt}); {verdict}")
