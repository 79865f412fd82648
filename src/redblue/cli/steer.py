"""``redblue steer generate`` and ``redblue orthogonalize``: use a direction on a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redblue.cli._common import load_model, prompt_set, settings, write_json

app = typer.Typer(help="Generate with a direction ablated or added.", no_args_is_help=True)


@app.command("generate")
def steer_generate(
    ctx: typer.Context,
    direction_path: Annotated[
        Path, typer.Option("--direction", help="A direction file (`direction extract` / `select`).")
    ],
    mode: Annotated[
        str, typer.Option(help="ablate (remove the direction everywhere) or add (at one layer).")
    ] = "ablate",
    alpha: Annotated[
        float,
        typer.Option(help="add: multiple of the direction's length (1 = the mean difference)."),
    ] = 1.0,
    layer: Annotated[
        int | None, typer.Option(help="add: the layer (default: the direction's).")
    ] = None,
    prompt: Annotated[
        list[str] | None, typer.Option(help="A prompt (repeatable); overrides --prompts.")
    ] = None,
    prompts: Annotated[
        str | None,
        typer.Option(
            help="Prompt set (file, folder, dataset, builtin:NAME); default: harmful for ablate, harmless for add."
        ),
    ] = None,
    n: Annotated[int, typer.Option(help="How many prompts from the set.")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length.")] = 64,
) -> None:
    """Answer prompts with and without the intervention, side by side.

    Ablation removes the direction from the residual stream at every layer and position;
    addition adds ALPHA times its length at LAYER, on prompt positions. Writes OUT/steer.json.

    Example: redblue steer generate --direction redblue-out/direction-selected.safetensors --mode ablate
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from redblue.directions import Direction, is_refusal
    from redblue.errors import ConfigError
    from redblue.interventions import ablate, add
    from redblue.models import GenerationSettings, generate

    if mode not in ("ablate", "add"):
        raise ConfigError(f"unknown mode {mode!r}", where="--mode", fix="use ablate or add")
    cfg = settings(ctx)
    console = Console(stderr=True)
    direction = Direction.load(direction_path)
    if prompt:
        texts = list(prompt)
    else:
        kind = "harmful" if mode == "ablate" else "harmless"
        chosen, _ = prompt_set(cfg, prompts, kind)
        texts = chosen.sample(min(n, len(chosen)), seed=cfg.seed).instructions
    model, tokenizer = load_model(cfg)
    gen = GenerationSettings(
        max_new_tokens=max_new_tokens, seed=cfg.seed, system=direction.provenance.system
    )
    baseline = generate(model, tokenizer, texts, gen)
    hooks = (
        ablate(model, direction)
        if mode == "ablate"
        else add(model, direction, layer=layer, alpha=alpha)
    )
    with hooks:
        steered = generate(model, tokenizer, texts, gen)
    table = Table("prompt", "original", mode, show_lines=True)
    for text, a, b in zip(texts, baseline, steered, strict=True):
        table.add_row(
            escape(text[:120]), escape(a.text.strip()[:300]), escape(b.text.strip()[:300])
        )
    Console().print(table)
    rate = {
        "original": sum(is_refusal(c.text) for c in baseline) / len(texts),
        mode: sum(is_refusal(c.text) for c in steered) / len(texts),
    }
    console.print(
        "refusal rate (phrase matcher): " + ", ".join(f"{k} {v:.2f}" for k, v in rate.items())
    )
    path = write_json(
        cfg.out / "steer.json",
        {
            "mode": mode,
            "alpha": alpha if mode == "add" else None,
            "layer": (layer if layer is not None else direction.layer) if mode == "add" else None,
            "direction": direction.metadata(),
            "refusal_rate": rate,
            "samples": [
                {"prompt": t, "original": a.text, "steered": b.text}
                for t, a, b in zip(texts, baseline, steered, strict=True)
            ],
        },
    )
    console.print(f"wrote {path}")


def orthogonalize(
    ctx: typer.Context,
    direction_path: Annotated[Path, typer.Option("--direction", help="A direction file.")],
    out: Annotated[
        Path, typer.Option("--out", help="New folder for the edited model (plain HF safetensors).")
    ],
    check: Annotated[
        int,
        typer.Option(
            help="Prompts on which to compare the edited model's logits with run-time ablation (0: skip)."
        ),
    ] = 4,
) -> None:
    """Remove a direction from the weights for good and export a plain HF folder.

    Edits the token embedding and every attention and MLP output weight (and bias) so that
    nothing writes along the direction: the same model as run-time ablation, loadable by
    transformers, vLLM or TGI without redblue. Writes OUT/redblue-orthogonalize.json with the
    direction's provenance and the largest logit difference from run-time ablation.

    Example: redblue orthogonalize --direction redblue-out/direction-selected.safetensors --out ./abliterated
    """
    from rich.console import Console

    from redblue.data.builtin import builtin
    from redblue.directions import Direction, last_logits
    from redblue.interventions import ablate
    from redblue.interventions import orthogonalize as edit
    from redblue.models import export

    cfg = settings(ctx)
    console = Console(stderr=True)
    direction = Direction.load(direction_path)
    model, tokenizer = load_model(cfg)
    texts = (builtin("demo_harmful").instructions + builtin("demo_harmless").instructions)[
        : max(check, 0)
    ]
    max_diff = None
    if texts:
        with ablate(model, direction):
            expected = last_logits(model, tokenizer, texts)
    edit(model, direction)
    if texts:
        max_diff = float((last_logits(model, tokenizer, texts) - expected).abs().max())
        console.print(
            f"largest logit difference from run-time ablation on {len(texts)} prompts: {max_diff:.2e}"
        )
    path = export(model, tokenizer, out)
    write_json(
        Path(path) / "redblue-orthogonalize.json",
        {
            "source_model": cfg.model,
            "direction": direction.metadata(),
            "check_prompts": len(texts),
            "max_logit_diff_vs_ablation": max_diff,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        },
    )
    console.print(f"wrote {path}")
