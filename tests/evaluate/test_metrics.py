"""Metrics: bootstrap estimates, KL to a reference, perplexity, capability formats."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from redblue.data import PromptSet
from redblue.errors import DataError
from redblue.evaluate.metrics import (
    bootstrap_interval,
    choice_accuracy,
    kl_to_reference,
    last_number,
    load_gsm8k,
    load_multiple_choice,
    perplexity,
)

PROMPTS = ["Tell me about the sea.", "How do I bake bread?", "Write a poem about a river."]


def test_bootstrap_interval() -> None:
    values = [0.0, 1.0, 2.0, 3.0, 4.0] * 4
    low, high = bootstrap_interval(values, seed=1)
    assert low < 2.0 < high
    assert bootstrap_interval(values, seed=1) == (low, high)
    wide = bootstrap_interval(values[:5], seed=1)
    assert wide[1] - wide[0] > high - low
    med_low, med_high = bootstrap_interval(values, lambda v: sorted(v)[len(v) // 2])
    assert med_low <= 2.0 <= med_high
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_kl_to_reference(llama) -> None:
    model, tok = llama
    same = kl_to_reference(model, model, tok, PROMPTS)
    assert same.value == pytest.approx(0.0, abs=1e-6) and same.n == 3
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.lm_head.weight.mul_(1.5)
    moved = kl_to_reference(other, model, tok, PROMPTS)
    assert moved.value > 0.01 and moved.ci_low <= moved.value <= moved.ci_high


def test_perplexity_matches_the_models_own_loss(llama) -> None:
    model, tok = llama
    texts = ["The sea is wide and the sky is blue.", "What is two plus three?"]
    result = perplexity(model, tok, texts, batch_size=2)
    total, count = 0.0, 0
    for text in texts:
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()
        total += loss * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    assert result.value == pytest.approx(math.exp(total / count), rel=1e-4)
    assert result.ci_low <= result.value <= result.ci_high


def test_multiple_choice_formats(tmp_path) -> None:
    plain = tmp_path / "astro_test.csv"
    plain.write_text("What is up?,Sky,Ground,Sea,Rock,A\nTwo plus two?,3,4,5,6,1\n")
    questions = load_multiple_choice(plain)
    assert [p.target for p in questions] == ["A", "B"]
    assert questions[0].category == "astro" and "B. Ground" in questions[0].instruction
    bad = tmp_path / "bad.csv"
    bad.write_text("question,choice0,choice1,answer\nQ?,x,y,7\n")
    with pytest.raises(DataError, match=r"bad\.csv:2"):
        load_multiple_choice(bad)
    with pytest.raises(DataError, match="no multiple-choice"):
        load_multiple_choice(tmp_path / "empty_dir_that_is_missing.csv")


def test_choice_accuracy_picks_the_likeliest_letter(llama, tmp_path) -> None:
    from redblue.directions.score import last_logits

    model, tok = llama
    f = tmp_path / "q.csv"
    f.write_text("Sea or sky?,sea,sky,river,bread,A\nBread?,yes,no,maybe,never,C\n")
    questions = load_multiple_choice(f)
    rate, chosen = choice_accuracy(model, tok, questions)
    logp = last_logits(model, tok, questions).log_softmax(-1)
    for row, letter in zip(logp, chosen, strict=True):
        scores = {}
        for candidate in "ABCD":
            ids = {
                tok(c, add_special_tokens=False)["input_ids"][-1]
                for c in (candidate, " " + candidate)
            }
            scores[candidate] = row[sorted(ids)].logsumexp(0).item()
        assert letter == max(scores, key=scores.get)
    assert rate.successes == sum(c == p.target for c, p in zip(chosen, questions, strict=True))


def test_gsm8k_and_numbers(tmp_path) -> None:
    f = tmp_path / "g.jsonl"
    f.write_text(
        json.dumps({"question": "2+2?", "answer": "It is 4.\n#### 4"})
        + "\n"
        + json.dumps({"question": "Big?", "answer": "#### 1,200"})
        + "\n"
    )
    items = load_gsm8k(f)
    assert [p.target for p in items] == ["4", "1200"]
    assert last_number("so 3 apples and 1,200.50 dollars") == "1200.5"
    assert last_number("The answer is -7.") == "-7" and last_number("none") is None
    (tmp_path / "bad.jsonl").write_text('{"question": "x", "answer": "no marker"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1"):
        load_gsm8k(tmp_path / "bad.jsonl")


def test_shared_capability_sets(shared_data) -> None:
    mmlu = load_multiple_choice(shared_data / "capability" / "mmlu_dev")
    gsm8k = load_gsm8k(shared_data / "capability" / "gsm8k_first200.jsonl")
    assert len(mmlu) == 285 and {p.target for p in mmlu} <= set("ABCD")
    assert len(gsm8k) == 200 and all(p.target and last_number(p.target) == p.target for p in gsm8k)
    assert isinstance(mmlu, PromptSet)
