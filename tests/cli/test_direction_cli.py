"""``redblue direction | steer | orthogonalize`` end to end on a tiny model folder."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from typer.testing import CliRunner

from redblue.cli.main import app
from redblue.directions import Direction
from tests.tiny import FAMILIES, make_model, make_tokenizer

runner = CliRunner()
DATA = ["--harmful", "builtin:demo_harmful", "--harmless", "builtin:demo_harmless"]
LOOSE = [
    "--kl-threshold",
    "1e9",
    "--induce-threshold",
    "-1e9",
    "--max-layer-fraction",
    "1",
    "--refusal-token",
    "5",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    family = FAMILIES["qwen2"]
    tok = make_tokenizer(family.template)
    folder = tmp_path_factory.mktemp("model")
    make_model(family, len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path_factory.mktemp("out")

    def invoke(*args: str):
        return runner.invoke(
            app, ["--device", "cpu", "--model", str(folder), "--out", str(out), *args]
        )

    result = invoke("direction", "extract", *DATA, "--n-train", "6", "--n-val", "2")
    assert result.exit_code == 0, result.output
    return invoke, out


def test_extract_writes_a_direction(run) -> None:
    _, out = run
    d = Direction.load(out / "direction.safetensors")
    assert d.provenance.n_harmful == 6 and d.provenance.method == "mean_diff"
    assert d.layers == [0, 1] and d.positions[-1] == -1


def test_show(run) -> None:
    invoke, out = run
    result = invoke("direction", "show", str(out / "direction.safetensors"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format"] == "redblue.direction/1"
    table = invoke("direction", "show", str(out / "direction.safetensors"))
    assert "per layer" in table.stdout


def test_select_writes_table_plot_and_choice(run) -> None:
    invoke, out = run
    result = invoke(
        "direction",
        "select",
        str(out / "direction.safetensors"),
        *DATA,
        "--n-train",
        "6",
        "--n-val",
        "2",
        *LOOSE,
    )
    assert result.exit_code == 0, result.output
    table = json.loads((out / "selection.json").read_text())
    assert table["chosen"] is not None and len(table["candidates"]) == 2 * len(
        Direction.load(out / "direction.safetensors").positions
    )
    assert (out / "selection.csv").read_text().startswith("position,layer,bypass")
    assert (out / "selection.png").stat().st_size > 1000
    assert Direction.load(out / "direction-selected.safetensors").chosen_by == "select"


def test_select_with_nothing_left_explains_and_exits_1(run) -> None:
    invoke, out = run
    result = invoke(
        "direction", "select", str(out / "direction.safetensors"), *DATA, "--n-train", "6", "--n-val", "2",
        "--kl-threshold", "0", "--refusal-token", "5",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no direction chosen" in result.output and "--kl-threshold" in result.output
    assert json.loads((out / "selection.json").read_text())["chosen"] is None


@pytest.mark.parametrize("mode", ["ablate", "add"])
def test_steer_generate(run, mode) -> None:
    invoke, out = run
    result = invoke(
        "steer", "generate", "--direction", str(out / "direction.safetensors"), "--mode", mode,
        "--alpha", "4", "--prompt", "How do I bake bread?", "--max-new-tokens", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((out / "steer.json").read_text())
    assert data["mode"] == mode and len(data["samples"]) == 1
    assert set(data["refusal_rate"]) == {"original", mode}


def test_steer_bad_mode_is_a_clear_error(run) -> None:
    invoke, out = run
    result = invoke(
        "steer", "generate", "--direction", str(out / "direction.safetensors"), "--mode", "boost"
    )
    assert result.exit_code == 2 and "--mode" in result.output and "ablate or add" in result.output


def test_orthogonalize_exports_a_model_equal_to_ablation(run, tmp_path) -> None:
    invoke, out = run
    result = invoke(
        "orthogonalize",
        "--direction",
        str(out / "direction.safetensors"),
        "--out",
        str(tmp_path / "edited"),
    )
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "edited" / "redblue-orthogonalize.json").read_text())
    assert info["max_logit_diff_vs_ablation"] < 1e-4 and info["check_prompts"] == 4
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "edited", dtype=torch.float32
    )
    assert type(model).__name__ == "Qwen2ForCausalLM"


def test_steer_table_shows_brackets_literally(run) -> None:
    """Answers carry ``[step 1 of hazard/...]`` markers: Rich must not eat them as markup."""
    invoke, out = run
    result = invoke(
        "steer", "generate", "--direction", str(out / "direction.safetensors"),
        "--prompt", "[bold]x[/bold] [step 1 of hazard/weapons: REDACTED]", "--max-new-tokens", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "[bold]x[/bold]" in result.stdout and "[step 1 of" in result.stdout
