"""`sala data`: look at training data before training."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import track
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
    font: Annotated[Optional[list[str]], typer.Option(help="bundled font name, font file or folder; repeatable")] = None,
    corpus: Annotated[Optional[Path], typer.Option(help="UTF-8 word/line file for words and lines")] = None,
    seed: int = 0,
    height: int = 32,
    augmentation: Annotated[Optional[float], typer.Option(help="probability; default: the default recipe's")] = None,
) -> None:
    """Write sample images with a labels.jsonl in the real-data format, and all of them on sheet.png."""
    from PIL import Image

    from worker.data.dataset import DataSources, build_train_dataset

    content = _content(stage)
    p = DEFAULT_AUGMENTATION[content] if augmentation is None else augmentation
    sources = DataSources.create(fonts=font, corpus=corpus, image_height=height)
    dataset = build_train_dataset(sources, content, epoch=0, seed=seed, length=count, augmentation=p)
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
    """Charset coverage, stage histogram and bad rows of a real dataset (images + labels.jsonl)."""
    report = scan_folder(folder)
    console.print(f"{folder}: {len(report.rows)} good rows, {len(report.bad)} bad", soft_wrap=True)
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
