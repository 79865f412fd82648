"""``redblue demo``: the quick tour on the embedded default model."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from redblue.cli._common import load_model, settings, write_json


def demo(
    ctx: typer.Context,
    max_new_tokens: Annotated[int, typer.Option(help="Length of each demo answer.")] = 48,
    n_chat: Annotated[
        int, typer.Option(help="How many harmful and how many harmless requests to answer.")
    ] = 2,
    n_prompts: Annotated[
        int, typer.Option(help="Held-out prompts per attack and evaluation.")
    ] = 100,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop/--no-loop",
            help="Run the red-team loop (direction, attacks, evaluation, report) after the tour.",
        ),
    ] = True,
) -> None:
    """The tour and the red-team loop on one model, ending in an HTML report.

    1-3: loads the model (default: the embedded organism), shows its architecture row and
    chat template, lets it answer paired harmful and harmless requests, and shows how the two
    kinds separate in the residual stream. 4: finds the refusal direction (extract + select),
    attacks held-out harmful prompts (no attack, ablation, prefilling, jailbreak templates),
    evaluates refusal, over-refusal and capability, stores every step as a run and writes
    OUT/demo-report.html. Writes OUT/demo.json. About two minutes on 2 cores for the organism.

    Example: redblue demo          (or: redblue --model ./my-model demo --n-prompts 50)
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
    data = result.to_dict()
    if loop:
        data["loop"] = _loop(console, model, tokenizer, cfg, max_new_tokens, n_prompts)
    path = write_json(cfg.out / "demo.json", data)
    console.print(f"wrote {path}")


def _loop(
    console: Any, model: Any, tokenizer: Any, cfg: Any, max_new_tokens: int, n_prompts: int
) -> dict[str, Any]:
    from rich.markup import escape

    from redblue.demo import TourConfig, TourStep, run_tour
    from redblue.evaluate.store import RunStore
    from redblue.report import build_report, markdown_summary

    console.rule("4. the red-team loop: direction, attacks, evaluation")
    store = RunStore(cfg.out)

    def show(step: TourStep) -> None:
        console.print(
            f"[bold]{step.kind} {escape(step.name)}[/] ({step.seconds:.0f}s): "
            f"{escape(step.headline)}  [dim]run {step.run_id}[/]"
        )

    config = TourConfig(n_prompts=n_prompts, max_new_tokens=max_new_tokens, seed=cfg.seed)
    steps = run_tour(model, tokenizer, store, config, model_id=cfg.model, on_step=show)
    ids = [s.run_id for s in steps]
    report = build_report(store, ids, cfg.out / "demo-report.html")
    console.rule("5. summary")
    console.print(escape(markdown_summary(store, ids)))
    console.print(f"report: [bold]{report}[/]  (runs: `redblue runs list`)")
    return {"steps": [s.to_dict() for s in steps], "report": str(report)}
