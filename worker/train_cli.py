"""`sala train` and `sala predict`: training and reading without a server.

`server.cli` registers both on the top-level app; this module's own ``app`` carries both too.
Exit codes: 0 done (completed, paused or stopped), 1 bad recipe or input, 2 unreadable file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(no_args_is_help=True, help="Train and read Khmer lines without a server.")
console = Console(stderr=True)


@app.command("train")
def train_command(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML or JSON", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="folder for checkpoints and metrics.jsonl")],
    resume: Annotated[Optional[str], typer.Option(help="checkpoint path or URL to continue from")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu | cuda | auto (default: the recipe's)")] = None,
    progress: Annotated[bool, typer.Option(help="draw a progress bar")] = True,
) -> None:
    """Train RECIPE with the curriculum run in process; writes OUT/metrics.jsonl and OUT/checkpoints/."""
    from core.recipe import RecipeError, load_recipe

    try:
        spec = load_recipe(recipe)
    except RecipeError as exc:
        console.print(f"{recipe}: {exc}")
        raise typer.Exit(1) from None
    status = _train(spec, out, resume, device, progress)
    typer.echo(f"{status}: metrics in {out / 'metrics.jsonl'}, checkpoints in {out / 'checkpoints'}")


def _train(spec, out: Path, resume: str | None, device: str | None, progress: bool) -> str:
    from worker.checkpoints import load_checkpoint
    from worker.local import LocalController
    from worker.trainer import Trainer

    t = spec.training
    bar = Progress(TextColumn("{task.fields[stage]}"), TextColumn("epoch {task.fields[epoch]}/" + str(t.max_epochs)),
                   BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                   console=console, disable=not progress)
    task = bar.add_task("train", total=t.steps_per_epoch, stage=spec.curriculum.stages[0].name, epoch=1, info="")
    cer = {"value": float("nan")}

    def on_step(step: int, scalars: dict[str, float]) -> None:
        done = (step - 1) % t.steps_per_epoch + 1
        bar.update(task, completed=done, info=f"loss {scalars['loss']:.3f} lr {scalars['lr']:.2e} CER {cer['value']:.3f}")

    def on_epoch(summary, directive) -> None:
        cer["value"] = summary.metrics.get("val_cer", cer["value"])
        bar.update(task, completed=0, epoch=summary.epoch + 1, stage=spec.curriculum.stages[directive.stage_index].name)
        console.log(f"epoch {summary.epoch} [{spec.curriculum.stages[summary.stage_index].name}] "
                    f"loss {summary.metrics.get('train_loss', float('nan')):.3f} "
                    f"CER {summary.metrics.get('val_cer', float('nan')):.3f} "
                    f"seq acc {summary.metrics.get('val_sequence_accuracy', float('nan')):.3f}")

    hooks = {"on_step": on_step, "on_epoch": on_epoch}
    if resume:
        state = load_checkpoint(resume)
        pos = state["position"]
        controller = LocalController.resume(spec, out, epoch=pos["epoch"], stage=pos["stage"], **hooks)
    else:
        controller = LocalController(spec, out, **hooks)
    try:
        with bar:
            status = controller.train(lambda: Trainer(spec, controller, out, device=device), resume=resume)
    except KeyboardInterrupt:
        controller.finish("stopped", "interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        controller.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    controller.finish(status)
    return status


# Decoding defaults of `sala predict` and `sala eval`, chosen by measurement (docs/TRAINING.md, "Decoding").
DECODER, BEAM_WIDTH, LM_WEIGHT, LENGTH_BONUS = "beam", 10, 0.3, 2.0
Decoder = Annotated[str, typer.Option(help="greedy | beam (beam fuses the LM head when present)")]
BeamWidth = Annotated[int, typer.Option(min=1, max=100, help="prefixes kept per frame")]
LmWeight = Annotated[float, typer.Option(min=0.0, help="alpha: weight of the LM's log-probability")]
LengthBonus = Annotated[float, typer.Option(help="beta: score added per character read")]


@app.command("predict")
def predict_command(
    images: Annotated[Optional[list[Path]], typer.Argument(help="line images; none = read paths from stdin")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="checkpoint path or URL")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="a model `sala export` wrote (.onnx or "
                                                  "TorchScript), read without the training code")] = None,
    decoder: Annotated[Optional[str], typer.Option(
        help=f"greedy | beam (fuses the LM head); default: {DECODER} for a checkpoint, greedy for --model")] = None,
    beam_width: BeamWidth = BEAM_WIDTH,
    lm_weight: LmWeight = LM_WEIGHT,
    length_bonus: LengthBonus = LENGTH_BONUS,
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
) -> None:
    """Print `path<TAB>text<TAB>confidence` for each line image, read by a checkpoint or an exported model."""
    if decoder not in (None, "greedy", "beam"):
        raise typer.BadParameter("greedy or beam", param_hint="--decoder")
    if (checkpoint is None) == (model is None):
        raise typer.BadParameter("give exactly one of --checkpoint or --model")
    if model is not None and decoder == "beam":
        raise typer.BadParameter("an exported model decodes greedily (beam search needs the LM head)",
                                 param_hint="--decoder")
    paths = images or [Path(line.strip()) for line in sys.stdin if line.strip()]
    reader = _exported(model) if model is not None else open_reader(
        checkpoint, device=device, decoder=decoder or DECODER, beam_width=beam_width, lm_weight=lm_weight,
        length_bonus=length_bonus)
    failed = 0
    for path in paths:
        try:
            text, confidence = reader.read(path)
        except OSError as exc:
            console.print(f"{path}: {exc}")
            failed += 1
            continue
        typer.echo(f"{path}\t{text}\t{confidence:.4f}")
    if failed:
        raise typer.Exit(1)


def _exported(path: Path):
    from worker.exported import ExportedReader

    try:
        return ExportedReader(path)
    except ImportError as exc:
        console.print(str(exc))
        raise typer.Exit(2) from None
    except (OSError, ValueError) as exc:
        console.print(f"cannot load {path}: {exc}")
        raise typer.Exit(2) from None


def open_reader(checkpoint: str, **options) -> Reader:
    """A Reader; a usage error on an unknown decoder, exit 2 with the reason when the checkpoint cannot be loaded."""
    from worker.checkpoints import CheckpointCorrupt

    if options.get("decoder") not in ("greedy", "beam"):
        raise typer.BadParameter("greedy or beam", param_hint="--decoder")
    try:
        return Reader(checkpoint, **options)
    except (OSError, CheckpointCorrupt) as exc:
        console.print(f"cannot load {checkpoint}: {exc}")
        raise typer.Exit(2) from None


class Reader:
    """A checkpoint's model reading one line image at a time."""

    def __init__(self, checkpoint: str, *, device: str = "cpu", decoder: str = DECODER, beam_width: int = BEAM_WIDTH,
                 lm_weight: float = LM_WEIGHT, length_bonus: float = LENGTH_BONUS) -> None:
        from worker.trainer import load_model

        self.model, state = load_model(checkpoint, device)
        self.height = state["model_config"]["image_height"]
        self.device, self.decoder = device, decoder
        self.beam_width, self.lm_weight, self.length_bonus = beam_width, lm_weight, length_bonus

    def read(self, path: Path) -> tuple[str, float]:
        """The text and a confidence in [0, 1]: the confidence head's, else the best path's mean probability."""
        import math

        import torch

        from worker.decode import greedy_decode
        from worker.khmer import decode

        out = self.forward(path)
        sequences, _ = self.decode(out["logits"], out["lengths"])
        if "confidence_logit" in out:
            confidence = float(torch.sigmoid(out["confidence_logit"][0]))
        else:  # not the beam's score: its LM and length terms are no probability
            _, best = greedy_decode(out["logits"], out["lengths"])
            confidence = math.exp(float(best[0]) / max(1, int(out["lengths"][0])))
        return decode(sequences[0]), confidence

    def forward(self, path: Path) -> dict:
        """The model's outputs for one line image, scaled to the model's height."""
        import numpy as np
        import torch

        from worker.data.real import load_line_image

        image = load_line_image(Path(path), self.height, 32)
        pixels = torch.from_numpy(np.asarray(image, np.float32) / 255.0)[None, None].to(self.device)
        with torch.no_grad():
            return self.model(pixels, torch.tensor([pixels.shape[-1]]))

    def decode(self, logits, lengths):
        """Sequences and scores by this reader's decoder (`worker.decode`)."""
        from worker.decode import beam_search, greedy_decode

        if self.decoder == "greedy":
            return greedy_decode(logits, lengths)
        lm = self.model.heads["language_modeling"] if "language_modeling" in self.model.heads else None
        return beam_search(logits, lengths, self.beam_width, lm, self.lm_weight, self.length_bonus)
