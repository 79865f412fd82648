"""``redblue runs list | show | compare`` over a small store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from redblue.cli.main import _Group
from redblue.cli.runs import app as runs_app
from redblue.evaluate.stats import Rate
from redblue.evaluate.store import Run, RunSpec, RunStore

runner = CliRunner(env={"COLUMNS": "240"})
# Registered as in redblue.cli.main, so errors print as messages and exit 2.
app = typer.Typer(cls=_Group)
app.add_typer(runs_app, name="runs")


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Run, Run]:
    store = RunStore(tmp_path)
    runs = []
    for name, rate in (("baseline", Rate(48, 80)), ("defended", Rate(56, 70))):
        run = store.start(RunSpec(kind="eval", name=name, model="organism", seed=0))
        run.add_samples([{"key": str(i)} for i in range(5)])
        run.log_rate("refusal_rate", rate)
        run.log_metric("seconds", 10.0 if name == "baseline" else 12.0)
        run.finish()
        runs.append(run)
    return tmp_path / "runs.db", runs[0], runs[1]


def test_list_shows_every_run_with_its_headline_metric(two_runs: tuple[Path, Run, Run]) -> None:
    db, a, b = two_runs
    result = runner.invoke(app, ["runs", "list", "--store", str(db)])
    assert result.exit_code == 0, result.output
    for text in (a.id, b.id, "baseline", "defended", "refusal_rate", "done", "organism"):
        assert text in result.output
    as_json = runner.invoke(app, ["runs", "list", "--store", str(db.parent), "--json"])
    assert [r["id"] for r in json.loads(as_json.output)] == [b.id, a.id]
    none = runner.invoke(app, ["runs", "list", "--store", str(db), "--kind", "attack", "--json"])
    assert json.loads(none.output) == []


def test_show_prints_spec_metrics_and_samples(two_runs: tuple[Path, Run, Run]) -> None:
    db, a, _ = two_runs
    result = runner.invoke(app, ["runs", "show", a.id, "--store", str(db)])
    assert result.exit_code == 0, result.output
    assert "baseline" in result.output and "0.600 [" in result.output
    assert "(48/80)" in result.output and a.spec.key in result.output
    data = json.loads(
        runner.invoke(app, ["runs", "show", a.id, "--store", str(db), "--json"]).output
    )
    assert data["n_samples"] == 5 and data["spec"]["name"] == "baseline"
    assert data["metrics"][0]["n"] == 80 and data["metrics"][0]["successes"] == 48


def test_compare_prints_deltas_with_newcombe_intervals(two_runs: tuple[Path, Run, Run]) -> None:
    db, a, b = two_runs
    result = runner.invoke(app, ["runs", "compare", a.id, b.id, "--store", str(db)])
    assert result.exit_code == 0, result.output
    assert "+0.200 [+0.052, +0.334]" in result.output and "+2.000" in result.output
    out = runner.invoke(app, ["runs", "compare", a.id, b.id, "--store", str(db), "--json"])
    data = json.loads(out.output)
    assert (data["a"], data["b"]) == (a.id, b.id)
    rate = data["metrics"][0]
    assert rate["delta"] == pytest.approx(0.2) and rate["ci"] == pytest.approx(
        [0.0524, 0.3339], abs=5e-5
    )


def test_unknown_run_and_missing_store_are_errors(
    two_runs: tuple[Path, Run, Run], tmp_path: Path
) -> None:
    db, _, _ = two_runs
    result = runner.invoke(app, ["runs", "show", "nope", "--store", str(db)])
    assert result.exit_code == 2 and "no run 'nope'" in result.output
    missing = runner.invoke(app, ["runs", "list", "--store", str(tmp_path / "elsewhere")])
    assert missing.exit_code == 2 and "no run store" in missing.output
    assert not (tmp_path / "elsewhere").exists()
