"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically: the file is complete or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
