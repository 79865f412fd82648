"""Batched generation: batch-invariant greedy decoding, seeds, stop strings, OOM back-off."""

from __future__ import annotations

import pytest
import torch

from redblue.errors import ModelError
from redblue.models import GenerationSettings, generate

PROMPTS = ["Tell me about the sea.", "Hi", "How do I bake bread at home with flour?"]


def test_greedy_is_the_same_batched_or_alone(llama) -> None:
    model, tok = llama
    settings = GenerationSettings(max_new_tokens=6, batch_size=3)
    batched = generate(model, tok, PROMPTS, settings, progress=False)
    alone = [generate(model, tok, [p], settings, progress=False)[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.instruction for c in batched] == PROMPTS
    for c in batched:
        assert 0 <= c.n_tokens <= 6
        assert c.finish in {"eos", "length"}


def test_sampling_is_reproducible_and_leaves_global_rng(llama) -> None:
    model, tok = llama
    settings = GenerationSettings(max_new_tokens=8, temperature=1.5, seed=7)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = generate(model, tok, PROMPTS, settings, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    b = generate(model, tok, PROMPTS, settings, progress=False)
    c = generate(
        model,
        tok,
        PROMPTS,
        GenerationSettings(max_new_tokens=8, temperature=1.5, seed=8),
        progress=False,
    )
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.text for x in a] != [x.text for x in c]


def test_stop_strings_cut_the_text(llama) -> None:
    model, tok = llama
    free = generate(model, tok, PROMPTS[:1], GenerationSettings(max_new_tokens=12), progress=False)[
        0
    ]
    if len(free.text) < 3:
        pytest.skip("the random model stopped too early to test stop strings")
    stop = free.text[1:3]
    cut = generate(
        model, tok, PROMPTS[:1], GenerationSettings(max_new_tokens=12, stop=(stop,)), progress=False
    )[0]
    assert cut.finish == "stop"
    assert stop not in cut.text
    assert free.text.startswith(cut.text)


def test_out_of_memory_halves_the_batch(llama, monkeypatch) -> None:
    model, tok = llama
    real = model.generate
    sizes: list[int] = []

    def tight(*args, **kwargs):
        n = kwargs["input_ids"].shape[0]
        sizes.append(n)
        if n > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", tight)
    out = generate(
        model, tok, PROMPTS, GenerationSettings(max_new_tokens=3, batch_size=4), progress=False
    )
    assert len(out) == 3
    assert sizes[:3] == [3, 2, 1]  # 4 -> 2 -> 1, then the rest one by one
    monkeypatch.setattr(
        model, "generate", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("oom"))
    )
    with pytest.raises(ModelError, match="batch size 1"):
        generate(model, tok, PROMPTS[:1], GenerationSettings(batch_size=1), progress=False)


@pytest.mark.parametrize(
    "kwargs", [{"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"batch_size": 0}]
)
def test_bad_settings(kwargs) -> None:
    with pytest.raises(ValueError):
        GenerationSettings(**kwargs)
