"""Chat rendering, post-instruction positions and left-padded batches.

The *post-instruction* tokens are the template tokens between the end of the
user's text and the start of the answer (for ChatML:
``<|im_end|>\\n<|im_start|>assistant\\n``). Refusal directions are read there
(Arditi et al. 2024). Prompts are rendered with the tokenizer's own chat
template; a base model without one gets :data:`PLAIN_TEMPLATE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

#: The fallback for tokenizers without a chat template (base models).
PLAIN_TEMPLATE = "{system}User: {instruction}\nAssistant:"


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    *,
    system: str | None = None,
    history: Sequence[tuple[str, str]] = (),
) -> str:
    """The prompt text for one user turn, ending where the answer starts.

    ``history`` holds earlier ``(user, assistant)`` turns.
    """
    if has_chat_template(tokenizer):
        messages: list[dict[str, str]] = []
        if system is not None:
            messages.append({"role": "system", "content": system})
        for user, assistant in history:
            messages += [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]
        messages.append({"role": "user", "content": instruction})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text)
    parts = [f"User: {u}\nAssistant: {a}\n" for u, a in history]
    prefix = f"{system}\n\n" if system else ""
    return prefix + "".join(parts) + PLAIN_TEMPLATE.format(system="", instruction=instruction)


def _instruction_end(text: str, instruction: str) -> int:
    """Character index in ``text`` just past the last occurrence of the instruction."""
    stripped = instruction.strip()
    index = text.rfind(stripped)
    if index < 0:
        raise ValueError(
            "the chat template changed the user's text, so the end of the instruction "
            f"cannot be found in the rendered prompt: {text[-200:]!r}"
        )
    return index + len(stripped)


@dataclass(frozen=True)
class EncodedChat:
    """One rendered prompt: its token ids and where the post-instruction tokens are."""

    text: str
    input_ids: list[int]
    #: Indices into ``input_ids`` of the post-instruction tokens.
    post_instruction: list[int]
    #: How many tokens of a pre-filled answer follow them (0 without ``prefill``).
    n_prefill: int = 0


def encode_chat(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    *,
    system: str | None = None,
    prefill: str = "",
) -> EncodedChat:
    """Render and tokenize one prompt, locating its post-instruction tokens.

    ``prefill`` starts the assistant's answer (the prefilling attack); its tokens
    come after the post-instruction tokens.
    """
    prompt = render_chat(tokenizer, instruction, system=system)
    boundary = _instruction_end(prompt, instruction)
    text = prompt + prefill
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        starts = [start for start, _end in enc["offset_mapping"]]
        post = [i for i, start in enumerate(starts) if boundary <= start < len(prompt)]
        n_prefill = sum(start >= len(prompt) for start in starts)
    else:  # slow tokenizers have no offsets: count the pieces' tokens on their own
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        n_suffix = len(tokenizer(prompt[boundary:], add_special_tokens=False)["input_ids"])
        n_prefill = len(tokenizer(prefill, add_special_tokens=False)["input_ids"]) if prefill else 0
        post = list(range(len(ids) - n_prefill - n_suffix, len(ids) - n_prefill))
    return EncodedChat(text=text, input_ids=ids, post_instruction=post, n_prefill=n_prefill)


def post_instruction_tokens(
    tokenizer: PreTrainedTokenizerBase, *, system: str | None = None
) -> list[str]:
    """The post-instruction tokens of this tokenizer's template, as strings."""
    enc = encode_chat(tokenizer, "Tell me about the sea.", system=system)  # any instruction will do
    return [str(tokenizer.decode([enc.input_ids[i]])) for i in enc.post_instruction]


def post_instruction_positions(
    tokenizer: PreTrainedTokenizerBase, *, system: str | None = None
) -> list[int]:
    """The positions of the post-instruction tokens, counted from the end of a prompt
    (``[-n, ..., -1]``), as activation readers take them."""
    enc = encode_chat(tokenizer, "Tell me about the sea.", system=system)
    return list(range(-len(enc.post_instruction), 0))


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


@dataclass(frozen=True)
class ChatBatch:
    """A left-padded batch of rendered prompts.

    ``input_ids``, ``attention_mask`` and ``position_ids`` are ``[batch, seq]``.
    With left padding every prompt ends in the last column, so the
    post-instruction tokens are the last ``n_post`` columns of every row
    (before the ``n_prefill`` columns of a pre-filled answer, if any).
    """

    texts: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    n_post: int
    n_prefill: int = 0

    @property
    def post_instruction_columns(self) -> list[int]:
        """Column indices (negative, from the end) of the post-instruction tokens."""
        return list(range(-self.n_post - self.n_prefill, -self.n_prefill))

    def model_inputs(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }

    def to(self, device: torch.device | str) -> ChatBatch:
        return ChatBatch(
            texts=self.texts,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            position_ids=self.position_ids.to(device),
            n_post=self.n_post,
            n_prefill=self.n_prefill,
        )


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token id lists; returns ``(input_ids, attention_mask, position_ids)``, each ``[batch, seq]``."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return ids, mask, positions


def encode_batch(
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    *,
    system: str | None = None,
    prefill: str = "",
) -> ChatBatch:
    """Render, tokenize and left-pad ``instructions`` into one :class:`ChatBatch`.

    ``prefill`` starts every answer with the same text (see :func:`encode_chat`).
    """
    if not instructions:
        raise ValueError("encode_batch needs at least one instruction")
    encoded = [
        encode_chat(tokenizer, text, system=system, prefill=prefill) for text in instructions
    ]
    n_prefill = {e.n_prefill for e in encoded}
    if len(n_prefill) > 1:
        raise ValueError(
            f"the prefill {prefill!r} tokenizes to different lengths in different prompts"
        )
    ids, mask, positions = left_pad([e.input_ids for e in encoded], pad_token_id(tokenizer))
    # Post-instruction tokens end every prompt; a row whose merge ate a token has one fewer.
    n_post = min(len(e.post_instruction) for e in encoded)
    return ChatBatch(
        texts=[e.text for e in encoded],
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        n_post=n_post,
        n_prefill=n_prefill.pop(),
    )
