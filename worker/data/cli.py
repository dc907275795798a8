"""`sala data`: look at training data before training."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, track
from rich.table import Table

from worker.data.real import LABELS, scan_folder
from worker.data.text import CONTENTS
from worker.khmer import CHARACTERS, LEVEL_CONTENTS, Category, categorize

app = typer.Typer(no_args_is_help=True)
console = Console()
# The default recipe's augmentation probability per content.
DEFAULT_AUGMENTATION = {"characters": 0.2, "combinations": 0.3, "complex": 0.4, "words": 0.5, "lines": 0.6}


def _content(stage: str) -> str:
    if stage.isdigit() and int(stage) in LEVEL_CONTENTS:
        return LEVEL_CONTENTS[int(stage)]
    if stage in CONTENTS:
        return stage
    raise typer.BadParameter(f"expected 1-5 or one of {', '.join(CONTENTS)}")


@app.command()
def preview(
    stage: Annotated[str, typer.Option(help="1-5 or a content name: " + ", ".join(CONTENTS))],
    out: Annotated[Path, typer.Option(help="folder to write PNGs and labels.jsonl into")],
    count: Annotated[int, typer.Option(min=1)] = 32,
    font: Annotated[Optional[list[str]], typer.Option(help="font spec (noto-sans-khmer, system, a file or folder); "
                                                      "repeatable; default: the default recipe's")] = None,
    corpus: Annotated[Optional[Path], typer.Option(help="UTF-8 word/line file for words and lines")] = None,
    seed: int = 0,
    height: int = 32,
    augmentation: Annotated[Optional[float], typer.Option(help="probability; default: the default recipe's")] = None,
    validation: Annotated[bool, typer.Option("--validation", help="draw the validation set: held-out fonts and "
                                             "text, never augmented")] = False,
) -> None:
    """Write sample images with a labels.jsonl in the real-data format, and all of them on sheet.png."""
    from PIL import Image

    from worker.data.dataset import DataSources, build_train_dataset, build_val_dataset
    from core.recipe import Recipe

    content = _content(stage)
    p = DEFAULT_AUGMENTATION[content] if augmentation is None else augmentation
    default = Recipe()
    sources = DataSources.create(fonts=font or default.data.synthetic.fonts, val_fonts=default.validation.fonts,
                                 corpus=corpus, image_height=height)
    dataset = (build_val_dataset(sources, content, seed=seed, samples=count) if validation else
               build_train_dataset(sources, content, epoch=0, seed=seed, length=count, augmentation=p))
    out.mkdir(parents=True, exist_ok=True)
    images = []
    with (out / LABELS).open("w", encoding="utf-8") as labels:
        for i in track(range(count), description=f"rendering {content}", console=console):
            sample = dataset[i]
            name = f"{content}_{i:05d}.png"
            pixels = (255 - sample["image"][0].numpy() * 255).round().astype("uint8")  # dark ink on light, as scanned
            images.append(Image.fromarray(pixels))
            images[-1].save(out / name)
            labels.write(json.dumps({"image": name, "text": sample["text"]}, ensure_ascii=False) + "\n")
    contact_sheet(images).save(out / "sheet.png")
    console.print(f"wrote {count} {content} samples and sheet.png to {out}")


def contact_sheet(images: list, width: int = 1024, gap: int = 4):
    """All images on one grey page, in rows of equal cells, to look at a preview in one go."""
    from PIL import Image

    cell_w = max(i.width for i in images) + gap
    cell_h = max(i.height for i in images) + gap
    columns = max(1, min(len(images), width // cell_w))
    rows = -(-len(images) // columns)
    sheet = Image.new("L", (columns * cell_w + gap, rows * cell_h + gap), 128)
    for n, image in enumerate(images):
        sheet.paste(image, (gap + n % columns * cell_w, gap + n // columns * cell_h))
    return sheet


@app.command()
def stats(folder: Path) -> None:
    """Charset coverage, stage histogram, labels changed by normalisation and bad rows of a real dataset."""
    report = scan_folder(folder)
    console.print(f"{folder}: {len(report.rows)} good rows, {len(report.bad)} bad", soft_wrap=True)
    console.print(f"{report.normalized} of {len(report.rows)} labels changed by normalisation")
    histogram = Counter(r.level for r in report.rows)
    table = Table("stage", "content", "rows")
    for level, content in LEVEL_CONTENTS.items():
        table.add_row(str(level), content, str(histogram.get(level, 0)))
    console.print(table)
    _coverage(report.rows)
    if report.bad:
        bad = Table("line", "image", "reason", title="bad rows (skipped)")
        for b in report.bad:
            bad.add_row(str(b.line), str(b.image), b.reason)
        console.print(bad)


@app.command()
def fonts(
    recipe: Annotated[Optional[Path], typer.Argument(help="recipe YAML/JSON; default: the default recipe")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """List the training and validation fonts a recipe resolves to on this machine."""
    from worker.data.fonts import plan
    from core.recipe import Recipe, RecipeError, load_recipe
    from worker.khmer import CHARACTERS

    try:
        spec = load_recipe(recipe) if recipe else Recipe()
    except (RecipeError, OSError) as exc:
        console.print(f"{recipe}: {exc}")
        raise typer.Exit(1) from None
    synthetic = spec.data.synthetic
    try:
        found = plan(synthetic.fonts if synthetic else None, spec.validation.fonts)
    except (ValueError, FileNotFoundError) as exc:
        console.print(str(exc))
        raise typer.Exit(1) from None
    rows = [{"use": use, "design": f.design, "face": f.name, "file": str(f.path),
             "axes": {a.tag: [a.minimum, a.maximum] for a in f.axes}, "missing": f.missing(CHARACTERS)}
            for use, faces in (("train", found.train), ("validation", found.val if found.held_out else []))
            for f in faces]
    if json_output:
        typer.echo(json.dumps({"fonts": rows, "held_out": found.held_out, "warnings": found.warnings},
                              ensure_ascii=False, indent=2))
        return
    table = Table("use", "design", "face", "file", "axes", "cannot draw")
    for r in rows:
        axes = ", ".join(f"{t} {lo:g}-{hi:g}" for t, (lo, hi) in r["axes"].items())
        table.add_row(r["use"], r["design"], r["face"], r["file"], axes, r["missing"] or "-")
    console.print(table)
    designs = {use: len({r["design"] for r in rows if r["use"] == use}) for use in ("train", "validation")}
    console.print(f"{designs['train']} training designs; " + (
        f"{designs['validation']} held-out validation designs" if found.held_out else "validation uses the training fonts"))
    for warning in found.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)


@app.command()
def corpus(
    out: Annotated[Path, typer.Option(help="corpus file to write (.gz compresses)")],
    tessdata: Annotated[Optional[Path], typer.Option(
        help="a Tesseract model whose word list to take, e.g. " + "/usr/share/tesseract-ocr/5/tessdata/khm.traineddata")] = None,
    text: Annotated[Optional[list[Path]], typer.Option(help="UTF-8 text file, one word or line per line; repeatable")] = None,
    builtin: Annotated[bool, typer.Option(help="include the built-in word list")] = True,
) -> None:
    """Build a corpus for the word and line stages: normalised, checked against the alphabet, deduplicated.

    The bundled corpus is `sala data corpus --tessdata .../khm.traineddata --out worker/data/corpus/khmer-words.txt.gz`.
    """
    from worker.data.corpus import CorpusError, build_corpus, is_held_out

    if tessdata is None and not text and not builtin:
        raise typer.BadParameter("give --tessdata, --text or --builtin")
    try:
        report = build_corpus(out, tessdata=tessdata, texts=list(text or []), builtin=builtin)
    except CorpusError as exc:
        console.print(str(exc), soft_wrap=True)
        raise typer.Exit(1) from None
    from worker.data.corpus import read_texts

    held = sum(map(is_held_out, read_texts(out)))
    dropped = ", ".join(f"{n} {why}" for why, n in report.dropped.most_common()) or "none"
    console.print(f"read {report.read} entries, wrote {report.kept} to {out} ({held} held out for validation); "
                  f"dropped: {dropped}", soft_wrap=True)


@app.command()
def bench(
    out: Annotated[Path, typer.Option(help="folder to write OUT/clean and OUT/degraded into")],
    lines: Annotated[int, typer.Option(min=1, help="lines per set")] = 300,
    seed: int = 0,
    content: Annotated[str, typer.Option(help="lines | words")] = "lines",
) -> None:
    """Render the held-out benchmark: held-out corpus text in the held-out fonts, clean and degraded."""
    from worker.data.bench import SETS, write_bench

    if content not in ("lines", "words"):
        raise typer.BadParameter("lines or words", param_hint="--content")
    with Progress(TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("bench", total=lines)
        try:
            written = write_bench(out, lines=lines, seed=seed, content=content, on_line=lambda: bar.advance(task))
        except ValueError as exc:
            console.print(str(exc), soft_wrap=True)
            raise typer.Exit(1) from None
    fonts = Counter(line.font for line in written)
    console.print(f"wrote {len(written)} {content} per set to " + ", ".join(str(out / s) for s in SETS)
                  + "; fonts: " + ", ".join(f"{f} {n}" for f, n in sorted(fonts.items())), soft_wrap=True)


def _coverage(rows) -> None:
    seen = Counter(ch for r in rows for ch in r.text)
    total = Counter(Category(c).name for c in categorize(CHARACTERS))
    covered = Counter(Category(c).name for c in categorize("".join(seen)))
    table = Table("category", "characters seen", "in charset", title=f"charset coverage: {len(seen)}/{len(CHARACTERS)}")
    for name in total:
        table.add_row(name.lower(), str(covered.get(name, 0)), str(total[name]))
    console.print(table)
    missing = [ch for ch in CHARACTERS if "\u1780" <= ch <= "\u17a2" and ch not in seen]
    if missing:
        console.print("consonants never seen: " + " ".join(missing), soft_wrap=True)
