"""The quick tour behind ``redblue demo``: load, inspect, chat, and look inside.

It shows the model layer at work on the embedded default: the model's
architecture row and chat template, its answers to paired harmful and harmless
requests, and how far apart the two kinds of request sit in the residual stream
at the last post-instruction token, layer by layer (the signal that refusal
directions are later built from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from redblue.data.builtin import builtin
from redblue.models import (
    Completion,
    GenerationSettings,
    ModelInfo,
    describe,
    encode_batch,
    generate,
    record_residual,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class DemoResult:
    model: ModelInfo
    completions: list[Completion]
    #: Per layer: ``|mean(harmful) - mean(harmless)| / mean |activation|`` at the last token.
    separation: list[float]
    n_harmful: int
    n_harmless: int
    notes: list[str] = field(default_factory=list)

    @property
    def peak_layer(self) -> int:
        return max(range(len(self.separation)), key=self.separation.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["peak_layer"] = self.peak_layer
        return data


def last_token_residuals(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, instructions: Sequence[str]
) -> torch.Tensor:
    """Residual stream after every block at the last prompt token: ``[n_layers, n_prompts, d_model]`` (fp32, CPU)."""
    import torch

    batch = encode_batch(tokenizer, instructions).to(model.device)
    with torch.no_grad(), record_residual(model) as records:
        model(**batch.model_inputs())
    return torch.stack([records[layer][0][:, -1].float() for layer in sorted(records)])


def residual_separation(harmful: torch.Tensor, harmless: torch.Tensor) -> list[float]:
    """Per layer, the distance between the two means relative to the typical activation norm."""
    diff = (harmful.mean(1) - harmless.mean(1)).norm(dim=-1)
    scale = 0.5 * (harmful.norm(dim=-1).mean(1) + harmless.norm(dim=-1).mean(1))
    return (diff / scale.clamp_min(1e-12)).tolist()


def run_demo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    source: str = "",
    n_chat: int = 2,
    max_new_tokens: int = 48,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    harmful, harmless = builtin("demo_harmful"), builtin("demo_harmless")
    info = describe(model, tokenizer, source=source)
    chat = harmful.instructions[:n_chat] + harmless.instructions[:n_chat]
    completions = generate(
        model,
        tokenizer,
        chat,
        GenerationSettings(max_new_tokens=max_new_tokens, seed=seed),
        progress=progress,
    )
    separation = residual_separation(
        last_token_residuals(model, tokenizer, harmful.instructions),
        last_token_residuals(model, tokenizer, harmless.instructions),
    )
    return DemoResult(info, completions, separation, len(harmful), len(harmless))
