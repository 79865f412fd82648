"""Adversarial training: arguments, held-out templates, attacked examples, training, output."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from redblue.data.templates import JailbreakTemplate, load_templates
from redblue.defenses import DefenseData, defend, get_defense, load_arguments
from redblue.defenses.adversarial import (
    AdversarialArguments,
    AdversarialTrainer,
    split_templates,
    write_templates,
)
from redblue.errors import ConfigError

#: Small budgets: the attacks run for real, on a handful of prompts.
SMALL = {
    "rounds": 1,
    "max_steps": 8,
    "logging_steps": 2,
    "attack_prompts": 12,
    "attack_max_new_tokens": 16,
    "gcg_prompts": 2,
    "gcg_steps": 3,
    "gcg_search_width": 16,
    "n_templated": 24,
    "n_suffixed": 16,
    "n_prefilled": 24,
    "n_benign_attacked": 16,
}


def args_for(tmp_path: Path, **values) -> AdversarialArguments:
    values = {"output_dir": str(tmp_path / "out")} | SMALL | values
    return load_arguments(get_defense("adversarial"), **values)  # type: ignore[return-value]


def fresh(data: DefenseData) -> DefenseData:
    return copy.deepcopy(data)


# -- arguments ---------------------------------------------------------------------------------


def test_arguments_round_trip_through_a_file(tmp_path) -> None:
    config = tmp_path / "a.toml"
    config.write_text('attacks = ["templates", "prefill"]\nprefill_ks = [1, 3]\nrounds = 2\n')
    args = load_arguments(get_defense("adversarial"), config, template_holdout=0.25)
    assert isinstance(args, AdversarialArguments)
    assert (args.attacks, args.prefill_ks, args.rounds, args.template_holdout) == (
        ["templates", "prefill"],
        [1, 3],
        2,
        0.25,
    )
    shown = args.redblue_dict()
    json.dumps(shown)
    assert shown["attacks"] == ["templates", "prefill"] and shown["template_source"] == (
        "builtin:redblue"
    )
    assert get_defense("adversarial") is AdversarialTrainer


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"attacks": ["templates", "ablation"]}, "attacks must be a non-empty subset"),
        ({"attacks": []}, "attacks must be a non-empty subset"),
        ({"template_holdout": 1.0}, "template_holdout must be in"),
        ({"rounds": 0}, "rounds must be >= 1"),
        ({"prefill_ks": [0, 2]}, "prefill_ks needs"),
        ({"gcg_steps": 0}, "gcg_steps must be >= 1"),
        ({"n_prefilled": -1}, "n_prefilled must be >= 0"),
        ({"rounds": 2, "merge": False}, "rounds > 1 needs merge=True"),
    ],
)
def test_bad_arguments_are_config_errors(values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_arguments(get_defense("adversarial"), **values)


def test_unknown_argument_names_the_close_ones() -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        load_arguments(get_defense("adversarial"), template_hold=0.3)


# -- templates ---------------------------------------------------------------------------------


def test_template_split_is_seeded_disjoint_and_round_trips(tmp_path) -> None:
    templates = load_templates("builtin:redblue")
    train, held = split_templates(templates, 0.5, seed=0)
    assert len(train) + len(held) == len(templates) and len(held) == len(templates) // 2
    assert not {t.text for t in train} & {t.text for t in held}
    assert split_templates(templates, 0.5, seed=0) == (train, held)
    assert split_templates(templates, 0.5, seed=1) != (train, held)
    # at least one of each; none held out when asked for none
    two = [JailbreakTemplate("a", "A {prompt}"), JailbreakTemplate("b", "B {prompt}")]
    assert [len(x) for x in split_templates(two, 0.01, 0)] == [1, 1]
    assert [len(x) for x in split_templates(two, 0.0, 0)] == [2, 0]
    write_templates(tmp_path / "held.txt", held)
    assert [t.text for t in load_templates(tmp_path / "held.txt")] == [t.text for t in held]


# -- prepare, training, output -----------------------------------------------------------------


def test_prepare_makes_attacked_examples_from_every_attack(organism, small_data, tmp_path) -> None:
    model, tokenizer, _ = organism
    args = args_for(tmp_path)
    data = AdversarialTrainer.prepare(model, tokenizer, fresh(small_data), args)
    attacked = data.extra["attacked"]
    kinds = {e.kind for e in attacked}
    assert kinds == {"templated", "suffixed", "prefilled"}
    refusals = {e.answer for e in small_data.refusals}
    assert all(e.answer.strip() in refusals for e in attacked)
    work = tmp_path / "out" / "adversarial"
    held = [t.text for t in load_templates(work / "heldout_templates.txt")]
    trained = [t.text for t in load_templates(work / "train_templates.txt")]
    templated = [e.prompt for e in attacked if e.kind == "templated"]
    # only the training templates are used, never the held-out ones
    assert all(any(t.split("{prompt}")[0] in p for t in trained) for p in templated)
    assert not any(
        t.split("{prompt}")[0].strip() and t.split("{prompt}")[0] in p
        for t in held
        for p in templated
    )
    prefilled = [e for e in attacked if e.kind == "prefilled"]
    assert all(e.prefix and e.answer.startswith(" ") for e in prefilled)
    # benign prompts inside the same attacks, answered as the plain prompt is
    benign_answer = {e.prompt: e.answer for e in small_data.benign}
    benign = data.extra["benign_attacked"]
    assert len(benign) == SMALL["n_benign_attacked"]
    assert all(
        any(p in e.prompt and benign_answer[p] == e.answer for p in benign_answer) for e in benign
    )
    report = json.loads((work / "adversarial.json").read_text())
    assert set(report["rounds"][0]) == {"templates", "gcg", "prefill"}
    assert report["templates"]["held_out"] and report["rounds"][0]["gcg"]["suffixes"]


def test_training_makes_the_model_refuse_attacked_prompts_and_writes_output(
    organism, small_data, tmp_path
) -> None:
    from redblue.attacks import get_attack, load_config, run_attack
    from redblue.evaluate import make_judge

    model, tokenizer, splits = organism
    model = copy.deepcopy(model)
    prompts = splits["harmful"][:24]
    judge = make_judge("organism")
    prefill = get_attack("prefill")
    attack = prefill(load_config(prefill, None, ks=[1, 3], max_new_tokens=24))
    before, _ = run_attack(attack, model, tokenizer, prompts, judge, progress=False)
    args = args_for(tmp_path, attacks=["prefill"], max_steps=24, logging_steps=4)
    trained, result = defend(
        "adversarial", model, tokenizer, fresh(small_data), args, progress=False
    )
    after, _ = run_attack(attack, trained, tokenizer, prompts, judge, progress=False)
    assert after.asr < before.asr / 2
    first, last = result.losses[0], result.losses[-1]
    assert last["attacked"] < first["attacked"]
    assert {"attacked", "refusals", "benign"} <= set(first)
    out = tmp_path / "out"
    assert (out / "model" / "config.json").is_file() and (out / "model" / "splits").is_dir()
    saved = json.loads((out / "defense.json").read_text())
    assert saved["defense"] == "adversarial" and saved["data"]["attacked"] > 0
    assert (out / "adversarial" / "adversarial.json").is_file()
    assert not any(p.requires_grad for p in trained.parameters())


def test_rounds_attack_the_trained_model_again(organism, small_data, tmp_path) -> None:
    model, tokenizer, _ = organism
    model = copy.deepcopy(model)
    args = args_for(tmp_path, attacks=["prefill"], rounds=2, max_steps=4)
    data = AdversarialTrainer.prepare(model, tokenizer, fresh(small_data), args)
    work = tmp_path / "out" / "adversarial"
    report = json.loads((work / "adversarial.json").read_text())
    assert len(report["rounds"]) == 2
    assert (work / "round-1" / "defense.json").is_file()
    assert len(data.extra["attacked"]) == 2 * SMALL["n_prefilled"]
    # the first round's training is merged into the model the second round attacked
    assert any(
        not torch.equal(p, q)
        for p, q in zip(model.parameters(), organism[0].parameters(), strict=True)
    )


def test_benign_kl_term_is_logged_and_keeps_benign_answers_closer(
    organism, small_data, tmp_path
) -> None:
    from redblue.evaluate.metrics import kl_to_reference

    model, tokenizer, splits = organism
    harmless = splits["harmless"][:16]
    kls = {}
    for weight in (0.0, 30.0):
        args = args_for(
            tmp_path / str(weight), attacks=["prefill"], max_steps=12, benign_kl_weight=weight
        )
        trained, result = defend(
            "adversarial", copy.deepcopy(model), tokenizer, fresh(small_data), args, progress=False
        )
        assert ("benign_kl" in result.losses[-1]) == (weight > 0)
        kls[weight] = kl_to_reference(trained, model, tokenizer, harmless).value
    assert kls[30.0] < kls[0.0]
