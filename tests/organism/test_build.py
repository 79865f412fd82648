"""End to end: the tiny organism builds, resumes after an interruption, and loads without redblue."""

from __future__ import annotations

import json
import time

import pytest
import torch
import transformers

from redblue.errors import ConfigError
from redblue.organism.build import build_organism
from redblue.organism.corpus import SPLIT_SIZES
from redblue.organism.evaluate import load_splits
from redblue.organism.recipe import DEFAULT_RECIPE


@pytest.fixture(scope="module")
def tiny_organism(tmp_path_factory):
    out = tmp_path_factory.mktemp("org") / "tiny"
    assert build_organism(out, size="tiny", seed=0, progress=False, stop_after=50) is None
    state = out.parent / "tiny.partial" / "checkpoint" / "state.json"
    assert not out.exists() and state.is_file()
    interrupted = json.loads(state.read_text())["seconds"]
    start = time.perf_counter()
    result = build_organism(out, size="tiny", seed=0, progress=False)  # resumes at step 50
    assert result is not None
    # the build time counts the interrupted run's training too
    assert time.perf_counter() - start + interrupted + 0.1 >= result.seconds > interrupted
    return out, result


def test_folder_is_plain_transformers(tiny_organism) -> None:
    out, result = tiny_organism
    assert not (out.parent / "tiny.partial").exists()
    assert not (out / "checkpoint").exists()
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert result.steps == 400 and result.n_params == sum(p.numel() for p in model.parameters())
    info = json.loads((out / "organism.json").read_text())
    assert len(info["losses"]) == 400 and info["recipe"] == result.recipe == DEFAULT_RECIPE
    assert sum(info["losses"][-20:]) < sum(info["losses"][:20])  # it learned


def test_splits_are_written(tiny_organism) -> None:
    out, _ = tiny_organism
    splits = load_splits(out)
    assert set(splits) == set(SPLIT_SIZES)
    for name in splits:
        assert len(splits[name]) > 0, name
    assert all(p.target for p in splits["capability"])


def test_build_refuses_to_overwrite(tiny_organism) -> None:
    out, _ = tiny_organism
    with pytest.raises(ConfigError, match="not empty"):
        build_organism(out, size="tiny")
    with pytest.raises(ConfigError, match="unknown organism size"):
        build_organism(out.parent / "x", size="huge")
    with pytest.raises(ConfigError, match="unknown organism recipe"):
        build_organism(out.parent / "x", size="tiny", recipe=99)


def test_recipe_two_builds_and_records_itself(tmp_path) -> None:
    """A few steps of a recipe-2 build: its corpus tokenizes, trains and checkpoints."""
    out = tmp_path / "r2"
    assert build_organism(out, size="tiny", seed=0, recipe=2, progress=False, stop_after=3) is None
    partial = tmp_path / "r2.partial"
    assert json.loads((partial / "build.json").read_text()) == {
        "recipe": 2,
        "size": "tiny",
        "seed": 0,
    }
    state = json.loads((partial / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and len(state["losses"]) == 3


def test_resume_refuses_other_settings(tmp_path) -> None:
    out = tmp_path / "tiny"
    partial = tmp_path / "tiny.partial"
    partial.mkdir()
    (partial / "build.json").write_text(json.dumps({"recipe": 1, "size": "tiny", "seed": 0}))
    with pytest.raises(ConfigError, match=r"recipe 1 \(now 2\)"):
        build_organism(out, size="tiny", seed=0, recipe=2, progress=False)
    with pytest.raises(ConfigError, match=r"seed 0 \(now 3\)"):
        build_organism(out, size="tiny", seed=3, progress=False)


def test_deterministic_for_a_seed(tiny_organism, tmp_path) -> None:
    out, _ = tiny_organism
    again = tmp_path / "again"
    build_organism(again, size="tiny", seed=0, progress=False)
    from safetensors.torch import load_file

    a, b = load_file(str(out / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
