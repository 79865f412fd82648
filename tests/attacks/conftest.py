"""The embedded organism and its held-out harmful prompts, loaded once for the attack tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def organism() -> tuple[object, object, dict[str, object]]:
    from redblue.errors import ModelError
    from redblue.models import load, resolve
    from redblue.organism.evaluate import load_splits

    try:
        model, tokenizer = load("organism", device="cpu", dtype="float32")
    except ModelError as e:
        pytest.skip(f"the embedded organism is not built: {e.what}")
    return model, tokenizer, load_splits(resolve("organism").location)
