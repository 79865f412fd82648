"""``redblue runs list | show | compare``: browse the run store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from redblue.cli._common import settings

if TYPE_CHECKING:
    from redblue.evaluate.store import Metric, RunStore

app = typer.Typer(
    help="Browse recorded runs: list them, show one, compare two.", no_args_is_help=True
)

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="Run store: a runs.db file or its folder (default OUT/runs.db)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _store(ctx: typer.Context, path: Path | None) -> RunStore:
    from redblue.evaluate.store import RunStore

    return RunStore(path if path is not None else settings(ctx).out, create=False)


def _shown(metric: Metric | None) -> str:
    return "-" if metric is None else str(metric)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Option(help="Only runs of this kind (attack, eval, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.")] = 50,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recorded runs, newest first, with their first metric."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    runs = _store(ctx, store).list(kind, limit=limit)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in runs], indent=2))
        return
    table = Table(title=f"runs ({len(runs)} shown; details: redblue runs show ID)")
    table.add_column("id", no_wrap=True)
    for column in ("kind", "name", "model", "status", "created (UTC)", "headline metric"):
        table.add_column(column, overflow="fold")
    for run in runs:
        metrics = run.metrics()
        headline = f"{metrics[0].name} = {metrics[0]}" if metrics else "-"
        table.add_row(
            run.id,
            run.spec.kind,
            escape(run.spec.name),
            escape(run.spec.model or "-"),
            run.status,
            run.created[:19].replace("T", " "),
            escape(headline),
        )
    Console().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id or a unique prefix of it.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A run's spec, its metrics with 95% intervals, its sample count and artifacts folder."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    run = _store(ctx, store).get(run_id)
    data = run.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console()
    spec = Table(title=f"run {run.id} ({run.status})", show_header=False)
    spec.add_column("field", style="bold")
    spec.add_column("value", overflow="fold")
    values = data["spec"] | {
        "created": run.created,
        "finished": run.finished or "-",
        "samples": data["n_samples"],
        "artifacts": data["artifacts"] or "-",
    }
    for field, value in values.items():
        shown = (value or "-") if isinstance(value, str) else json.dumps(value, sort_keys=True)
        spec.add_row(field, escape(str(shown)))
    console.print(spec)
    metrics = Table(title="metrics")
    metrics.add_column("metric")
    metrics.add_column("value [95% CI] (k/n)")
    for metric in run.metrics():
        metrics.add_row(escape(metric.name), str(metric))
    console.print(metrics)


@app.command("compare")
def compare(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(metavar="A", help="The baseline run (id or prefix).")],
    b: Annotated[str, typer.Argument(metavar="B", help="The run compared with it.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every metric of runs A and B and the difference B - A; for rates, with Newcombe's 95%
    interval for the difference of two independent proportions."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    runs = _store(ctx, store)
    run_a, run_b = runs.get(a), runs.get(b)
    deltas = runs.compare(run_a, run_b)
    if as_json:
        payload = {"a": run_a.id, "b": run_b.id, "metrics": [d.to_dict() for d in deltas]}
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"B {run_b.id} minus A {run_a.id}")
    for column in ("metric", f"A {run_a.id}", f"B {run_b.id}", "B - A [95% CI]"):
        table.add_column(column, overflow="fold")
    for d in deltas:
        delta = "-" if d.delta is None else f"{d.delta:+.3f}"
        if d.ci is not None:
            delta += f" [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}]"
        table.add_row(escape(d.name), _shown(d.a), _shown(d.b), delta)
    Console().print(table)
