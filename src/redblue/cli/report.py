"""``redblue report RUN...``: one self-contained HTML page about some runs, and a Markdown
summary on the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redblue.cli._common import settings


def report(
    ctx: typer.Context,
    runs: Annotated[
        list[str], typer.Argument(metavar="RUN...", help="Run ids, or unique prefixes of them.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The HTML page to write (default OUT/report.html)."),
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--md", help="Also write the Markdown summary to this file.")
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store", help="Run store: a runs.db file or its folder (default OUT/runs.db)."
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            min=0, help="Transcripts per run: this many judged each way (successes, failures)."
        ),
    ] = 5,
) -> None:
    """Write a report on RUN...: scorecard, attack success with intervals, direction
    selection, refusals against KL, detector ROC, transcripts and provenance, in one HTML
    file that loads nothing from the network. Prints a Markdown summary."""
    from redblue.evaluate.store import RunStore
    from redblue.report import build_report, markdown_summary
    from redblue.report.html import write_atomic

    cfg = settings(ctx)
    run_store = RunStore(store if store is not None else cfg.out, create=False)
    page = build_report(
        run_store, runs, out if out is not None else cfg.out / "report.html", per_verdict=samples
    )
    summary = markdown_summary(run_store, runs)
    if markdown is not None:
        write_atomic(markdown, summary)
    typer.echo(summary)
    typer.echo(f"report: {page}")
