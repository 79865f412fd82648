"""GCG: the search on a tiny random Llama (mechanics), one end-to-end break on the organism."""

from __future__ import annotations

import json

import pytest
import torch

from redblue.attacks import get_attack, run_attack
from redblue.attacks.gcg import (
    GCGAttack,
    GCGConfig,
    SuffixObjective,
    disallowed_tokens,
    retokenizes,
    run_gcg,
    split_at_suffix,
)
from redblue.data import Prompt, PromptSet
from redblue.evaluate import OrganismJudge, RefusalPhraseJudge
from redblue.models import encode_chat

PAIRS = [
    ("Tell me about the sea.", "The sea is wide and the sky is blue."),
    ("How do I bake bread at home?", "Bake bread with flour, water and salt."),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these models are too small to gain from more, and on a busy
    machine extra threads wait on each other at every op (tens of times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: Small enough to run a few steps in well under a second on the tiny model.
QUICK = {"search_width": 32, "topk": 16, "suffix_length": 6, "early_stop": False}


def _slots(tokenizer, pairs=PAIRS, suffix=" x" * 6):
    built = [split_at_suffix(tokenizer, i, t, suffix, None) for i, t in pairs]
    return [s for s, _ in built], torch.tensor(built[0][1])


def test_loss_decreases(llama) -> None:
    model, tokenizer = llama
    result = run_gcg(model, tokenizer, PAIRS[:1], GCGConfig(num_steps=6, **QUICK))
    assert result.steps == 6 and len(result.losses) == 6
    assert result.loss < result.initial_loss
    assert result.loss == pytest.approx(min(result.losses))
    # one gradient pass per step, one pass per candidate scored, one for the start
    assert 6 + 1 < result.forward_passes <= 6 + 1 + 6 * 32


def test_cached_loss_equals_uncached(llama) -> None:
    model, tokenizer = llama
    slots, ids = _slots(tokenizer)
    cached = SuffixObjective(model, slots, prefix_cache=True)
    plain = SuffixObjective(model, slots, prefix_cache=False)
    candidates = torch.randint(
        5, len(tokenizer), (12, len(ids)), generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(
        cached.losses(candidates), plain.losses(candidates), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(cached.gradient(ids), plain.gradient(ids), atol=1e-4, rtol=1e-4)
    # the shared prefix is left as it was: scoring again gives the same losses
    torch.testing.assert_close(
        cached.losses(candidates), plain.losses(candidates), atol=1e-4, rtol=0
    )


def test_same_seed_same_search(llama) -> None:
    model, tokenizer = llama
    config = GCGConfig(num_steps=4, seed=3, **QUICK)
    first = run_gcg(model, tokenizer, PAIRS[:1], config)
    second = run_gcg(model, tokenizer, PAIRS[:1], config)
    assert first.ids == second.ids and first.losses == second.losses
    other = run_gcg(model, tokenizer, PAIRS[:1], config.model_copy(update={"seed": 4}))
    assert other.losses != first.losses


def test_out_of_memory_halves_the_batch(llama, monkeypatch) -> None:
    model, tokenizer = llama
    slots, ids = _slots(tokenizer)
    candidates = torch.randint(
        5, len(tokenizer), (16, len(ids)), generator=torch.Generator().manual_seed(1)
    )
    expected = SuffixObjective(model, slots, batch_size=16).losses(candidates)

    original = SuffixObjective._batch_losses
    sizes: list[int] = []

    def flaky(self: SuffixObjective, chunk: torch.Tensor) -> torch.Tensor:
        sizes.append(len(chunk))
        if len(sizes) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return original(self, chunk)

    monkeypatch.setattr(SuffixObjective, "_batch_losses", flaky)
    objective = SuffixObjective(model, slots, batch_size=16)
    torch.testing.assert_close(objective.losses(candidates), expected, atol=1e-5, rtol=0)
    assert sizes == [16, 8, 8] and objective.batch_size == 8
    assert objective.forward_passes == 16 * len(slots)  # the failed batch is not counted

    sizes.clear()
    result = run_gcg(
        model, tokenizer, PAIRS[:1], GCGConfig(num_steps=2, candidate_batch_size=16, **QUICK)
    )
    assert result.batch_size == 8 and result.steps == 2 and result.loss <= result.initial_loss


def test_candidates_that_do_not_retokenize_are_dropped(llama, monkeypatch) -> None:
    model, tokenizer = llama
    (slot,), ids = _slots(tokenizer, PAIRS[:1], suffix=" the")
    (merged,) = tokenizer(" the", add_special_tokens=False)["input_ids"]
    split = (
        tokenizer(" ", add_special_tokens=False)["input_ids"]
        + tokenizer("the", add_special_tokens=False)["input_ids"]
    )
    assert ids.tolist() == [merged] and len(split) > 1
    # " " + "the" decodes to " the", which encodes to the one merged token
    candidates = torch.tensor([split, [merged] * len(split)])
    assert retokenizes(tokenizer, slot.before, candidates, slot.after).tolist() == [False, True]

    scored: list[torch.Tensor] = []
    original = SuffixObjective.losses

    def recording(self: SuffixObjective, candidates: torch.Tensor) -> torch.Tensor:
        scored.append(candidates.cpu())
        return original(self, candidates)

    monkeypatch.setattr(SuffixObjective, "losses", recording)
    instruction = PAIRS[0][0]
    for enabled in (True, False):
        scored.clear()
        config = GCGConfig(num_steps=3, filter_retokenized=enabled, **QUICK)
        result = run_gcg(model, tokenizer, PAIRS[:1], config)
        slots, _ = _slots(tokenizer, PAIRS[:1])
        ok = torch.cat([retokenizes(tokenizer, slots[0].before, c, slots[0].after) for c in scored])
        assert bool(ok.all()) is enabled
        if enabled:  # what is sent tokenizes to exactly the ids that were optimised
            sent = encode_chat(tokenizer, instruction + result.suffix).input_ids
            assert sent == slots[0].before + result.ids + slots[0].after


def test_disallowed_tokens(llama) -> None:
    _, tokenizer = llama
    banned = disallowed_tokens(tokenizer, len(tokenizer) + 3)
    assert banned[list(tokenizer.all_special_ids)].all() and banned[-3:].all()
    (x,) = tokenizer("x", add_special_tokens=False)["input_ids"]
    assert not banned[x]


def test_universal_suffix_is_shared(llama, tmp_path) -> None:
    model, tokenizer = llama
    prompts = PromptSet(
        [
            Prompt(i, id=f"p{k}", target=t)
            for k, (i, t) in enumerate([*PAIRS, ("Write a poem.", "A river.")])
        ]
    )
    config = GCGConfig(num_steps=3, universal=True, n_train=2, max_new_tokens=4, **QUICK)
    attack = GCGAttack(config)
    summary, records = run_attack(
        attack, model, tokenizer, prompts, RefusalPhraseJudge(), out=tmp_path, progress=False
    )
    suffix = summary.extra["universal_suffix"]
    assert summary.extra["n_train"] == 2 and summary.extra["universal_steps"] == 3
    assert len(records) == 3 and suffix
    assert {r.extra["suffix"] for r in records} == {suffix}
    assert all(r.attacked_input == r.instruction + suffix for r in records)
    # a resumed run reads the suffix back instead of searching again
    saved = tmp_path / "setup" / "universal.json"
    assert json.loads(saved.read_text())["suffix"] == suffix
    # it was optimised on the two training prompts together: their summed loss went down
    slots, start = _slots(tokenizer)
    objective = SuffixObjective(model, slots)
    sent = encode_chat(tokenizer, PAIRS[0][0] + suffix).input_ids
    ids = torch.tensor(sent[len(slots[0].before) : len(sent) - len(slots[0].after)])
    assert summary.extra["universal_loss"] < float(objective.losses(start[None])[0])
    assert summary.extra["universal_loss"] == pytest.approx(
        float(objective.losses(ids[None])[0]), abs=1e-4
    )


def test_breaks_a_refused_organism_prompt(organism) -> None:
    model, tokenizer, splits = organism
    judge = OrganismJudge()
    prompts = splits["harmful"][:2]

    baseline, _ = run_attack(get_attack("none")(), model, tokenizer, prompts, judge, progress=False)
    assert baseline.success.successes == 0
    config = GCGConfig(num_steps=20, search_width=64, topk=64, check_every=5)
    summary, records = run_attack(
        GCGAttack(config), model, tokenizer, prompts, judge, progress=False
    )
    assert summary.success.successes >= 1
    broken = next(r for r in records if r.success)
    assert broken.extra["loss"] < broken.extra["initial_loss"]
    assert broken.cost.steps <= 20 and broken.cost.forward_passes > broken.cost.steps
