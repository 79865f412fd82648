"""``redblue report RUN... --out PAGE --md FILE`` over a small store."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from redblue.cli.main import _Group
from redblue.cli.report import report
from redblue.evaluate.store import Run, RunStore

runner = CliRunner()
# Registered as in redblue.cli.main, so errors print as messages and exit 2.
app = typer.Typer(cls=_Group)
app.command(name="report")(report)


@app.callback()
def root() -> None:
    """Stands in for redblue's global options, making ``report`` a subcommand."""


def test_report_writes_the_page_and_prints_markdown(
    store: RunStore, runs: dict[str, Run], tmp_path: Path
) -> None:
    page, summary = tmp_path / "out" / "report.html", tmp_path / "summary.md"
    ids = [runs["prefill"].id, runs["eval"].id]
    args = ["report", *ids, "--store", str(store.path), "--out", str(page), "--md", str(summary)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert page.read_text().startswith("<!doctype html>")
    assert summary.read_text() in result.output
    assert f"report: {page}" in result.output


def test_an_unknown_run_is_a_message(store: RunStore, tmp_path: Path) -> None:
    args = ["report", "nope", "--store", str(store.path), "--out", str(tmp_path / "r.html")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "no run 'nope'" in result.output
    assert not (tmp_path / "r.html").exists()
