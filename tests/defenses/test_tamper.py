"""Tamper resistance: the simulated fine-tuning attack, its hooks, the entropy loss, and
circuit breakers trained with it."""

from __future__ import annotations

import copy

import pytest
import torch

from redblue.defenses import defend, get_defense, load_arguments
from redblue.defenses.tamper import (
    LowRank,
    answer_entropy,
    attached,
    output_projections,
    simulate_finetune,
    tamper_loss,
)
from redblue.errors import ConfigError


def _batch(model, n: int = 4, width: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (n, width), generator=generator)
    labels = ids.clone()
    labels[:, : width // 2] = -100  # the "prompt"
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_output_projections_are_every_blocks_attention_and_mlp_writers(llama) -> None:
    model, _ = llama
    modules = output_projections(model)
    n = model.config.num_hidden_layers
    assert len(modules) == 2 * n
    assert modules[0] is model.model.layers[0].self_attn.o_proj
    assert modules[-1] is model.model.layers[n - 1].mlp.down_proj


def test_attached_adds_the_low_rank_update_and_always_removes_it(llama) -> None:
    model, _ = llama
    module = model.model.layers[0].mlp.down_proj
    x = torch.randn(2, 3, module.in_features)
    generator = torch.Generator().manual_seed(0)
    adapter = LowRank(
        torch.randn(4, module.in_features, generator=generator),
        torch.randn(module.out_features, 4, generator=generator),
        0.5,
    )
    plain = module(x)
    with attached([module], [adapter]):
        hooked = module(x)
    expected = plain + 0.5 * (x @ adapter.a.T @ adapter.b.T)
    assert torch.allclose(hooked, expected, atol=1e-5)
    assert torch.equal(module(x), plain)
    with pytest.raises(RuntimeError, match="boom"), attached([module], [adapter]):
        raise RuntimeError("boom")
    assert torch.equal(module(x), plain)  # removed on error too


def test_answer_entropy_reads_only_answer_tokens_in_units_of_log_vocab() -> None:
    vocab = 50
    labels = torch.tensor([[-100, -100, 7, 8]])
    flat = torch.zeros(1, 4, vocab)
    assert answer_entropy(flat, labels).item() == pytest.approx(1.0)
    sharp = torch.zeros(1, 4, vocab)
    sharp[0, 1:3, 0] = 100.0  # the positions that predict tokens 2 and 3
    assert answer_entropy(sharp, labels).item() == pytest.approx(0.0, abs=1e-6)
    sharp[0, 0, :] = 0.0
    sharp[0, 3, :] = 0.0  # positions that predict nothing labelled do not count
    assert answer_entropy(sharp, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_the_simulated_attack_learns_and_leaves_the_model_alone(llama) -> None:
    model, _ = llama
    model = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = _batch(model)
    modules = output_projections(model)
    plain = model(**batch).loss.item()
    adapters = simulate_finetune(
        model, modules, [batch] * 8, learning_rate=1e-2, generator=torch.Generator().manual_seed(0)
    )
    with attached(modules, adapters), torch.no_grad():
        attacked = model(**batch).loss.item()
    assert attacked < plain - 0.1
    assert all(not a.a.requires_grad and not a.b.requires_grad for a in adapters)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
    again = simulate_finetune(
        model, modules, [batch] * 8, learning_rate=1e-2, generator=torch.Generator().manual_seed(0)
    )
    assert all(torch.equal(x.b, y.b) for x, y in zip(adapters, again, strict=True))  # seeded


def test_tamper_loss_is_negated_entropy_with_a_gradient_for_the_defender(llama) -> None:
    model, _ = llama
    model = copy.deepcopy(model)
    batches = [_batch(model, seed=i) for i in range(3)]
    loss = tamper_loss(model, model, batches, generator=torch.Generator().manual_seed(0))
    assert -1.0 <= loss.item() <= 0.0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="at least one batch"):
        tamper_loss(model, model, batches[:1])


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"tamper_weight": -1.0}, "tamper_weight"),
        ({"tamper_steps": 0}, "tamper_steps"),
        ({"retain_sft_weight": -1.0}, "retain_sft_weight"),
    ],
)
def test_bad_tamper_arguments_are_config_errors(values, words) -> None:
    with pytest.raises(ConfigError) as info:
        load_arguments(get_defense("circuit_breakers"), **values)
    assert words in str(info.value)


def _train_circuit_breakers(organism, data, tmp_path, **values) -> list[dict[str, float]]:
    """The logged losses of a few circuit-breaker steps on the organism, with ``values`` set."""
    model, tokenizer, _ = organism
    settings = {"output_dir": str(tmp_path / "out"), "logging_steps": 1, "save_steps": 100}
    args = load_arguments(get_defense("circuit_breakers"), **(settings | values))
    _, result = defend(
        "circuit_breakers", copy.deepcopy(model), tokenizer, data, args, progress=False
    )
    assert result.arguments.get("tamper_weight", 0.0) == values.get("tamper_weight", 0.0)
    return result.losses


def test_circuit_breakers_train_with_the_tamper_loss(organism, small_data, tmp_path) -> None:
    losses = _train_circuit_breakers(
        organism,
        small_data,
        tmp_path,
        max_steps=4,
        tamper_weight=1.0,
        tamper_steps=2,
        retain_sft_weight=1.0,
    )
    assert len(losses) == 4
    assert all("tamper" in row and -1.0 <= row["tamper"] <= 0.0 for row in losses)
    assert all(row["benign_sft"] > 0 for row in losses)


def test_without_the_tamper_loss_no_attack_is_simulated(organism, small_data, tmp_path) -> None:
    losses = _train_circuit_breakers(organism, small_data, tmp_path, max_steps=2)
    assert losses and not any("tamper" in row or "benign_sft" in row for row in losses)
