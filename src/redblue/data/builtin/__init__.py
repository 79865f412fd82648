"""Prompt sets written by the redblue project and shipped with the package.

``demo_harmful`` / ``demo_harmless``: eight paired requests each, for the demo
and quick checks (same shapes of request, opposite intent). Not a benchmark.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

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


def default_prompts(kind: str, model_folder: str | Path | None = None) -> PromptSet:
    """The default ``kind`` (harmful/harmless) training prompts for a model.

    A model folder with ``splits/KIND_train.jsonl`` (an organism) brings its own;
    anything else gets the built-in ``demo_KIND`` set.
    """
    if kind not in ("harmful", "harmless"):
        raise ValueError(f"kind must be harmful or harmless, got {kind!r}")
    if model_folder:
        split = Path(model_folder) / "splits" / f"{kind}_train.jsonl"
        if split.is_file():
            return PromptSet.from_jsonl(split)
    return builtin(f"demo_{kind}")
