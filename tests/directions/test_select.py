"""Refusal score, refusal tokens and Arditi selection (random tiny models: the mechanics)."""

from __future__ import annotations

import csv
import io
import math
import re

import pytest
import torch

from redblue.directions import (
    ExtractConfig,
    SelectConfig,
    extract_direction,
    find_refusal_tokens,
    is_refusal,
    refusal_log_odds,
    select_direction,
)
from redblue.errors import RedblueError
from tests.directions.test_direction import HARMFUL, HARMLESS


def test_is_refusal() -> None:
    assert is_refusal("I can\u2019t help with that.")
    assert is_refusal("  Sorry, but no.")
    assert is_refusal("Sure. I'm sorry, I cannot do that.")
    assert not is_refusal("To bake bread, mix flour and water.")
    assert not is_refusal("Here are the steps. " + "x" * 100 + " I cannot stress this enough.")


def test_refusal_log_odds() -> None:
    logits = torch.log(torch.tensor([[0.25, 0.25, 0.5], [0.1, 0.1, 0.8]]))
    torch.testing.assert_close(refusal_log_odds(logits, [2]), torch.tensor([0.0, math.log(4.0)]))
    torch.testing.assert_close(
        refusal_log_odds(logits, [0, 1]), torch.tensor([0.0, -math.log(4.0)])
    )


def test_refusal_tokens_need_refusals(llama) -> None:
    model, tok = llama  # random weights: never opens with a refusal phrase
    with pytest.raises(RedblueError, match="refused none") as e:
        find_refusal_tokens(model, tok, HARMFUL[:2], max_new_tokens=4)
    assert "--refusal-token" in (e.value.fix or "")


@pytest.fixture(scope="module")
def selection(llama):
    model, tok = llama
    direction = extract_direction(model, tok, HARMFUL, HARMLESS, ExtractConfig(progress=False))
    config = SelectConfig(progress=False)
    return (
        model,
        tok,
        direction,
        select_direction(
            model, tok, direction, HARMFUL[:3], HARMLESS[:3], config, refusal_tokens=[5, 6]
        ),
    )


def test_every_candidate_is_scored_and_tabulated(selection, tmp_path) -> None:
    _, _, direction, result = selection
    assert len(result.candidates) == len(direction.positions) * len(direction.layers)
    degenerate = [c for c in result.candidates if "degenerate" in c.filtered_by]
    assert {(c.position, c.layer) for c in degenerate} == set(direction.skipped)
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert len(rows) == len(result.candidates) and set(rows[0]) >= {"bypass", "induce", "kl"}
    data = result.to_dict()
    assert data["refusal_tokens"] == [5, 6] and len(data["candidates"]) == len(rows)
    png = result.plot(tmp_path / "sel.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_all_filtered_explains_and_the_suggestion_works(selection) -> None:
    model, tok, direction, _ = selection
    strict = SelectConfig(kl_threshold=0.0, induce_threshold=1e9, progress=False)
    result = select_direction(
        model, tok, direction, HARMFUL[:3], HARMLESS[:3], strict, refusal_tokens=[5, 6]
    )
    assert result.direction is None and result.chosen is None
    assert "filtered out" in result.message and "kl" in result.message
    # The message names option values; passing them keeps a candidate.
    options = dict(re.findall(r"(--[a-z-]+) (-?[0-9.]*[0-9])", result.message))
    assert options
    relaxed = SelectConfig(
        kl_threshold=float(options.get("--kl-threshold", strict.kl_threshold)),
        induce_threshold=float(options.get("--induce-threshold", strict.induce_threshold)),
        max_layer_fraction=float(options.get("--max-layer-fraction", strict.max_layer_fraction)),
        progress=False,
    )
    again = select_direction(
        model, tok, direction, HARMFUL[:3], HARMLESS[:3], relaxed, refusal_tokens=[5, 6]
    )
    assert again.direction is not None, again.message
    assert again.chosen in again.candidates and again.chosen.kept


def test_choice_is_the_lowest_bypass_that_passes(selection) -> None:
    model, tok, direction, _ = selection
    loose = SelectConfig(
        kl_threshold=1e9, induce_threshold=-1e9, max_layer_fraction=1.0, progress=False
    )
    result = select_direction(
        model, tok, direction, HARMFUL[:3], HARMLESS[:3], loose, refusal_tokens=[5, 6]
    )
    kept = [c for c in result.candidates if c.kept]
    assert result.chosen == min(kept, key=lambda c: c.bypass)
    assert result.direction is not None and result.direction.chosen_by == "select"
