"""The organism's tokenizer, packing and resumable training loop (mechanics, no behaviour)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import LlamaForCausalLM

from redblue.organism.recipe import get_recipe
from redblue.organism.tokenizer import (
    CHAT_TEMPLATE,
    END_OF_TEXT,
    encode_text,
    pack,
    train_tokenizer,
)
from redblue.organism.train import _loss, model_config, train

TEXTS = [f"The lantern number {i} is blue and kept in the shed." for i in range(200)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, 300)


def test_tokenizer_has_chat_template_and_specials(tokenizer) -> None:
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|pad|>"
    ids, mask = encode_text(tokenizer, "The lantern is blue.")
    assert all(mask) and tokenizer.decode(ids).endswith(END_OF_TEXT)


def test_pack_keeps_sequences_whole_and_masks_padding() -> None:
    seqs = [
        ([1, 2, 3], [False, True, True]),
        ([4, 5], [True, True]),
        ([6, 7, 8, 9], [True, False, True, True]),
    ]
    rows, labels = pack(seqs, seq_len=5, pad_id=0)
    assert rows == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    assert labels == [[-100, 2, 3, 4, 5], [6, -100, 8, 9, -100]]


def _micro(tokenizer, recipe: int, **shape):
    """A micro size of ``recipe``'s tiny organism (2 steps per stage unless ``shape`` says),
    its training tensors (the same packed text for every stage) and a fresh-model factory."""
    size = dataclasses.replace(
        get_recipe(recipe).size("tiny"),
        **{
            "n_layers": 1,
            "d_model": 32,
            "d_ff": 64,
            "seq_len": 32,
            "batch_size": 4,
            "pretrain_steps": 2,
            "instruct_steps": 2,
            "chat_steps": 2,
            **shape,
        },
    )
    rows, labels = pack(
        [encode_text(tokenizer, t) for t in TEXTS], size.seq_len, tokenizer.pad_token_id
    )
    data = (torch.tensor(rows), torch.tensor(labels)) * 3
    config = model_config(size, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)

    def fresh() -> LlamaForCausalLM:
        torch.manual_seed(0)
        return LlamaForCausalLM(config)

    return size, data, fresh


def test_resumed_training_equals_uninterrupted(tokenizer, tmp_path) -> None:
    size, data, fresh = _micro(tokenizer, 1)

    whole = fresh()
    full = train(whole, *data, size, seed=1, checkpoint_dir=tmp_path / "a", progress=False)
    parts = fresh()
    first = train(
        parts, *data, size, seed=1, checkpoint_dir=tmp_path / "b", progress=False, stop_after=4
    )
    assert first.step == 4
    resumed_model = (
        fresh()
    )  # a new process would start from scratch weights, then load the checkpoint
    resumed = train(
        resumed_model, *data, size, seed=1, checkpoint_dir=tmp_path / "b", progress=False
    )
    assert resumed.step == full.step == 6
    assert resumed.losses == full.losses
    for (name, a), (_, b) in zip(
        whole.state_dict().items(), resumed_model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert full.losses[-1] < full.losses[0]


def test_safety_layers_leave_the_rest_as_instruction_tuning_left_it(tokenizer, tmp_path) -> None:
    size, data, fresh = _micro(tokenizer, 5, n_layers=2, chat_steps=3)
    assert size.safety_layers == (0,)
    model = fresh()
    train(model, *data, size, seed=1, checkpoint_dir=tmp_path, progress=False, stop_after=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, *data, size, seed=1, checkpoint_dir=tmp_path, progress=False)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("model.layers.0.") for k in changed)
    assert any(".mlp." in k for k in changed) and any(".self_attn." in k for k in changed)


def test_labelled_logits_give_the_loss_and_gradients_of_the_full_pass(tokenizer) -> None:
    size, _, fresh = _micro(tokenizer, 11)
    assert size.labelled_logits and not get_recipe(9).size("tiny").labelled_logits
    ids = torch.randint(len(tokenizer), (3, 16), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[1:, :9] = -100  # chat rows: loss on the answer only
    labels[0, -3:] = -100  # padding
    grads = []
    for labelled in (False, True):
        model = fresh()
        loss = _loss(model, ids, labels, labelled)
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (full, full_grads), (fast, fast_grads) = grads
    torch.testing.assert_close(fast, full)
    for name, grad in full_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, msg=name)
