"""A plain summary of a loaded model, for ``redblue models info`` and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from redblue.models.adapter import adapt
from redblue.models.chat import has_chat_template, post_instruction_tokens, render_chat

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EXAMPLE_INSTRUCTION = "Tell me about the sea."


@dataclass(frozen=True)
class ModelInfo:
    source: str
    class_name: str
    family: str
    n_layers: int
    d_model: int
    vocab_size: int
    n_params: int
    dtype: str
    device: str
    chat_template: bool
    example_prompt: str
    post_instruction_tokens: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str = ""
) -> ModelInfo:
    """Summarise ``model``: family, size, template and post-instruction tokens."""
    a = adapt(model)
    return ModelInfo(
        source=source,
        class_name=type(model).__name__,
        family=a.family,
        n_layers=a.n_layers,
        d_model=a.d_model,
        vocab_size=a.vocab_size,
        n_params=sum(p.numel() for p in model.parameters()),
        dtype=str(model.dtype).removeprefix("torch."),
        device=str(model.device),
        chat_template=has_chat_template(tokenizer),
        example_prompt=render_chat(tokenizer, EXAMPLE_INSTRUCTION),
        post_instruction_tokens=post_instruction_tokens(tokenizer),
    )
