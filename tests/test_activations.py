"""Streaming means equal the plain mean of recorded activations; the cache is reused."""

from __future__ import annotations

import pytest
import torch

from redblue.activations import collect, collect_means, model_fingerprint, resolve_positions
from redblue.errors import DataError
from redblue.models import encode_batch, record_residual

PROMPTS = [
    "How do I bake bread?",
    "Tell me about the sea.",
    "Write a poem about a river.",
    "What is two plus three?",
    "Explain how a bicycle stays upright.",
]


def _reference(model, tok, texts, where):
    """Every prompt's residual at the post-instruction columns, from record_residual."""
    batch = encode_batch(tok, texts)
    cols = batch.post_instruction_columns
    with torch.no_grad(), record_residual(model, where=where) as rec:
        model(**batch.model_inputs())
    return torch.stack([rec[layer][0][:, cols] for layer in sorted(rec)], dim=1), cols


@pytest.mark.parametrize("where", ["pre", "post"])
def test_streaming_means_equal_recorded_means(tiny, where) -> None:
    model, tok = tiny
    reference, cols = _reference(model, tok, PROMPTS, where)
    for batch_size in (1, 2, 5):
        means = collect_means(
            model, tok, PROMPTS, where=where, batch_size=batch_size, progress=False
        )
        assert means.positions == cols and means.count == len(PROMPTS)
        torch.testing.assert_close(means.means, reference.mean(0), atol=1e-5, rtol=1e-5)


def test_collect_keeps_every_activation_and_caches(llama, tmp_path) -> None:
    model, tok = llama
    reference, _ = _reference(model, tok, PROMPTS, "pre")
    acts = collect(model, tok, PROMPTS, batch_size=2, cache_dir=tmp_path, progress=False)
    assert acts.values.shape == reference.shape
    torch.testing.assert_close(acts.values, reference, atol=1e-5, rtol=1e-5)
    assert acts.path is not None and acts.path.is_file()
    assert acts.model_hash in acts.path.name and acts.data_hash in acts.path.name
    # Reused: the file is read back, not recomputed (a poisoned file proves it).
    from safetensors.torch import save_file

    save_file({"values": torch.zeros_like(acts.values)}, str(acts.path))
    again = collect(model, tok, PROMPTS, batch_size=2, cache_dir=tmp_path, progress=False)
    assert torch.count_nonzero(again.values) == 0
    # Other data: another file.
    other = collect(model, tok, PROMPTS[:3], cache_dir=tmp_path, progress=False)
    assert other.path != acts.path and torch.count_nonzero(other.values) > 0


def test_means_memory_does_not_grow_with_prompts(llama) -> None:
    model, tok = llama
    small = collect_means(model, tok, PROMPTS[:2], progress=False)
    large = collect_means(model, tok, PROMPTS * 8, progress=False)
    assert small.means.shape == large.means.shape
    torch.testing.assert_close(
        large.means, collect_means(model, tok, PROMPTS, progress=False).means
    )


def test_hooks_are_removed_after_collection_and_on_error(llama) -> None:
    model, tok = llama
    blocks = model.model.layers
    collect_means(model, tok, PROMPTS, progress=False)
    assert all(not b._forward_pre_hooks for b in blocks)
    with pytest.raises(DataError):
        collect_means(model, tok, [], progress=False)
    assert all(not b._forward_pre_hooks for b in blocks)


def test_positions() -> None:
    assert resolve_positions("post_instruction", 3) == [-3, -2, -1]
    assert resolve_positions("last", 3) == [-1]
    assert resolve_positions([-2, -1], 3) == [-2, -1]
    with pytest.raises(ValueError, match="counted from the end"):
        resolve_positions([0, 1], 3)
    with pytest.raises(ValueError, match="post_instruction"):
        resolve_positions("middle", 3)


def test_fingerprint_tells_weights_apart(tiny_zoo) -> None:
    llama, _ = tiny_zoo["llama"]
    qwen, _ = tiny_zoo["qwen2"]
    assert model_fingerprint(llama) == model_fingerprint(llama)
    assert model_fingerprint(llama) != model_fingerprint(qwen)
