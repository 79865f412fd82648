"""Ablation, addition and weight orthogonalization on every ArchSpec family."""

from __future__ import annotations

import pytest
import torch
import transformers

from redblue.interventions import ablate, add, orthogonalize
from redblue.models import adapt, encode_batch, export, record_residual

PROMPTS = ["How do I bake bread?", "Tell me about the sea and the sky."]


def _direction(model, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(adapt(model).d_model, generator=g)


def _logits(model, tok):
    with torch.no_grad():
        return model(**encode_batch(tok, PROMPTS).model_inputs()).logits


def test_orthogonalized_weights_equal_run_time_ablation(tiny) -> None:
    model, tok = tiny
    r = _direction(model)
    base = _logits(model, tok)
    with ablate(model, r):
        ablated = _logits(model, tok)
    edited = orthogonalize(model, r, inplace=False)
    assert (ablated - base).abs().max() > 1e-2  # the direction mattered
    torch.testing.assert_close(_logits(edited, tok), ablated, atol=1e-4, rtol=0)
    torch.testing.assert_close(_logits(model, tok), base)  # the original is untouched


def test_ablation_leaves_no_component_in_the_stream(tiny) -> None:
    model, tok = tiny
    r = _direction(model, seed=1)
    unit = r / r.norm()
    batch = encode_batch(tok, PROMPTS)
    with torch.no_grad(), ablate(model, r), record_residual(model) as rec:
        model(**batch.model_inputs())
    for layer, (hidden,) in rec.items():
        along = (hidden @ unit).abs().max()
        assert along <= 1e-4 * hidden.norm(dim=-1).max(), (layer, float(along))


def test_hooks_are_removed_on_exit_error_and_by_handle(llama) -> None:
    model, tok = llama
    base = _logits(model, tok)
    r = _direction(model)
    with pytest.raises(RuntimeError, match="boom"), ablate(model, r):
        raise RuntimeError("boom")
    torch.testing.assert_close(_logits(model, tok), base)
    handle = add(model, r, layer=1, alpha=3.0)
    assert not torch.allclose(_logits(model, tok), base)
    handle.remove()
    handle.remove()  # idempotent
    torch.testing.assert_close(_logits(model, tok), base)


def test_nested_interventions_remove_only_their_own(llama) -> None:
    model, tok = llama
    r = _direction(model)
    outer = ablate(model, r)
    with outer:
        only_outer = _logits(model, tok)
        with add(model, _direction(model, seed=2), layer=1, alpha=2.0):
            assert not torch.allclose(_logits(model, tok), only_outer)
        torch.testing.assert_close(_logits(model, tok), only_outer)
    assert not outer.active


def test_add_changes_only_from_its_layer_and_only_prompt_positions(llama) -> None:
    model, tok = llama
    batch = encode_batch(tok, PROMPTS)
    vector = _direction(model)
    with torch.no_grad(), record_residual(model, where="pre") as before:
        model(**batch.model_inputs())
    with (
        torch.no_grad(),
        add(model, vector, layer=1, alpha=0.5),
        record_residual(model, where="pre") as after,
    ):
        model(**batch.model_inputs())
    torch.testing.assert_close(after[0][0], before[0][0])  # layer 0 untouched
    torch.testing.assert_close(after[1][0], before[1][0] + 0.5 * vector)
    # One-token forward passes are generated tokens: "prompt" leaves them alone, "all" does not.
    one = {"input_ids": batch.input_ids[:, -1:]}
    with torch.no_grad():
        plain = model(**one).logits
        with add(model, vector, layer=1, alpha=2.0):
            torch.testing.assert_close(model(**one).logits, plain)
        with add(model, vector, layer=1, alpha=2.0, positions="all"):
            assert not torch.allclose(model(**one).logits, plain)


def test_add_alpha_zero_is_identity_and_bad_arguments(llama) -> None:
    model, tok = llama
    base = _logits(model, tok)
    with add(model, _direction(model), layer=0, alpha=0.0):
        torch.testing.assert_close(_logits(model, tok), base)
    with pytest.raises(ValueError, match="layer="):
        add(model, _direction(model))
    with pytest.raises(ValueError, match="positions"):
        add(model, _direction(model), layer=0, positions="everywhere")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero vector"):
        ablate(model, torch.zeros(adapt(model).d_model))


@pytest.mark.parametrize("name", ["gemma2", "gpt2", "llama"])
def test_exported_orthogonalized_model_loads_without_redblue(tiny_zoo, name, tmp_path) -> None:
    model, tok = tiny_zoo[name]
    r = _direction(model)
    with ablate(model, r):
        expected = _logits(model, tok)
    edited = orthogonalize(model, r, inplace=False)
    path = export(edited, tok, tmp_path / "edited")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    torch.testing.assert_close(_logits(reloaded, tok), expected, atol=1e-4, rtol=0)
    # A tied unembedding (gemma2, gpt2) was untied so the logits still read the old embedding.
    assert not adapt(reloaded).tied_embeddings()
