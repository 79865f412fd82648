"""Helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from redblue.io import write_json

__all__ = ["load_model", "prompt_set", "settings", "write_json"]

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet
    from redblue.settings import Settings


def settings(ctx: typer.Context) -> Settings:
    from redblue.settings import Settings, load_settings

    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else load_settings()


def load_model(
    cfg: Settings, spec: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the model named by ``spec`` (or the settings' model) with the settings' options."""
    from redblue.models import ArchSpec, adapt, load

    model, tokenizer = load(
        spec or cfg.model,
        dtype=cfg.dtype,
        device=cfg.device,
        trust_remote_code=cfg.trust_remote_code,
    )
    adapt(model, arch=ArchSpec.from_file(cfg.arch) if cfg.arch else None)
    return model, tokenizer


def prompt_set(
    cfg: Settings, given: str | None, kind: str, *, held_out: bool = False
) -> tuple[PromptSet, str]:
    """The prompt set ``given`` on the command line, or a default for ``kind`` (harmful/harmless).

    Defaults: the model's own split beside an organism's weights (``splits/KIND_train.jsonl``,
    or the held-out ``splits/KIND.jsonl`` with ``held_out``), else the built-in demo set.
    Returns the set and where it came from.
    """
    from redblue.data import PromptSet, load_prompts
    from redblue.data.builtin import builtin
    from redblue.errors import ModelError
    from redblue.models import resolve

    if given:
        if given.startswith("builtin:"):
            return builtin(given.removeprefix("builtin:")), given
        return load_prompts(given), given
    try:
        source = resolve(cfg.model)
        name = f"{kind}.jsonl" if held_out else f"{kind}_train.jsonl"
        split = Path(source.location) / "splits" / name
        if source.kind != "hub" and split.is_file():
            return PromptSet.from_jsonl(split), str(split)
    except ModelError:
        pass
    return builtin(f"demo_{kind}"), f"builtin:demo_{kind}"
