"""``redblue demo``: the quick tour on the embedded default model."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from redblue.cli._common import load_model, settings, write_json


def demo(
    ctx: typer.Context,
    max_new_tokens: Annotated[int, typer.Option(help="Length of each demo answer.")] = 48,
    n_chat: Annotated[
        int, typer.Option(help="How many harmful and how many harmless requests to answer.")
    ] = 2,
) -> None:
    """The quick tour: load a model, inspect it, let it answer, look inside.

    Loads the model (default: the embedded organism), shows its architecture row and chat
    template, lets it answer paired harmful and harmless requests, and shows how the two
    kinds separate in the residual stream layer by layer. Writes OUT/demo.json.

    Example: redblue demo          (or: redblue --model ./my-model demo)
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from redblue.demo import run_demo

    cfg = settings(ctx)
    console = Console()
    start = time.perf_counter()
    with console.status(f"loading {cfg.model} ..."):
        model, tokenizer = load_model(cfg)
    console.print(f"loaded [bold]{cfg.model}[/] in {time.perf_counter() - start:.1f}s")
    result = run_demo(
        model,
        tokenizer,
        source=cfg.model,
        n_chat=n_chat,
        max_new_tokens=max_new_tokens,
        seed=cfg.seed,
    )

    info = result.model
    console.rule("1. the model layer")
    console.print(
        f"{info.class_name}: family [bold]{info.family}[/], {info.n_layers} layers, d_model {info.d_model}, "
        f"{info.n_params / 1e6:.1f}M parameters, {info.dtype} on {info.device}"
    )
    console.print("chat template renders:", escape(repr(info.example_prompt)))
    console.print(
        "post-instruction tokens:",
        escape(" ".join(repr(t) for t in info.post_instruction_tokens)),
    )

    console.rule("2. answers (greedy)")
    for c in result.completions:
        console.print(f"[bold]user:[/] {escape(c.instruction)}")
        console.print(f"[bold]model:[/] {escape(c.text.strip()[:400])}\n")

    console.rule("3. inside: harmful vs harmless in the residual stream")
    table = Table("layer", "separation", "")
    top = max(result.separation) or 1.0
    for layer, value in enumerate(result.separation):
        table.add_row(str(layer), f"{value:.3f}", "#" * round(30 * value / top))
    console.print(table)
    console.print(
        f"|mean(harmful) - mean(harmless)| / mean |activation| at the last prompt token, "
        f"{result.n_harmful} + {result.n_harmless} prompts; peak at layer {result.peak_layer}."
    )
    path = write_json(cfg.out / "demo.json", result.to_dict())
    console.print(f"wrote {path}")
