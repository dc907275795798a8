"""`sala recipe …`: write, check and expand training recipes without a server.

Exit codes: 0 fine, 1 the recipe has problems (or init would overwrite), 2 unreadable input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.recipe import Recipe, RecipeError, RecipeParseError, dump_commented_yaml, load_recipe, preset

app = typer.Typer(no_args_is_help=True)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _load(file: Path) -> Recipe:
    """Load a recipe or exit: 2 when it cannot be read as YAML/JSON, 1 listing every problem."""
    try:
        return load_recipe(file)
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}", 2) from None
    except RecipeParseError as exc:
        raise _fail(f"{file}: {exc.problems[0][1]}", 2) from None
    except RecipeError as exc:
        lines = [f"{file}: {len(exc.problems)} problem(s)"]
        lines += [f"  {path or '(recipe)'}: {message}" for path, message in exc.problems]
        raise _fail("\n".join(lines), 1) from None


def summary(recipe: Recipe) -> str:
    """One screen a person can check against their intent before submitting the run."""
    t = recipe.training
    stages = " → ".join(s.name for s in recipe.curriculum.stages)
    tasks = ", ".join(f"{task.type}×{task.weight:g}" for task in recipe.tasks if task.enabled)
    return "\n".join([
        f"recipe:  {recipe.name} (seed {recipe.seed})",
        f"stages:  {len(recipe.curriculum.stages)} judged on {recipe.curriculum.metric}: {stages}",
        f"tasks:   {tasks} ({recipe.task_weighting} weighting)",
        f"steps:   {t.steps_per_epoch} per epoch × up to {t.max_epochs} epochs, "
        f"batch {t.batch_size} × {t.accumulation_steps} accumulation, {t.precision} precision",
        f"lr:      {recipe.optimizer.name} {recipe.optimizer.lr:g}, {recipe.scheduler.name}",
    ])


@app.command()
def init(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write here instead of stdout")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
    preset_name: Annotated[str, typer.Option("--preset", help="default (sized for CPU) | large (for a GPU)")] = "default",
) -> None:
    """Write the default Khmer recipe (or a preset) as commented YAML."""
    try:
        text = dump_commented_yaml(preset(preset_name))
    except KeyError as exc:
        raise _fail(str(exc.args[0]), 1) from None
    if out is None:
        typer.echo(text, nl=False)
        return
    if out.exists() and not force:
        raise _fail(f"{out} exists; pass --force to overwrite it", 1)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}", err=True)


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="recipe, YAML or JSON")]) -> None:
    """Check a recipe and print every problem with its field path."""
    recipe = _load(file)
    typer.echo("OK")
    typer.echo(summary(recipe))


@app.command()
def show(file: Annotated[Path, typer.Argument(help="recipe, YAML or JSON")]) -> None:
    """Print the recipe with every default filled in, as JSON."""
    typer.echo(json.dumps(_load(file).model_dump(mode="json"), indent=2, ensure_ascii=False))
