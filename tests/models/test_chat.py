"""Chat rendering, post-instruction positions and left padding."""

from __future__ import annotations

import pytest
import torch

from redblue.models import encode_batch, encode_chat, post_instruction_tokens, render_chat
from redblue.models.chat import PLAIN_TEMPLATE, left_pad
from tests.tiny import make_tokenizer

PROMPTS = [
    "Tell me about the sea.",
    "How do I bake bread at home with flour, water and salt?",
    "Hi",
    "Write a short poem about a quiet river at night, please, in four lines.",
]


def test_post_instruction_tokens_match_the_family_template(tiny, family) -> None:
    _, tok = tiny
    for prompt in PROMPTS:
        enc = encode_chat(tok, prompt)
        post = "".join(tok.decode([enc.input_ids[i]]) for i in enc.post_instruction)
        assert post == family.post_instruction, prompt
        # they are the last tokens of the prompt, and the instruction ends right before them
        assert enc.post_instruction == list(
            range(len(enc.input_ids) - len(enc.post_instruction), len(enc.input_ids))
        )
        before = tok.decode(enc.input_ids[: enc.post_instruction[0]])
        assert before.rstrip().endswith(prompt.rstrip())


def test_post_instruction_tokens_with_system_prompt(tiny, family) -> None:
    _, tok = tiny
    if family.template is None or family.model_type == "mistral":
        pytest.skip("template has no system turn")
    rendered = render_chat(tok, "Tell me about the sea.", system="Be brief.")
    assert "Be brief." in rendered
    assert "".join(post_instruction_tokens(tok, system="Be brief.")) == family.post_instruction


def test_plain_fallback_for_base_models() -> None:
    tok = make_tokenizer(None)
    text = render_chat(tok, "Hello there", system="SYS")
    assert text == "SYS\n\n" + PLAIN_TEMPLATE.format(system="", instruction="Hello there")
    assert render_chat(tok, "Q2", history=[("Q1", "A1")]).startswith("User: Q1\nAssistant: A1\n")


def test_left_pad_masks_and_positions() -> None:
    ids, mask, pos = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_left_padding_leaves_last_token_logits_unchanged(tiny, family) -> None:
    model, tok = tiny
    batch = encode_batch(tok, PROMPTS)
    assert batch.attention_mask.sum(1).tolist() == [
        len(encode_chat(tok, p).input_ids) for p in PROMPTS
    ]
    with torch.no_grad():
        batched = model(**batch.model_inputs()).logits[:, -1]
        for row, prompt in enumerate(PROMPTS):
            alone = encode_batch(tok, [prompt])
            single = model(**alone.model_inputs()).logits[0, -1]
            torch.testing.assert_close(batched[row], single, atol=1e-5, rtol=0)


def test_batch_post_columns_are_shared(tiny, family) -> None:
    _, tok = tiny
    batch = encode_batch(tok, PROMPTS)
    n = len(encode_chat(tok, PROMPTS[0]).post_instruction)
    assert batch.n_post == n
    assert batch.post_instruction_columns == list(range(-n, 0))
    for row in range(len(PROMPTS)):
        tail = batch.input_ids[row, -n:].tolist()
        assert tok.decode(tail) == family.post_instruction


def test_template_that_rewrites_the_text_fails_clearly() -> None:
    tok = make_tokenizer("{% for m in messages %}{{ m['content'] | upper }}{% endfor %}")
    with pytest.raises(ValueError, match="cannot be found"):
        encode_chat(tok, "quiet river")


def test_prefill_follows_the_post_instruction_tokens(tiny, family) -> None:
    _, tok = tiny
    plain = encode_chat(tok, PROMPTS[0])
    filled = encode_chat(tok, PROMPTS[0], prefill="Sure, here is")
    assert filled.text == plain.text + "Sure, here is"
    assert filled.post_instruction == plain.post_instruction
    assert filled.n_prefill > 0
    assert (
        tok.decode(filled.input_ids[len(filled.input_ids) - filled.n_prefill :]).strip()
        == "Sure, here is"
    )
    batch = encode_batch(tok, PROMPTS, prefill="Sure, here is")
    cols = batch.post_instruction_columns
    assert len(cols) == batch.n_post and cols[-1] == -batch.n_prefill - 1
    for row in range(len(PROMPTS)):
        assert tok.decode(batch.input_ids[row, cols].tolist()) == family.post_instruction
