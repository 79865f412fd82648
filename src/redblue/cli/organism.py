"""``redblue organism``: build the model organism, a small chat model with known safety behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redblue.cli._common import settings
from redblue.organism.recipe import DEFAULT_RECIPE, RECIPES

app = typer.Typer(
    help="Build the model organism (a small chat model trained from scratch on a CPU).",
    no_args_is_help=True,
)


@app.command("build")
def build(
    ctx: typer.Context,
    size: Annotated[
        str, typer.Option(help="tiny (about 2 min, for tests) or small (the embedded default).")
    ] = "small",
    out: Annotated[
        Path | None, typer.Option(help="Folder for the model (default OUT/organism-SIZE-seedN).")
    ] = None,
    recipe: Annotated[
        int,
        typer.Option(
            help=f"Recipe version, 1 to {max(RECIPES)}: {DEFAULT_RECIPE} built the embedded "
            "organism; each one is described in docs/organism.md and measured side by side in "
            "the README (benchmarks/organism.py --recipe N)."
        ),
    ] = DEFAULT_RECIPE,
) -> None:
    """Generate the synthetic corpus, train a tokenizer and a Llama-architecture model from scratch.

    Writes a plain Hugging Face folder (safetensors + tokenizer with chat template), the
    held-out prompt splits under splits/, and organism.json. Interrupted? Run the same
    command again: it resumes from the last checkpoint in OUT.partial.

    Example: redblue --seed 1 organism build --size tiny --out ./organism-tiny
    """
    from redblue.organism.build import build_organism

    cfg = settings(ctx)
    tag = "" if recipe == 1 else f"-r{recipe}"
    folder = out or cfg.out / f"organism-{size}{tag}-seed{cfg.seed}"
    result = build_organism(folder, size=size, seed=cfg.seed, recipe=recipe)
    assert result is not None
    typer.echo(
        f"built {result.size} organism (recipe {result.recipe}, seed {result.seed}, "
        f"{result.n_params:,} parameters, "
        f"{result.steps} steps, final loss {result.final_loss:.3f}) in {result.seconds:.0f}s -> {result.out}"
    )
