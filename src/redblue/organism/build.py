"""``build_organism``: corpus -> tokenizer -> packed data -> model -> training -> a plain HF folder.

The folder being built is ``OUT.partial`` (with the checkpoint inside) until the
end, when it is renamed to ``OUT``: an interrupted build leaves no half-written
model, and running the same build again resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.errors import ConfigError
from redblue.organism.recipe import DEFAULT_RECIPE, Recipe, get_recipe
from redblue.organism.train import OrganismSize, model_config, train

if TYPE_CHECKING:
    import torch

    from redblue.organism.corpus import Corpus


@dataclass(frozen=True)
class BuildResult:
    out: Path
    size: str
    seed: int
    recipe: int
    n_params: int
    steps: int
    final_loss: float
    #: Wall seconds of the run that finished the build, plus the training seconds of the
    #: interrupted runs it resumed from.
    seconds: float
    corpus: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out": str(self.out)}


def _tensors(
    tokenizer: Any, corpus: Corpus, size: OrganismSize
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    from redblue.organism.tokenizer import encode_text, pack, render_with_mask

    pad = int(tokenizer.pad_token_id)
    text_rows, text_labels = pack(
        [encode_text(tokenizer, t) for t in corpus.pretrain], size.seq_len, pad
    )
    instruct_rows, instruct_labels = pack(
        [render_with_mask(tokenizer, ex) for ex in corpus.instruct], size.seq_len, pad
    )
    chat_rows, chat_labels = pack(
        [render_with_mask(tokenizer, ex) for ex in corpus.chat], size.seq_len, pad
    )
    return (
        torch.tensor(text_rows),
        torch.tensor(text_labels),
        torch.tensor(instruct_rows),
        torch.tensor(instruct_labels),
        torch.tensor(chat_rows),
        torch.tensor(chat_labels),
    )


def _claim(partial: Path, identity: dict[str, Any]) -> None:
    """Record what ``partial`` is building; refuse to resume a build of something else."""
    from redblue.io import write_json

    marker = partial / "build.json"
    if marker.is_file():
        started = json.loads(marker.read_text())
        if started != identity:
            differs = ", ".join(f"{k} {started.get(k)} (now {v})" for k, v in identity.items())
            raise ConfigError(
                f"the unfinished build here was started with other settings: {differs}",
                where=str(partial),
                fix="rerun with the settings it was started with, or delete the folder",
            )
        return
    write_json(marker, identity)


def _trained_seconds(checkpoint_dir: Path) -> float:
    """Training seconds already spent by interrupted runs (0 for a fresh build)."""
    state = checkpoint_dir / "state.json"
    return float(json.loads(state.read_text())["seconds"]) if state.is_file() else 0.0


def build_organism(
    out: str | os.PathLike[str],
    size: str = "small",
    seed: int = 0,
    *,
    recipe: Recipe | int = DEFAULT_RECIPE,
    progress: bool = True,
    stop_after: int | None = None,
) -> BuildResult | None:
    """Build an organism into ``out``. Returns ``None`` when stopped early by ``stop_after``."""
    import torch
    from transformers import LlamaForCausalLM

    from redblue.organism.corpus import build_corpus
    from redblue.organism.tokenizer import train_tokenizer

    if not isinstance(recipe, Recipe):
        recipe = get_recipe(recipe)
    spec = recipe.size(size)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(
            "output folder exists and is not empty", where=str(out), fix="choose a new folder"
        )
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    _claim(partial, {"recipe": recipe.version, "size": size, "seed": seed})
    started = time.perf_counter()
    earlier = _trained_seconds(partial / "checkpoint")

    corpus = build_corpus(seed=seed, scale=spec.corpus_scale, recipe=recipe)
    chat_texts = [m.content for ex in (*corpus.instruct, *corpus.chat) for m in ex.messages]
    tokenizer = train_tokenizer([*corpus.pretrain, *chat_texts], spec.vocab_size)
    tensors = _tensors(tokenizer, corpus, spec)

    torch.manual_seed(seed)
    config = model_config(
        spec, len(tokenizer), int(tokenizer.pad_token_id), int(tokenizer.eos_token_id)
    )
    model = LlamaForCausalLM(config)
    state = train(
        model,
        *tensors,
        spec,
        seed=seed,
        checkpoint_dir=partial / "checkpoint",
        progress=progress,
        stop_after=stop_after,
    )
    if state.step < spec.steps:
        return None

    model.generation_config.eos_token_id = int(tokenizer.eos_token_id)
    model.generation_config.pad_token_id = int(tokenizer.pad_token_id)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    splits = partial / "splits"
    splits.mkdir(exist_ok=True)
    for name, prompts in corpus.splits.items():
        prompts.to_jsonl(splits / f"{name}.jsonl")
    result = BuildResult(
        out=out,
        size=size,
        seed=seed,
        recipe=recipe.version,
        n_params=sum(p.numel() for p in model.parameters()),
        steps=state.step,
        final_loss=sum(state.losses[-20:]) / max(1, len(state.losses[-20:])),
        seconds=round(time.perf_counter() - started + earlier, 1),
        corpus=corpus.stats(),
    )
    (partial / "organism.json").write_text(
        json.dumps({**result.to_dict(), "losses": state.losses}, indent=1)
    )
    shutil.rmtree(partial / "checkpoint")
    if out.exists():
        out.rmdir()
    os.replace(partial, out)
    return result
