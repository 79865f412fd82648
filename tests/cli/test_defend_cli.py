"""``redblue defend`` on the embedded organism."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from redblue.cli.main import app

runner = CliRunner()


def test_list_names_every_defence_and_its_arguments() -> None:
    from redblue.defenses import DEFENSES

    result = runner.invoke(app, ["defend", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == set(DEFENSES)
    assert rows["augment"]["arguments"]["max_prefix_tokens"]["default"] == 16


def test_defend_trains_writes_the_model_and_evaluates_before_and_after(tmp_path) -> None:
    out = tmp_path / "aug"
    args = ["--device", "cpu", "--out", str(tmp_path), "defend", "augment", "--out", str(out)]
    args += [
        "--set",
        "max_steps=4",
        "--set",
        "n_harmful=16",
        "--set",
        "n_benign=16",
        "--limit",
        "8",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "model" / "model.safetensors").is_file()
    assert json.loads((out / "defense.json").read_text())["steps"] == 4
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation["before"]) == set(evaluation["after"])
    assert {"harmful", "harmless", "borderline", "capability", "harmful+prefill"} == set(
        evaluation["after"]
    )
    assert evaluation["after"]["harmful"]["value"]["n"] == 8
    runs = runner.invoke(app, ["--out", str(tmp_path), "runs", "list", "--json"])
    assert runs.exit_code == 0 and len(json.loads(runs.output)) == 10


def test_bad_arguments_exit_with_a_clear_error(tmp_path) -> None:
    result = runner.invoke(app, ["defend", "augment", "--set", "lora_rank=4", "--no-eval"])
    assert result.exit_code == 2
    assert "no argument 'lora_rank'" in result.output and "lora_r" in result.output
    result = runner.invoke(app, ["defend", "armour"])
    assert result.exit_code == 2 and "unknown defence 'armour'" in result.output
    config = tmp_path / "bad.yaml"
    config.write_text("max_steps: [1\n")
    result = runner.invoke(app, ["defend", "augment", "--config", str(config)])
    assert result.exit_code == 2 and str(config) in result.output
