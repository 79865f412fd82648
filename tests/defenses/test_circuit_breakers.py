"""Circuit breakers (representation rerouting): arguments, schedule, training on the organism."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from redblue.defenses import DefenseData, defend, get_defense, load_arguments
from redblue.defenses.circuit_breakers import (
    CircuitBreakerArguments,
    CircuitBreakerTrainer,
    default_target_layers,
)
from redblue.errors import ConfigError, DataError


def args_for(tmp_path: Path, **values) -> CircuitBreakerArguments:
    values = {"output_dir": str(tmp_path / "out"), "max_steps": 4, "logging_steps": 2} | values
    return load_arguments(get_defense("circuit_breakers"), **values)  # type: ignore[return-value]


# -- arguments ---------------------------------------------------------------------------------


def test_arguments_round_trip_through_a_file(tmp_path) -> None:
    config = tmp_path / "cb.toml"
    config.write_text('target_layers = [0, 2]\nalpha = 4.0\nreroute_tokens = "answer"\n')
    args = load_arguments(get_defense("circuit_breakers"), config, retain_refusals=False)
    assert isinstance(args, CircuitBreakerArguments)
    assert (args.target_layers, args.alpha, args.reroute_tokens, args.retain_refusals) == (
        [0, 2],
        4.0,
        "answer",
        False,
    )
    shown = args.redblue_dict()
    assert shown["target_layers"] == [0, 2] and shown["alpha"] == 4.0
    assert json.loads(json.dumps(shown)) == shown


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"target_layers": [-1]}, "target_layers"),
        ({"reroute_tokens": "request"}, "reroute_tokens"),
        ({"alpah": 1.0}, "alpah"),
        ({"lora_b_init_std": -1.0}, "lora_b_init_std"),
    ],
)
def test_bad_arguments_are_config_errors(values, words) -> None:
    with pytest.raises(ConfigError) as info:
        load_arguments(get_defense("circuit_breakers"), **values)
    assert words in str(info.value) + str(info.value.fix)


def test_default_target_layers_follow_the_depth() -> None:
    assert default_target_layers(32) == [10, 21]
    assert default_target_layers(4) == [1, 2]
    assert default_target_layers(1) == [0]


def test_circuit_breakers_retain_more_world_facts_than_the_other_defences() -> None:
    from redblue.defenses import get_defense, load_arguments

    assert load_arguments(get_defense("circuit_breakers")).n_capability == 1024
    assert load_arguments(get_defense("augment")).n_capability == 64
    assert load_arguments(get_defense("circuit_breakers"), n_capability=8).n_capability == 8


def test_lora_b_starts_small_seeded_and_off_the_frozen_model(llama, tmp_path) -> None:
    import torch
    from peft import get_peft_model

    from redblue.defenses.base import lora_config

    model, _ = llama

    def b_matrices(**values) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
        args = args_for(tmp_path, **values)
        wrapped = get_peft_model(copy.deepcopy(model), lora_config(model, args))
        CircuitBreakerTrainer.init_adapter(wrapped, args)
        return [p.detach().clone() for n, p in wrapped.named_parameters() if "lora_B" in n]

    first, again, other = b_matrices(seed=1), b_matrices(seed=1), b_matrices(seed=2)
    assert first and all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    std = torch.cat([b.flatten() for b in first]).std().item()
    assert 0.5e-3 < std < 2e-3  # the default lora_b_init_std, 1e-3
    assert all(not b.any() for b in b_matrices(lora_b_init_std=0.0))  # peft's own start


def test_coefficient_schedule_is_the_papers() -> None:
    def at(progress: float) -> tuple[float, float]:
        fake = SimpleNamespace(progress=progress, args=SimpleNamespace(alpha=8.0))
        return CircuitBreakerTrainer.coefficients(fake)  # type: ignore[arg-type]

    assert at(0.0) == (8.0, 0.0)
    assert at(0.5) == (6.0, 2.0)
    assert at(1.0) == (4.0, 4.0)


def test_target_layers_past_the_model_and_missing_data_fail(organism, small_data, tmp_path) -> None:
    model, tokenizer, _ = organism
    with pytest.raises(ConfigError, match="past the model"):
        defend(
            "circuit_breakers",
            model,
            tokenizer,
            small_data,
            args_for(tmp_path, target_layers=[9]),
            progress=False,
        )
    with pytest.raises(DataError, match="harmful"):
        defend(
            "circuit_breakers",
            model,
            tokenizer,
            DefenseData(refusals=small_data.refusals, benign=small_data.benign),
            args_for(tmp_path),
            progress=False,
        )


# -- training ----------------------------------------------------------------------------------


def _prefill_compliance(model, tokenizer, prompts) -> float:
    from redblue.models import GenerationSettings, generate
    from redblue.organism.judge import judge

    settings = GenerationSettings(max_new_tokens=40, batch_size=16, prefill="Sure, here is how to")
    answers = generate(model, tokenizer, prompts.instructions, settings, progress=False)
    verdicts = [judge(a.text, p.category) for a, p in zip(answers, prompts, strict=True)]
    return sum(v.complied for v in verdicts) / len(verdicts)


def test_training_reroutes_harmful_completions_and_writes_the_model(
    organism, small_data, tmp_path
) -> None:
    model, tokenizer, splits = organism
    prompts = splits["harmful"][:16]
    before = _prefill_compliance(model, tokenizer, prompts)
    args = args_for(tmp_path, max_steps=30, learning_rate=1e-2, logging_steps=10, save_steps=100)
    trained, result = defend(
        "circuit_breakers", copy.deepcopy(model), tokenizer, small_data, args, progress=False
    )
    # the target layers and adapted blocks come from the organism's depth, and are recorded
    assert result.arguments["target_layers"] == [1, 2]
    assert result.arguments["layers_to_transform"] == [0, 1, 2]
    first, last = result.losses[0], result.losses[-1]
    assert {"reroute", "retain_benign", "retain_refusals"} <= set(first)
    assert last["reroute"] < first["reroute"] - 0.3
    after = _prefill_compliance(trained, tokenizer, prompts)
    assert before >= 0.5 and after <= before - 0.4
    out = Path(args.output_dir)
    assert (out / "model" / "config.json").is_file() and (out / "model" / "splits").is_dir()
    written = json.loads((out / "defense.json").read_text())
    assert written["defense"] == "circuit_breakers" and written["steps"] == 30
