"""Shared fixtures: tiny models of every ArchSpec family, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

# No hub here (and none needed): every test runs offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest

from tests.tiny import FAMILIES, Family, make_model, make_tokenizer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"{SHARED_DATA} not found: the shared datasets sit beside the repository "
            "only in the development checkout"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_zoo() -> dict[str, tuple[object, object]]:
    """``model_type -> (model, tokenizer)`` for every family, built once."""
    zoo = {}
    for name, family in FAMILIES.items():
        tokenizer = make_tokenizer(family.template)
        zoo[name] = (make_model(family, vocab_size=len(tokenizer)), tokenizer)
    return zoo


@pytest.fixture(params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> Family:
    return FAMILIES[request.param]


@pytest.fixture
def tiny(tiny_zoo: dict[str, tuple[object, object]], family: Family) -> tuple[object, object]:
    """``(model, tokenizer)`` of the parametrized family."""
    return tiny_zoo[family.model_type]


@pytest.fixture(scope="session")
def llama(tiny_zoo: dict[str, tuple[object, object]]) -> tuple[object, object]:
    return tiny_zoo["llama"]


@pytest.fixture(scope="session")
def organism() -> tuple[object, object, dict[str, object]]:
    """``(model, tokenizer, splits)`` of the embedded organism, loaded once; tests that change
    the model must restore it."""
    from redblue.errors import ModelError
    from redblue.models import load, resolve
    from redblue.organism.evaluate import load_splits

    try:
        model, tokenizer = load("organism", device="cpu", dtype="float32")
    except ModelError as e:
        pytest.skip(f"the embedded organism is not built: {e.what}")
    return model, tokenizer, load_splits(resolve("organism").location)


@pytest.fixture(scope="session")
def organism_direction(organism: tuple[object, object, dict[str, object]]) -> object:
    """The organism's selected refusal direction, extracted and selected once."""
    from redblue.organism.evaluate import refusal_direction

    model, tokenizer, splits = organism
    return refusal_direction(model, tokenizer, splits)  # type: ignore[arg-type]
