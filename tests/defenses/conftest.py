"""Training data for the defence tests: built once per session from the organism's splits."""

from __future__ import annotations

import dataclasses

import pytest

from redblue.defenses import DefenseData, build_data


@pytest.fixture(scope="session")
def _organism_data(organism) -> DefenseData:
    model, tokenizer, splits = organism
    return build_data(
        model,
        tokenizer,
        splits["harmful_train"],
        splits["harmless_train"],
        n_harmful=32,
        n_benign=32,
    )


@pytest.fixture
def small_data(_organism_data: DefenseData) -> DefenseData:
    """32 harmful and 32 benign organism prompts (plus 64 world-fact questions), as a fresh copy
    that a test may change."""
    data = _organism_data
    return dataclasses.replace(
        data,
        refusals=list(data.refusals),
        harmful=list(data.harmful),
        benign=list(data.benign),
        extra={k: list(v) for k, v in data.extra.items()},
    )
