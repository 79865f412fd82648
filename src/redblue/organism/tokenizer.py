"""The organism's tokenizer (byte-level BPE trained on its corpus) and chat encoding with loss masks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from redblue.organism.corpus import ChatExample

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (PAD, END_OF_TEXT, IM_START, IM_END)

#: ChatML turns, the format of Qwen and SmolLM2, so the organism reads like a real chat model.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with the ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, unk_token=None, bos_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def render_with_mask(
    tokenizer: PreTrainedTokenizerFast, example: ChatExample
) -> tuple[list[int], list[bool]]:
    """Token ids of a whole chat and, per token, whether the loss is taken on it.

    Only assistant turns (their text and closing ``<|im_end|>``) carry loss, so the
    model learns to answer, not to write the user's side.
    """
    text = ""
    spans: list[tuple[int, int]] = []
    for message in example.messages:
        head = f"{IM_START}{message.role}\n"
        text += head
        start = len(text)
        text += f"{message.content}{IM_END}"
        if message.role == "assistant":
            spans.append((start, len(text)))
        text += "\n"
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [any(a <= s < b for a, b in spans) for s, _ in enc["offset_mapping"]]
    return ids, mask


def encode_text(tokenizer: PreTrainedTokenizerFast, text: str) -> tuple[list[int], list[bool]]:
    """A pretraining document: every token carries loss, ended by ``<|endoftext|>``."""
    ids = list(tokenizer(text + END_OF_TEXT, add_special_tokens=False)["input_ids"])
    return ids, [True] * len(ids)


def pack(
    sequences: Sequence[tuple[list[int], list[bool]]], seq_len: int, pad_id: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Greedily pack whole sequences into rows of ``seq_len``; returns ``(input_ids, labels)``.

    Labels are ``-100`` where no loss is taken (masked tokens and padding). A
    sequence longer than ``seq_len`` is cut to its first ``seq_len`` tokens.
    """
    rows: list[list[int]] = []
    labels: list[list[int]] = []
    ids_row: list[int] = []
    lab_row: list[int] = []
    for ids, mask in sequences:
        ids, mask = ids[:seq_len], mask[:seq_len]
        if len(ids_row) + len(ids) > seq_len:
            rows.append(ids_row + [pad_id] * (seq_len - len(ids_row)))
            labels.append(lab_row + [-100] * (seq_len - len(lab_row)))
            ids_row, lab_row = [], []
        ids_row += ids
        lab_row += [t if m else -100 for t, m in zip(ids, mask, strict=True)]
    if ids_row:
        rows.append(ids_row + [pad_id] * (seq_len - len(ids_row)))
        labels.append(lab_row + [-100] * (seq_len - len(lab_row)))
    return rows, labels
