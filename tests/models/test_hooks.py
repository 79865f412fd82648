"""Residual-stream hooks: exact no-ops, exact removal, pre/post agreement, nesting."""

from __future__ import annotations

import pytest
import torch

from redblue.models import adapt, encode_batch, hook_residual, record_residual


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch.model_inputs()).logits


@pytest.fixture
def batch(tiny):
    _, tok = tiny
    return encode_batch(tok, ["Tell me about the sea.", "How do I bake bread?"])


def test_adding_zero_is_bit_identical_and_removal_restores(tiny, batch) -> None:
    model, _ = tiny
    before = _logits(model, batch)
    for where in ("pre", "post"):
        with hook_residual(model, lambda h: h + 0.0, where=where):
            assert torch.equal(_logits(model, batch), before)
    h = hook_residual(model, lambda h: h + 1.0)
    changed = _logits(model, batch)
    h.remove()
    assert not torch.equal(changed, before)
    assert torch.equal(_logits(model, batch), before)


def test_hooks_are_removed_on_error(tiny, batch) -> None:
    model, _ = tiny
    before = _logits(model, batch)
    with pytest.raises(RuntimeError, match="boom"), hook_residual(model, lambda h: h * 3.0):
        raise RuntimeError("boom")
    assert torch.equal(_logits(model, batch), before)
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in adapt(model).blocks)


def test_pre_of_next_block_equals_post_of_previous(tiny, batch) -> None:
    model, _ = tiny
    with record_residual(model, where="post") as post, record_residual(model, where="pre") as pre:
        _logits(model, batch)
    assert set(post) == set(pre) == {0, 1}
    torch.testing.assert_close(pre[1][0], post[0][0], rtol=0, atol=0)
    assert post[0][0].shape == (*batch.input_ids.shape, adapt(model).d_model)


def test_only_the_patched_layer_changes(tiny, batch) -> None:
    model, _ = tiny
    with record_residual(model) as clean:
        _logits(model, batch)
    with hook_residual(model, lambda h: h * 2.0, layers=[1]), record_residual(model) as patched:
        _logits(model, batch)
    assert torch.equal(clean[0][0], patched[0][0])  # upstream untouched
    torch.testing.assert_close(patched[1][0], clean[1][0] * 2.0)  # recorded after the patch


def test_nested_groups_remove_only_their_own(tiny, batch) -> None:
    model, _ = tiny
    before = _logits(model, batch)
    outer = hook_residual(model, lambda h: h + 0.5, layers=[0])
    with hook_residual(model, lambda h: h - 0.25, layers=[0]):
        both = _logits(model, batch)
    only_outer = _logits(model, batch)
    assert not torch.equal(both, only_outer)
    outer.remove()
    outer.remove()  # idempotent
    assert torch.equal(_logits(model, batch), before)


def test_tuple_returning_blocks_are_handled(llama) -> None:
    """Older transformers return ``(hidden, ...)`` from blocks: both shapes work."""
    model, _ = llama
    block = adapt(model).block(0)
    wrap = block.register_forward_hook(lambda m, i, o: (o, None))
    try:
        with (
            record_residual(model, layers=[0]) as rec,
            hook_residual(model, lambda h: h * 0.0, layers=[0]),
        ):
            # the hook zeroes the stream inside the tuple; the recorder (registered first) saw it before
            out = block(
                torch.randn(1, 3, adapt(model).d_model),
                position_embeddings=model.model.rotary_emb(
                    torch.zeros(1, 3), torch.arange(3)[None]
                ),
            )
        assert isinstance(out, tuple)
        assert torch.count_nonzero(out[0]) == 0
        assert rec[0][0].abs().sum() > 0
    finally:
        wrap.remove()
