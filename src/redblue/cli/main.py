"""The ``redblue`` command: a thin shell over the Python API.

Heavy imports (torch, transformers) happen inside the commands, so that
``redblue --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from redblue.errors import RedblueError


class _Group(TyperGroup):
    """Prints a :class:`RedblueError` as a message, not a traceback, and exits 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RedblueError as e:
            typer.secho(f"error: {e}", err=True, fg="red")
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    name="redblue",
    help=(
        "Red-team open-weight chat models, make them safer, measure, repeat.\n\n"
        "Options given here apply to every command; they can also come from REDBLUE_* environment "
        "variables or a TOML file (--config, default ./redblue.toml). Command line wins over "
        "environment, environment over file."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model: embedded name (organism, the default, or smollm2), folder, .gguf file or hub id.",
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling and splits.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for results (default ./redblue-out).")
    ] = None,
    trust_remote_code: Annotated[
        bool | None,
        typer.Option(
            "--trust-remote-code/--no-trust-remote-code",
            help="Run code shipped with the model. Off by default.",
        ),
    ] = None,
    arch: Annotated[
        Path | None, typer.Option(help="JSON ArchSpec for a model family redblue does not know.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML settings file (default ./redblue.toml if present).")
    ] = None,
) -> None:
    from redblue.settings import load_settings

    # a bad setting raises ConfigError, which _Group prints
    ctx.obj = load_settings(
        config,
        model=model,
        device=device,
        dtype=dtype,
        seed=seed,
        out=out,
        trust_remote_code=trust_remote_code,
        arch=arch,
    )


def _register() -> None:
    from redblue.cli import (
        attack,
        data,
        defend,
        demo,
        detect,
        direction,
        evaluate,
        guard,
        models,
        organism,
        report,
        runs,
        steer,
    )

    app.add_typer(models.app, name="models")
    app.add_typer(data.app, name="data")
    app.add_typer(organism.app, name="organism")
    app.add_typer(direction.app, name="direction")
    app.add_typer(steer.app, name="steer")
    app.add_typer(attack.app, name="attack")
    app.add_typer(runs.app, name="runs")
    app.add_typer(guard.app, name="guard")
    app.add_typer(detect.app, name="detect")
    app.command(name="eval")(evaluate.evaluate)
    app.command(name="report")(report.report)
    app.command(name="orthogonalize")(steer.orthogonalize)
    app.command(name="demo")(demo.demo)
    app.command(name="defend")(defend.defend)


_register()


def main() -> None:
    app()
