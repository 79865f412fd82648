"""Prompt sets written by the redblue project and shipped with the package.

``demo_harmful`` / ``demo_harmless``: eight paired requests each, for the demo
and quick checks (same shapes of request, opposite intent). Not a benchmark.
"""

from __future__ import annotations

from importlib import resources

from redblue.data.prompts import PromptSet
from redblue.errors import DataError

NAMES = ("demo_harmful", "demo_harmless")


def builtin(name: str) -> PromptSet:
    """Load a built-in prompt set by name (see :data:`NAMES`)."""
    if name not in NAMES:
        raise DataError(
            f"no built-in prompt set named {name!r}", fix=f"use one of {', '.join(NAMES)}"
        )
    from redblue.data.sources import load_prompts

    with resources.as_file(resources.files(__name__) / f"{name}.jsonl") as path:
        return load_prompts(path, name=name)
