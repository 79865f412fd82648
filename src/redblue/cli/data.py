"""``redblue data``: look at prompt sets before using them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Inspect prompt sets (JSON, JSONL, CSV, TSV, TXT, YAML, HF datasets).",
    no_args_is_help=True,
)


@app.command("info")
def info(
    source: Annotated[
        str,
        typer.Argument(
            help="A file, a folder of files, a saved HF dataset, or a hub dataset name."
        ),
    ],
    column: Annotated[
        str | None, typer.Option(help="Column holding the prompt (auto-detected by default).")
    ] = None,
    target_column: Annotated[
        str | None, typer.Option(help="Column holding a target completion.")
    ] = None,
    category_column: Annotated[
        str | None, typer.Option(help="Column holding a category label.")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="Force a format: json, jsonl, csv, tsv, txt, yaml, hf."),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split of a HF dataset (e.g. train).")] = None,
    sample: Annotated[int, typer.Option(help="How many prompts to show.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Rows, columns (and which one holds the prompt), categories and a sample of a prompt set.

    Example: redblue data info ../shared/data/advbench/advbench.csv
    """
    from redblue.data import describe, load_prompts

    prompts = load_prompts(
        Path(source) if Path(source).exists() else source,
        format=format,
        column=column,
        target_column=target_column,
        category_column=category_column,
        split=split,
    )
    summary = describe(prompts, sample_size=sample)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{summary['source']}: {summary['rows']} rows")
    if summary["columns"]:
        typer.echo(f"columns: {', '.join(summary['columns'])}")
    for role, col in summary["roles"].items():
        typer.echo(f"  {role:<12s} <- {col}")
    if summary["categories"]:
        cats = ", ".join(f"{k} ({v})" for k, v in list(summary["categories"].items())[:12])
        typer.echo(f"categories: {cats}")
    typer.echo(f"content hash: {summary['content_hash'][:16]}")
    for row in summary["sample"]:
        text = row["instruction"].replace("\n", " ")
        typer.echo(f"- [{row['id']}] {text[:160]}{'...' if len(text) > 160 else ''}")
