"""``redblue direction``: extract, select and show refusal directions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from redblue.directions import Direction

from redblue.cli._common import load_model, prompt_set, settings, write_json
from redblue.data import train_val

app = typer.Typer(
    help="Refusal directions: extract candidates, select one, show it.", no_args_is_help=True
)

HarmfulOpt = Annotated[
    str | None,
    typer.Option(
        help="Harmful prompts: a file, folder, dataset or builtin:NAME "
        "(default: the organism's harmful_train split, else builtin:demo_harmful)."
    ),
]
HarmlessOpt = Annotated[
    str | None, typer.Option(help="Harmless prompts, as --harmful (default: the matching split).")
]
NValOpt = Annotated[
    int,
    typer.Option(
        help="Validation prompts per set, held out from extraction (same seed, same cut)."
    ),
]


@app.command("extract")
def extract(
    ctx: typer.Context,
    harmful: HarmfulOpt = None,
    harmless: HarmlessOpt = None,
    method: Annotated[
        str, typer.Option(help="mean_diff (difference in means, streamed), pca or probe.")
    ] = "mean_diff",
    positions: Annotated[
        str,
        typer.Option(
            help="post_instruction (the template tokens after the instruction), last, "
            "or comma-separated negative columns like -1,-2."
        ),
    ] = "post_instruction",
    n_train: Annotated[int, typer.Option(help="Prompts per set used for extraction.")] = 128,
    n_val: NValOpt = 32,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 32,
    save: Annotated[
        Path | None,
        typer.Option(help="Where to write the direction (default OUT/direction.safetensors)."),
    ] = None,
) -> None:
    """Candidate refusal directions at every layer and position, from harmful vs harmless prompts.

    Writes DIRECTION.safetensors (unit vectors [positions, layers, d_model] and their lengths)
    and DIRECTION.json (provenance and a provisional choice: the layer of largest separation
    at the last position). Run `redblue direction select` to choose by effect.

    Example: redblue direction extract --n-train 128     (on the embedded organism)
    """
    from rich.console import Console

    from redblue.directions import ExtractConfig, extract_direction

    cfg = settings(ctx)
    console = Console(stderr=True)
    harmful_set, harmful_src = prompt_set(cfg, harmful, "harmful")
    harmless_set, harmless_src = prompt_set(cfg, harmless, "harmless")
    harmful_train, _ = train_val(harmful_set, n_train, n_val, cfg.seed)
    harmless_train, _ = train_val(harmless_set, n_train, n_val, cfg.seed)
    console.print(
        f"harmful: {len(harmful_train)} from {harmful_src}; harmless: {len(harmless_train)} from {harmless_src}"
    )
    model, tokenizer = load_model(cfg)
    config = ExtractConfig(method=method, positions=_positions(positions), batch_size=batch_size)
    direction = extract_direction(model, tokenizer, harmful_train, harmless_train, config)
    path = direction.save(save or cfg.out / "direction.safetensors")
    _show(direction, console)
    console.print(f"wrote {path} (+ .json)")


def _positions(text: str) -> str | list[int]:
    if text in ("post_instruction", "last"):
        return text
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        from redblue.errors import ConfigError

        raise ConfigError(
            f"cannot read positions {text!r}",
            where="--positions",
            fix="use post_instruction, last, or negative columns like -1,-2",
        ) from None


@app.command("select")
def select(
    ctx: typer.Context,
    direction_path: Annotated[
        Path, typer.Argument(help="Direction from `direction extract`.", metavar="DIRECTION")
    ],
    harmful: HarmfulOpt = None,
    harmless: HarmlessOpt = None,
    n_train: Annotated[
        int, typer.Option(help="As given to extract (to cut the same validation set).")
    ] = 128,
    n_val: NValOpt = 32,
    kl_threshold: Annotated[
        float, typer.Option(help="Drop candidates whose ablation has KL above this on harmless.")
    ] = 0.1,
    induce_threshold: Annotated[
        float,
        typer.Option(
            help="Drop candidates whose addition leaves harmless refusal score at or below this."
        ),
    ] = 0.0,
    max_layer_fraction: Annotated[
        float, typer.Option(help="Drop candidates at or past this fraction of the layers.")
    ] = 0.8,
    refusal_token: Annotated[
        list[int] | None,
        typer.Option(
            help="Refusal token id (repeatable); default: read off the model's own refusals."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 32,
    save: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the chosen direction (default OUT/direction-selected.safetensors)."
        ),
    ] = None,
) -> None:
    """Choose among the candidates by what they do (Arditi et al. 2024).

    For each (layer, position): refusal score on harmful validation prompts under ablation
    (bypass), on harmless under addition (induce), and KL on harmless under ablation. Filters
    drop high-KL, non-inducing and late-layer candidates; the lowest bypass wins.
    Writes OUT/selection.json, .csv and .png, and the chosen direction.
    When every candidate is filtered out, says which relaxation would keep some and exits 1.

    Example: redblue direction select redblue-out/direction.safetensors
    """
    from rich.console import Console

    from redblue.directions import Direction, SelectConfig, select_direction

    cfg = settings(ctx)
    console = Console(stderr=True)
    direction = Direction.load(direction_path)
    _, harmful_val = train_val(prompt_set(cfg, harmful, "harmful")[0], n_train, n_val, cfg.seed)
    _, harmless_val = train_val(prompt_set(cfg, harmless, "harmless")[0], n_train, n_val, cfg.seed)
    model, tokenizer = load_model(cfg)
    config = SelectConfig(
        kl_threshold=kl_threshold,
        induce_threshold=induce_threshold,
        max_layer_fraction=max_layer_fraction,
        batch_size=batch_size,
        system=direction.provenance.system,
    )
    result = select_direction(
        model,
        tokenizer,
        direction,
        harmful_val,
        harmless_val,
        config,
        refusal_tokens=refusal_token or None,
    )
    out = cfg.out
    write_json(out / "selection.json", result.to_dict())
    (out / "selection.csv").write_text(result.to_csv())
    result.plot(out / "selection.png")
    console.print(f"wrote {out / 'selection.json'}, selection.csv, selection.png")
    if result.direction is None:
        console.print(f"[red]no direction chosen:[/] {result.message}")
        raise typer.Exit(1)
    path = result.direction.save(save or out / "direction-selected.safetensors")
    console.print(result.message)
    console.print(f"wrote {path} (+ .json)")


@app.command("show")
def show(
    direction_path: Annotated[Path, typer.Argument(help="A direction file.", metavar="DIRECTION")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """The choice, provenance and candidate lengths of a direction.

    Example: redblue direction show redblue-out/direction.safetensors
    """
    from rich.console import Console

    from redblue.directions import Direction

    direction = Direction.load(direction_path)
    if as_json:
        typer.echo(json.dumps(direction.metadata(), indent=2))
        return
    _show(direction, Console())


def _show(direction: Direction, console: Console) -> None:
    from rich.table import Table

    prov = direction.provenance
    console.print(
        f"direction: layer [bold]{direction.layer}[/], position [bold]{direction.position}[/] "
        f"(chosen by {direction.chosen_by}); method {prov.method}; model {prov.model} "
        f"({prov.n_harmful} harmful, {prov.n_harmless} harmless prompts)"
    )
    table = Table(title="|aggregate| per layer (rows) and position (columns); - : degenerate")
    table.add_column("layer")
    for p in direction.positions:
        table.add_column(str(p), justify="right")
    for li, layer in enumerate(direction.layers):
        cells = [
            f"{float(direction.norms[pi, li]):.3g}" if direction.norms[pi, li] > 0 else "-"
            for pi in range(len(direction.positions))
        ]
        table.add_row(str(layer) + (" *" if layer == direction.layer else ""), *cells)
    console.print(table)
