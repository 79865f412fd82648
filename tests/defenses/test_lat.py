"""Latent adversarial training: arguments, the perturbation hook, PGD, training, output."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from redblue.defenses import DefenseData, defend, get_defense, load_arguments
from redblue.defenses.data import StreamDataset, collate_streams, encode_example
from redblue.defenses.lat import (
    LATArguments,
    LATTrainer,
    default_layers,
    log1m_loss,
    perturbed,
)
from redblue.errors import ConfigError
from redblue.models.chat import pad_token_id


def args_for(tmp_path: Path, **values) -> LATArguments:
    values = {"output_dir": str(tmp_path / "out"), "logging_steps": 2} | values
    return load_arguments(get_defense("lat"), **values)  # type: ignore[return-value]


# -- arguments ---------------------------------------------------------------------------------


def test_arguments_round_trip_through_a_file(tmp_path) -> None:
    config = tmp_path / "lat.toml"
    config.write_text("lat_layers = [1, 2]\nepsilon_scale = 0.2\ninner_steps = 3\n")
    args = load_arguments(get_defense("lat"), config, away_harmful_weight=0.5)
    assert isinstance(args, LATArguments)
    assert (args.lat_layers, args.epsilon_scale, args.inner_steps, args.away_harmful_weight) == (
        [1, 2],
        0.2,
        3,
        0.5,
    )
    shown = args.redblue_dict()
    json.dumps(shown)
    assert shown["lat_layers"] == [1, 2] and shown["epsilon"] is None
    assert get_defense("lat") is LATTrainer


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epsilon": 0.0}, "epsilon must be > 0"),
        ({"epsilon_scale": -1.0}, "epsilon_scale must be > 0"),
        ({"inner_steps": 0}, "inner_steps must be >= 1"),
        ({"inner_step_scale": 0.0}, "inner_step_scale must be > 0"),
        ({"lat_layers": [-1]}, "0-based"),
        ({"away_harmful_weight": -0.1}, "weights must be >= 0"),
    ],
)
def test_bad_arguments_are_config_errors(values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_arguments(get_defense("lat"), **values)


def test_unknown_argument_names_the_close_ones() -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        load_arguments(get_defense("lat"), epsilon_scal=0.3)


def test_default_layers_follow_the_depth_and_skip_the_last_block() -> None:
    assert default_layers(32) == [8, 16, 24]
    assert default_layers(4) == [1, 2]
    assert default_layers(2) == [0]
    assert default_layers(1) == [0]


# -- the perturbation and the away loss --------------------------------------------------------


def test_perturbation_changes_only_later_positions_and_is_removed(llama) -> None:
    model, _ = llama
    ids = torch.arange(3, 11).reshape(1, 8)
    with torch.no_grad():
        before = model(input_ids=ids).logits
        delta = torch.zeros(1, 4, model.config.hidden_size)
        delta[0, 2] = 1.0
        mask = torch.tensor([[True, True, True, False]])
        with perturbed(model, {0: delta}, mask):
            during = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
        # a masked-out position is not perturbed
        with perturbed(model, {0: delta}, torch.tensor([[True, True, False, True]])):
            masked = model(input_ids=ids).logits
    assert torch.equal(before[:, :2], during[:, :2])  # causal: earlier positions untouched
    assert not torch.allclose(before[:, 2:], during[:, 2:])
    assert torch.equal(before, after) and torch.equal(before, masked)
    with pytest.raises(RuntimeError), perturbed(model, {0: delta}, mask):
        raise RuntimeError("boom")
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)


def test_log1m_loss_matches_its_definition(llama) -> None:
    model, _ = llama
    ids = torch.arange(3, 9).reshape(1, 6)
    labels = torch.tensor([[-100, -100, -100, 6, 7, 8]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        loss = log1m_loss(model, inputs)
        p = torch.softmax(model(input_ids=ids).logits.float(), -1)[0, 2:5]
    expected = -torch.log(1 - p[torch.arange(3), torch.tensor([6, 7, 8])]).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


# -- PGD ---------------------------------------------------------------------------------------


def _trainer(organism, data: DefenseData, args: LATArguments) -> tuple[LATTrainer, dict]:
    """A trainer as ``defend`` makes one, and one batch."""
    from peft import get_peft_model

    from redblue.defenses.base import lora_config

    model, tokenizer, _ = organism
    data = LATTrainer.prepare(model, tokenizer, copy.deepcopy(data), args)
    streams = {
        name: [encode_example(tokenizer, e) for e in rows]
        for name, rows in LATTrainer.streams(data, args).items()
    }
    collate = collate_streams(pad_token_id(tokenizer))
    peft_model = get_peft_model(copy.deepcopy(model), lora_config(model, args))
    dataset = StreamDataset(streams)
    trainer = LATTrainer(model=peft_model, args=args, train_dataset=dataset, data_collator=collate)
    return trainer, collate([dataset[i] for i in range(6)])


def test_pgd_stays_in_the_ball_on_the_prompt_and_finds_harm(organism, small_data, tmp_path) -> None:
    trainer, batch = _trainer(organism, small_data, args_for(tmp_path, inner_steps=4))
    model = trainer.model
    harmful = batch["harmful"]
    refusal = trainer.paired_refusals(harmful)
    # the pairs share their prompt, token for token
    for h, r, hm, rm in zip(
        harmful["input_ids"],
        refusal["input_ids"],
        harmful["response_mask"],
        refusal["response_mask"],
        strict=True,
    ):
        n = int(hm.nonzero()[0])
        assert int(rm.nonzero()[0]) == n and torch.equal(h[:n], r[:n])
    deltas, mask, parts = trainer.attack(model, harmful, refusal)
    eps = trainer.epsilons(model, harmful)
    assert sorted(deltas) == [1, 2] and all(v > 0 for v in eps.values())
    for layer, delta in deltas.items():
        norms = delta.norm(dim=-1)
        assert float(norms.max()) <= eps[layer] * (1 + 1e-4)
        assert float(norms[~mask].abs().max()) == 0.0
        assert float(norms[mask].min()) > 0.5 * eps[layer]
    with torch.no_grad():
        clean_harmful = float(trainer.sft_loss(model, harmful))
        clean_away = float(log1m_loss(model, refusal))
    # the organism refuses; the adversary makes the refusal unlikely and the harm likelier
    assert parts["adv_away_refusal"] < 0.75 * clean_away
    assert parts["adv_toward_harmful"] < clean_harmful


# -- training and output -----------------------------------------------------------------------


def test_lat_resists_its_own_attack_and_ablation_and_writes_its_output(
    organism, organism_direction, small_data, tmp_path
) -> None:
    from redblue.interventions import ablate
    from redblue.models import GenerationSettings, generate
    from redblue.organism.judge import judge

    model, tokenizer, splits = organism
    probe = args_for(tmp_path, inner_steps=4)
    trainer, batch = _trainer(organism, small_data, probe)
    harmful = batch["harmful"]
    refusal = trainer.paired_refusals(harmful)

    def attacked_harmful_loss(m) -> float:
        # the same bounds before and after (measured once, on the model before training)
        return trainer.attack(m, harmful, refusal)[2]["adv_toward_harmful"]

    prompts = splits["harmful"][:16]

    def ablated_compliance(m) -> float:
        with ablate(m, organism_direction):
            answers = generate(
                m,
                tokenizer,
                prompts.instructions,
                GenerationSettings(max_new_tokens=24),
                progress=False,
            )
        verdicts = [judge(a.text, p.category) for a, p in zip(answers, prompts, strict=True)]
        return sum(v.complied for v in verdicts) / len(verdicts)

    copied = copy.deepcopy(model)
    before_loss = attacked_harmful_loss(trainer.model)
    before_ablated = ablated_compliance(copied)
    args = args_for(tmp_path, max_steps=12, learning_rate=2e-3)
    trained, result = defend(
        "lat", copied, tokenizer, copy.deepcopy(small_data), args, progress=False
    )

    assert result.defense == "lat" and result.steps == 12
    logged = result.losses[-1]
    assert {"adv_toward_harmful", "adv_away_refusal", "refusal", "away_harmful", "benign"} <= set(
        logged
    )
    assert result.losses[-1]["refusal"] < result.losses[0]["refusal"]
    out = tmp_path / "out"
    assert (out / "model" / "config.json").is_file() and (out / "defense.json").is_file()
    assert any((out / "model").glob("*.safetensors"))
    assert json.loads((out / "defense.json").read_text())["arguments"]["epsilon_scale"] == (
        args.epsilon_scale
    )
    # the harmful answer stays unlikely under the adversary, and ablation breaks it less
    assert attacked_harmful_loss(trained) > before_loss
    assert ablated_compliance(trained) < before_ablated
