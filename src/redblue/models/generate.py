"""Batched chat generation: greedy or sampled, stop strings, OOM back-off, progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from redblue.errors import ModelError
from redblue.models.chat import encode_batch, encode_chat, left_pad, pad_token_id
from redblue.progress import progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate. ``temperature=0`` means greedy decoding."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    batch_size: int = 16
    seed: int = 0
    system: str | None = None
    #: Text that starts every answer (the prefilling attack); not part of ``Completion.text``.
    prefill: str = ""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class Completion:
    """One generated answer."""

    instruction: str
    text: str
    n_tokens: int
    finish: Literal["eos", "stop", "length"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    settings: GenerationSettings,
    prefills: Sequence[str] | None = None,
) -> list[Completion]:
    import torch

    if prefills is None:
        batch = encode_batch(
            tokenizer, instructions, system=settings.system, prefill=settings.prefill
        )
        input_ids, attention_mask = batch.input_ids, batch.attention_mask
    else:  # one answer start per row: left padding keeps every row's end in the last column
        rows = [
            encode_chat(tokenizer, text, system=settings.system, prefill=prefill).input_ids
            for text, prefill in zip(instructions, prefills, strict=True)
        ]
        input_ids, attention_mask, _ = left_pad(rows, pad_token_id(tokenizer))
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "pad_token_id": pad_token_id(tokenizer),
        "do_sample": settings.temperature > 0,
    }
    if settings.temperature > 0:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:  # silence the model's own sampling defaults when decoding greedily
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if settings.stop:
        kwargs.update(stop_strings=list(settings.stop), tokenizer=tokenizer)
    with torch.no_grad():
        output = model.generate(  # type: ignore[operator]
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        )
    new_tokens = output[:, input_ids.shape[1] :].tolist()
    eos_ids = model.generation_config.eos_token_id
    eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids] if eos_ids is not None else [])
    if tokenizer.eos_token_id is not None:
        eos.add(int(tokenizer.eos_token_id))
    completions = []
    for instruction, tokens in zip(instructions, new_tokens, strict=True):
        n = next((i for i, t in enumerate(tokens) if t in eos), None)
        kept = tokens if n is None else tokens[:n]
        text = str(tokenizer.decode(kept, skip_special_tokens=True))
        finish: Literal["eos", "stop", "length"] = "length" if n is None else "eos"
        cuts = [text.find(s) for s in settings.stop if s and s in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        completions.append(Completion(instruction, text, len(kept), finish))
    return completions


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    settings: GenerationSettings | None = None,
    *,
    prefills: Sequence[str] | None = None,
    progress: bool = True,
) -> list[Completion]:
    """Answer each instruction as a chat turn, in batches.

    ``prefills`` gives each answer its own forced start (overriding ``settings.prefill``);
    like the settings' prefill, it is not part of ``Completion.text``.

    On out-of-memory the batch size halves and the batch is retried; at batch
    size 1 the error is raised. Sampling is reproducible for a seed and leaves
    the global random state untouched.
    """
    import torch

    settings = settings or GenerationSettings()
    instructions = list(instructions)
    if prefills is not None and len(prefills) != len(instructions):
        raise ValueError(f"{len(prefills)} prefills for {len(instructions)} instructions")
    results: list[Completion] = []
    batch_size = settings.batch_size
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=devices),
        progress_bar(len(instructions), "generating", progress) as bar,
    ):
        torch.manual_seed(settings.seed)
        start = 0
        while start < len(instructions):
            chunk = instructions[start : start + batch_size]
            try:
                rows = None if prefills is None else prefills[start : start + batch_size]
                results += _generate_batch(model, tokenizer, chunk, settings, rows)
            except (RuntimeError, MemoryError) as e:
                if not is_oom(e):
                    raise
                if batch_size == 1:
                    raise ModelError(
                        "out of memory at batch size 1",
                        fix="lower max_new_tokens, use a smaller dtype, or a larger device",
                    ) from e
                batch_size = max(1, batch_size // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start += len(chunk)
            bar.advance(len(chunk))
    return results
