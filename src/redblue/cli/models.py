"""``redblue models``: inspect, list and export models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from redblue.cli._common import load_model, settings

app = typer.Typer(help="Inspect, list and export models.", no_args_is_help=True)


@app.command("info")
def info(
    ctx: typer.Context,
    spec: Annotated[
        str | None,
        typer.Argument(help="Embedded name, folder, .gguf file or hub id (default: --model)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Family, layers, d_model, chat template and post-instruction tokens of a model.

    Example: redblue models info smollm2
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from redblue.models import describe

    cfg = settings(ctx)
    spec = spec or cfg.model
    model, tokenizer = load_model(cfg, spec)
    summary = describe(model, tokenizer, source=spec)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    table = Table(title=f"model {spec}", show_header=False)
    rows = {
        "class": summary.class_name,
        "family (ArchSpec row)": summary.family,
        "layers": str(summary.n_layers),
        "d_model": str(summary.d_model),
        "vocabulary": str(summary.vocab_size),
        "parameters": f"{summary.n_params:,}",
        "dtype / device": f"{summary.dtype} / {summary.device}",
        "chat template": "yes (the tokenizer's)"
        if summary.chat_template
        else "no: plain User/Assistant fallback",
        "example prompt": repr(summary.example_prompt),
        "post-instruction tokens": " ".join(repr(t) for t in summary.post_instruction_tokens),
    }
    for key, value in rows.items():
        table.add_row(key, escape(value))
    Console().print(table)


@app.command("list")
def list_models() -> None:
    """Embedded models and the architecture families redblue knows."""
    from redblue.errors import ModelError
    from redblue.models import ARCH_TABLE, EMBEDDED

    typer.echo("embedded models:")
    for name, find in EMBEDDED.items():
        try:
            source = find()
            typer.echo(f"  {name:10s} installed: {source.description} ({source.location})")
        except ModelError as e:
            typer.echo(f"  {name:10s} not installed: {e.fix or e.what}")
    typer.echo("architecture families (config.model_type): " + ", ".join(sorted(ARCH_TABLE)))


@app.command("export")
def export_model(
    ctx: typer.Context,
    spec: Annotated[
        str, typer.Argument(help="Model to export (embedded name, folder, .gguf file or hub id).")
    ],
    out: Annotated[Path, typer.Argument(help="New folder for the plain HF weights (safetensors).")],
) -> None:
    """Write a model as a plain Hugging Face folder (safetensors) that other tools load.

    GGUF models are de-quantised. Example: redblue models export smollm2 ./smollm2-hf
    """
    from redblue.models import export

    cfg = settings(ctx)
    model, tokenizer = load_model(cfg, spec)
    path = export(model, tokenizer, out)
    typer.echo(f"wrote {path}")
