"""Activations: the residual stream over a prompt set, streamed or cached.

The residual stream is read where each decoder block receives it
(``resid_pre``, the point Arditi et al. 2024 take refusal directions from) at a
few token positions counted from the end of the prompt. By default these are
the *post-instruction* positions: the template tokens after the user's text
(``<|im_end|>\\n<|im_start|>assistant\\n``), where a chat model decides how to
answer. Prompts are left-padded, so position ``-1`` is the last prompt token of
every row.

:func:`collect_means` keeps running sums in float64 per (layer, position), so
its memory does not grow with the number of prompts. :func:`collect` keeps
every activation (``[n_prompts, n_layers, n_positions, d_model]``) for
aggregators that need samples (PCA, probes), optionally cached on disk as
safetensors keyed by the model's and the data's hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.data.prompts import instructions_of
from redblue.errors import DataError
from redblue.models import adapt, encode_batch
from redblue.models.hooks import Where, hook_residual
from redblue.progress import progress_bar

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redblue.data import PromptSet
    from redblue.models.chat import ChatBatch

#: Positions to read: ``"post_instruction"`` (the template tokens after the
#: instruction), ``"last"`` (the last prompt token) or negative column indices.
Positions = str | Sequence[int]


def model_fingerprint(model: PreTrainedModel) -> str:
    """A short hash of a model's name, shapes and a sample of its weights.

    Cheap (a few values per tensor) and stable across loads of the same files;
    used to key activation caches and to record provenance.
    """
    import torch

    h = hashlib.sha256()
    h.update(str(getattr(model.config, "_name_or_path", "")).encode())
    h.update(str(getattr(model.config, "model_type", "")).encode())
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // 64)
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            h.update(flat[::step][:64].to("cpu", torch.float64).numpy().tobytes())
    return h.hexdigest()[:16]


def resolve_positions(positions: Positions, n_post: int) -> list[int]:
    """Negative column indices for ``positions`` given ``n_post`` post-instruction tokens."""
    if isinstance(positions, str):
        if positions == "post_instruction":
            return list(range(-max(1, n_post), 0))
        if positions == "last":
            return [-1]
        raise ValueError(
            f"positions must be 'post_instruction', 'last' or a list of negative ints, got {positions!r}"
        )
    chosen = [int(p) for p in positions]
    if not chosen or any(p >= 0 for p in chosen):
        raise ValueError(
            f"positions are counted from the end of the prompt (-1 is the last token); got {chosen}"
        )
    return chosen


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _instructions(prompts: PromptSet | Sequence[str]) -> list[str]:
    texts = instructions_of(prompts)
    if not texts:
        raise DataError("the prompt set is empty", fix="pass at least one prompt")
    return texts


def _plan(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet | Sequence[str],
    layers: Sequence[int] | None,
    positions: Positions,
    system: str | None,
) -> tuple[list[str], list[int], list[int]]:
    """The texts, the layers (all by default) and the columns to read."""
    texts = _instructions(prompts)
    chosen = list(range(adapt(model).n_layers)) if layers is None else list(layers)
    n_post = encode_batch(tokenizer, texts[:1], system=system).n_post
    return texts, chosen, resolve_positions(positions, n_post)


def _data_hash(texts: Sequence[str], system: str | None) -> str:
    h = hashlib.sha256(json.dumps([system, *texts]).encode())
    return h.hexdigest()[:16]


@dataclass
class ActivationMeans:
    """Mean residual stream per (layer, position) over a prompt set.

    ``means`` is ``[n_layers, n_positions, d_model]`` float32; ``layers`` and
    ``positions`` label its first two axes.
    """

    means: torch.Tensor
    count: int
    layers: list[int]
    positions: list[int]
    where: str
    data_hash: str
    model_hash: str


class _Accumulator:
    """Running float64 sums of the residual stream, per layer, at fixed columns."""

    def __init__(self, layers: Sequence[int], positions: Sequence[int]) -> None:
        self.layers = list(layers)
        self.positions = list(positions)
        self.sums: dict[int, torch.Tensor] = {}
        self.count = 0

    def reader(self, layer: int) -> Any:
        import torch

        def read(hidden: torch.Tensor) -> None:
            values = hidden[:, self.positions].detach().to(torch.float64).sum(dim=0)
            if layer in self.sums:
                self.sums[layer] += values.to(self.sums[layer].device)
            else:
                self.sums[layer] = values

        return read

    def means(self) -> torch.Tensor:
        import torch

        return torch.stack([self.sums[layer] / self.count for layer in self.layers]).to(
            "cpu", torch.float32
        )


@contextmanager
def recording_means(
    model: PreTrainedModel,
    *,
    layers: Sequence[int],
    positions: Sequence[int],
    where: Where = "pre",
) -> Iterator[_Accumulator]:
    """Accumulate residual sums at ``layers`` and ``positions`` over the forward passes inside.

    The caller adds each batch's size to ``acc.count``. Hooks are removed on exit.
    """
    acc = _Accumulator(layers, positions)
    with ExitStack() as stack:
        for layer in layers:
            stack.enter_context(
                hook_residual(model, acc.reader(layer), layers=[layer], where=where)
            )
        yield acc


def collect_means(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet | Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    positions: Positions = "post_instruction",
    where: Where = "pre",
    system: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "activations",
) -> ActivationMeans:
    """Mean residual stream at ``layers`` (all by default) and ``positions`` over ``prompts``.

    Memory is ``n_layers * n_positions * d_model`` whatever the number of prompts.
    """
    import torch

    texts, layers, cols = _plan(model, tokenizer, prompts, layers, positions, system)
    with (
        torch.no_grad(),
        recording_means(model, layers=layers, positions=cols, where=where) as acc,
        progress_bar(len(texts), desc, enabled=progress) as bar,
    ):
        for chunk in _batches(texts, batch_size):
            batch = encode_batch(tokenizer, chunk, system=system).to(model.device)
            model(**batch.model_inputs())
            acc.count += len(chunk)
            bar.advance(len(chunk))
    return ActivationMeans(
        means=acc.means(),
        count=acc.count,
        layers=layers,
        positions=cols,
        where=where,
        data_hash=_data_hash(texts, system),
        model_hash=model_fingerprint(model),
    )


@dataclass
class Activations:
    """Every activation: ``values`` is ``[n_prompts, n_layers, n_positions, d_model]`` float32."""

    values: torch.Tensor
    layers: list[int]
    positions: list[int]
    where: str
    data_hash: str
    model_hash: str
    path: Path | None = field(default=None, compare=False)

    def mean(self) -> ActivationMeans:
        return ActivationMeans(
            means=self.values.mean(0),
            count=int(self.values.shape[0]),
            layers=self.layers,
            positions=self.positions,
            where=self.where,
            data_hash=self.data_hash,
            model_hash=self.model_hash,
        )


def _residual_batches(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    layers: Sequence[int],
    columns: Sequence[int] | None,
    where: Where,
    system: str | None,
    batch_size: int,
    progress: bool,
    desc: str,
) -> Iterator[tuple[ChatBatch, torch.Tensor]]:
    """Per batch of ``texts``: the rendered batch and the residual stream at ``layers`` in its
    ``columns`` (every column with ``None``), ``[batch, n_layers, n_columns, d_model]`` float32
    on the CPU. The hooks live while the batches are read and are removed after the last."""
    import torch

    seen: dict[int, torch.Tensor] = {}

    def keep(hidden: torch.Tensor, layer: int) -> None:
        kept = hidden if columns is None else hidden[:, list(columns)]
        seen[layer] = kept.detach().to("cpu", torch.float32)

    with (
        ExitStack() as stack,
        torch.no_grad(),
        progress_bar(len(texts), desc, enabled=progress) as bar,
    ):
        for layer in layers:
            stack.enter_context(
                hook_residual(model, partial(keep, layer=layer), layers=[layer], where=where)
            )
        for chunk in _batches(texts, batch_size):
            batch = encode_batch(tokenizer, chunk, system=system).to(model.device)
            model(**batch.model_inputs())
            yield batch, torch.stack([seen.pop(layer) for layer in layers], dim=1)
            bar.advance(len(chunk))


def _cache_file(cache_dir: Path, model_hash: str, data_hash: str, key: str) -> Path:
    return (
        cache_dir
        / f"acts-{model_hash}-{data_hash}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.safetensors"
    )


def collect(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet | Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    positions: Positions = "post_instruction",
    where: Where = "pre",
    system: str | None = None,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "activations",
) -> Activations:
    """Every activation at ``layers`` and ``positions``, in memory (and on disk with ``cache_dir``).

    With ``cache_dir``, a file named by the model's fingerprint, the data's hash
    and the layers/positions is reused when present and written (atomically)
    when not.
    """
    import torch
    from safetensors.torch import load_file, save_file

    texts, layers, cols = _plan(model, tokenizer, prompts, layers, positions, system)
    data_hash = _data_hash(texts, system)
    model_hash = model_fingerprint(model)
    path = None
    if cache_dir is not None:
        key = json.dumps({"layers": layers, "positions": cols, "where": where})
        path = _cache_file(Path(cache_dir), model_hash, data_hash, key)
        if path.is_file():
            values = load_file(str(path))["values"]
            return Activations(values, layers, cols, where, data_hash, model_hash, path)

    batches = _residual_batches(
        model, tokenizer, texts, layers, cols, where, system, batch_size, progress, desc
    )
    values = torch.cat([acts for _, acts in batches])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        save_file(
            {"values": values.contiguous()},
            str(tmp),
            metadata={"layers": json.dumps(layers), "positions": json.dumps(cols)},
        )
        tmp.replace(path)
    return Activations(values, layers, cols, where, data_hash, model_hash, path)


def collect_tokens(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet | Sequence[str],
    *,
    layers: Sequence[int],
    where: Where = "pre",
    system: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "token activations",
) -> list[torch.Tensor]:
    """The residual stream at ``layers`` over every token of each rendered prompt.

    One float32 tensor ``[n_layers, n_tokens, d_model]`` per prompt, its padding dropped:
    the chat template's tokens, the system prompt's and the instruction's. Token-level
    readers (:class:`~redblue.detect.TokenProbeDetector`) need them all; lengths differ
    between prompts, hence a list.
    """
    texts = _instructions(prompts)
    rows: list[torch.Tensor] = []
    batches = _residual_batches(
        model, tokenizer, texts, list(layers), None, where, system, batch_size, progress, desc
    )
    for batch, acts in batches:
        mask = batch.attention_mask.to("cpu").bool()
        rows += [acts[i][:, mask[i]] for i in range(len(acts))]
    return rows
