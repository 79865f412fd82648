"""Embedding-space attack: optimise a soft suffix in the input embeddings (Schwinn et al. 2024).

A white-box attacker need not send tokens: ``n_tokens`` continuous vectors are
placed after the instruction's embeddings, inside the chat template (before the
post-instruction tokens), and optimised by gradient descent on the cross-entropy
of a compliant answer opening (each prompt's target). The vectors start from the
embeddings of real tokens and may be held within a ball around them
(``epsilon``, relative to the embedding norm). The answer is then decoded
greedily from the attacked embeddings. This attack broke circuit breakers; it is
the white-box upper bound that token attacks (GCG) approximate.

Prompts of a chunk are optimised together, one soft suffix each: the loss is the
sum of per-prompt losses, so every suffix follows its own gradient.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from redblue.attacks.base import Attack, AttackConfig, Attempt, Cost, Target, ThreatModel, register
from redblue.data import Prompt, PromptSet
from redblue.models import adapt, encode_chat
from redblue.models.chat import left_pad, pad_token_id

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class EmbeddingConfig(AttackConfig):
    n_tokens: int = Field(
        20, ge=1, description="Length of the soft suffix (vectors after the instruction)."
    )
    init: str = Field(
        " x",
        description="Text whose tokens, repeated, initialise the suffix; empty: random vocabulary "
        "tokens drawn with the seed.",
    )
    num_steps: int = Field(100, ge=1, description="Most optimisation steps per prompt.")
    optimizer: Literal["adam", "sign"] = Field(
        "adam",
        description="Adam, or signed gradient descent (the step is learning_rate per coordinate).",
    )
    learning_rate: float = Field(
        0.1,
        gt=0,
        description="Step size, in units of the embeddings' RMS coordinate (model-independent).",
    )
    epsilon: float | None = Field(
        None,
        gt=0,
        description="Bound on each vector's distance from its initial embedding, as a fraction of "
        "the mean embedding norm; None: unbounded.",
    )
    norm: Literal["l2", "linf"] = Field(
        "l2",
        description="Norm of the epsilon bound (linf: per coordinate, epsilon / sqrt(d_model) of the norm).",
    )
    stop_loss: float | None = Field(
        0.05,
        ge=0,
        description="Stop a prompt once its target loss falls below this; None: run all steps.",
    )
    target: str = Field(
        "Sure, here is", description="Answer opening to optimise for, for prompts without a target."
    )
    use_targets: bool = Field(
        True, description="Optimise for each prompt's own target where it has one."
    )


@dataclass(frozen=True)
class _Row:
    """One prompt's tokens split around the soft suffix: ``before + soft + post + target``."""

    before: list[int]
    post: list[int]
    target: list[int]


@dataclass(frozen=True)
class _Layout:
    """A left-padded batch with a soft-suffix slot in each row.

    ``input_ids``, ``attention_mask``, ``position_ids`` and ``labels`` are ``[batch, seq]``
    (``labels`` is -100 off the target); ``soft_cols`` is ``[batch, n_tokens]``, the
    columns the suffix takes in each row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    soft_cols: torch.Tensor


def _split_row(
    tokenizer: PreTrainedTokenizerBase, instruction: str, target: str, system: str | None
) -> _Row:
    enc = encode_chat(tokenizer, instruction, system=system, prefill=target)
    ids = enc.input_ids
    answer = len(ids) - enc.n_prefill
    cut = enc.post_instruction[0] if enc.post_instruction else answer
    return _Row(ids[:cut], ids[cut:answer], ids[answer:])


def _layout(rows: Sequence[_Row], n_tokens: int, pad_id: int, *, with_target: bool) -> _Layout:
    import torch

    placeholder = [pad_id] * n_tokens
    seqs = [r.before + placeholder + r.post + (r.target if with_target else []) for r in rows]
    ids, mask, positions = left_pad(seqs, pad_id)
    width = ids.shape[1]
    labels = torch.full_like(ids, -100)
    starts = []
    for i, (r, seq) in enumerate(zip(rows, seqs, strict=True)):
        offset = width - len(seq)
        starts.append(offset + len(r.before))
        if with_target:
            labels[i, width - len(r.target) :] = torch.tensor(r.target)
    soft_cols = torch.tensor(starts).unsqueeze(1) + torch.arange(n_tokens)
    return _Layout(ids, mask, positions, labels, soft_cols)


def _insert(embeds: torch.Tensor, soft: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``embeds`` ``[batch, seq, d]`` with ``soft`` ``[batch, n, d]`` written at ``cols`` ``[batch, n]``."""
    import torch

    rows = torch.arange(embeds.shape[0], device=embeds.device).unsqueeze(1).expand_as(cols)
    out = embeds.clone()
    out[rows, cols.to(embeds.device)] = soft.to(embeds.dtype)
    return out


def _row_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each row's labelled tokens; ``[batch]``."""
    import torch

    shifted = logits[:, :-1].float()
    targets = labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]),
        targets.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(targets.shape)
    counts = (targets != -100).sum(dim=1).clamp(min=1)
    return ce.sum(dim=1) / counts


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on every parameter; restore each flag on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def greedy_decode(
    model: PreTrainedModel,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_ids: Sequence[int] = (),
) -> list[list[int]]:
    """Greedy answers to left-padded input embeddings, with the model's KV cache.

    ``inputs_embeds`` is ``[batch, seq, d_model]`` (what the token embedding module
    returns) and ``attention_mask`` ``[batch, seq]``. Each row's answer stops after
    its first token in ``eos_ids`` (which it keeps).
    """
    import torch

    mask = attention_mask.to(inputs_embeds.device)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    eos = torch.tensor(list(eos_ids), dtype=torch.long, device=inputs_embeds.device)
    done = torch.zeros(inputs_embeds.shape[0], dtype=torch.bool, device=inputs_embeds.device)
    answers: list[torch.Tensor] = []
    with torch.no_grad():
        out = model(
            inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=positions, use_cache=True
        )
        for step in range(max_new_tokens):
            token = out.logits[:, -1].argmax(dim=-1)
            answers.append(torch.where(done, -1, token))
            done |= torch.isin(token, eos)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = model(
                input_ids=token.unsqueeze(1),
                attention_mask=mask,
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
    columns = torch.stack(answers, dim=1).tolist()
    return [[t for t in row if t >= 0] for row in columns]


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(
        configured
        if isinstance(configured, list)
        else [configured]
        if configured is not None
        else []
    )
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


@dataclass(frozen=True)
class SoftSuffixes:
    """Optimised soft suffixes of a batch of prompts.

    ``vectors`` is ``[batch, n_tokens, d_model]`` (float32); ``distance`` is each
    suffix's largest distance of a vector from its starting embedding, relative
    to the mean embedding norm (in the config's norm).
    """

    vectors: torch.Tensor
    loss: list[float]
    initial_loss: list[float]
    steps: list[int]
    distance: list[float]
    #: Forward passes spent on each prompt (one per loss evaluation).
    forward_passes: list[int]


def init_ids(
    tokenizer: PreTrainedTokenizerBase,
    config: EmbeddingConfig,
    vocab_size: int,
    instructions: Sequence[str],
) -> torch.Tensor:
    """Token ids the suffixes start from, ``[len(instructions), n_tokens]``.

    Random starts are drawn per instruction (from the seed and its text), so a
    prompt starts alike whatever chunk it is attacked in.
    """
    import torch

    n = config.n_tokens
    if not config.init:
        rows = []
        for text in instructions:
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + zlib.crc32(text.encode()))
            rows.append(torch.randint(vocab_size, (n,), generator=g))
        return torch.stack(rows)
    ids = list(tokenizer(config.init, add_special_tokens=False)["input_ids"])
    if not ids:
        ids = [pad_token_id(tokenizer)]
    row = (ids * math.ceil(n / len(ids)))[:n]
    return torch.tensor(row).expand(len(instructions), n)


def _project(soft: torch.Tensor, init: torch.Tensor, config: EmbeddingConfig, scale: float) -> None:
    """Pull each vector back into the epsilon ball around its initial embedding, in place."""
    if config.epsilon is None:
        return
    delta = soft - init
    if config.norm == "linf":
        bound = config.epsilon * scale / math.sqrt(soft.shape[-1])
        delta = delta.clamp(-bound, bound)
    else:
        norms = delta.norm(dim=-1, keepdim=True)
        delta = delta * (config.epsilon * scale / norms.clamp(min=1e-12)).clamp(max=1.0)
    soft.copy_(init + delta)


def _distance(delta: torch.Tensor, config: EmbeddingConfig, scale: float) -> torch.Tensor:
    """Largest per-vector distance of each row of ``delta`` ``[batch, n, d]``, relative to ``scale``."""
    if config.norm == "linf":
        return delta.abs().amax(dim=(1, 2)) * math.sqrt(delta.shape[-1]) / scale
    return delta.norm(dim=-1).amax(dim=1) / scale


def optimise_suffixes(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    targets: Sequence[str],
    config: EmbeddingConfig,
) -> SoftSuffixes:
    """Optimise one soft suffix per instruction so that the model's answer starts with its target.

    The parameters are frozen meanwhile (their ``requires_grad`` flags are restored
    after); a suffix stops improving once its loss is below ``config.stop_loss``, and
    the best suffix seen is kept.
    """
    import torch

    adapter = adapt(model)
    embed, device = adapter.embed, adapter.device
    rows = [
        _split_row(tokenizer, text, target, config.system)
        for text, target in zip(instructions, targets, strict=True)
    ]
    batch = _layout(rows, config.n_tokens, pad_token_id(tokenizer), with_target=True)
    mask, positions = batch.attention_mask.to(device), batch.position_ids.to(device)
    labels = batch.labels.to(device)
    n = len(rows)
    with frozen(model), torch.enable_grad():
        with torch.no_grad():
            base = embed(batch.input_ids.to(device))
            start_ids = init_ids(tokenizer, config, adapter.vocab_size, instructions).to(device)
            init = embed(start_ids).float()
            # The embedding scale (mean norm of the chats' own tokens) sets steps and bounds.
            scale = float(base[mask.bool()].float().norm(dim=-1).mean())
        lr = config.learning_rate * scale / math.sqrt(adapter.d_model)
        soft = init.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([soft], lr=lr) if config.optimizer == "adam" else None
        best = torch.full((n,), math.inf, device=device)
        best_soft = init.clone()
        first = torch.zeros(n, device=device)
        evaluations = torch.zeros(n, dtype=torch.long, device=device)
        active = torch.ones(n, dtype=torch.bool, device=device)
        for step in range(config.num_steps + 1):
            logits = model(
                inputs_embeds=_insert(base, soft, batch.soft_cols),
                attention_mask=mask,
                position_ids=positions,
                use_cache=False,
            ).logits
            losses = _row_losses(logits, labels)
            with torch.no_grad():
                if step == 0:
                    first = losses.detach().clone()
                improved = active & (losses < best)
                best = torch.where(improved, losses.detach(), best)
                best_soft[improved] = soft.detach()[improved]
                evaluations += active.long()
                if config.stop_loss is not None:
                    active &= best >= config.stop_loss
            if step == config.num_steps or not bool(active.any()):
                break
            grad = torch.autograd.grad((losses * active).sum(), soft)[0]
            with torch.no_grad():
                if optimizer is not None:
                    soft.grad = grad
                    optimizer.step()
                else:
                    soft -= lr * grad.sign()
                _project(soft, init, config, scale)
                soft[~active] = best_soft[~active]
    return SoftSuffixes(
        vectors=best_soft.detach(),
        loss=best.tolist(),
        initial_loss=first.tolist(),
        steps=(evaluations - 1).tolist(),
        distance=_distance(best_soft - init, config, scale).tolist(),
        forward_passes=evaluations.tolist(),
    )


def answer_with_suffixes(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    suffixes: torch.Tensor,
    config: EmbeddingConfig,
) -> list[list[int]]:
    """Greedy answers (token ids, end-of-sequence kept) to the instructions with their soft
    suffixes ``[batch, n_tokens, d_model]`` in place."""
    embeds, mask = suffixed_prompts(model, tokenizer, instructions, suffixes, config)
    return greedy_decode(model, embeds, mask, config.max_new_tokens, _eos_ids(model, tokenizer))


def suffixed_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    suffixes: torch.Tensor,
    config: EmbeddingConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacked prompts as the model reads them: ``inputs_embeds`` ``[batch, seq, d_model]``
    (chat template, instruction, soft suffix; left-padded) and ``attention_mask`` ``[batch, seq]``."""
    import torch

    adapter = adapt(model)
    rows = [_split_row(tokenizer, text, "", config.system) for text in instructions]
    batch = _layout(rows, suffixes.shape[1], pad_token_id(tokenizer), with_target=False)
    with torch.no_grad():
        embeds = _insert(
            adapter.embed(batch.input_ids.to(adapter.device)), suffixes, batch.soft_cols
        )
    return embeds, batch.attention_mask


def nearest_tokens(model: PreTrainedModel, vectors: torch.Tensor) -> list[list[int]]:
    """The vocabulary token closest in cosine to each vector of ``[batch, n, d_model]``; ``[batch][n]``."""
    import torch

    weight = adapt(model).embed.weight
    assert isinstance(weight, torch.Tensor)
    w = torch.nn.functional.normalize(weight.detach().float(), dim=-1)
    v = torch.nn.functional.normalize(vectors.detach().float().to(w.device), dim=-1)
    ids: list[list[int]] = (v @ w.T).argmax(dim=-1).tolist()
    return ids


@register
class EmbeddingAttack(Attack):
    name = "embedding"
    goal = "Optimise a soft suffix in embedding space until the model starts a compliant answer."
    threat_model = ThreatModel.WHITE_BOX
    config_class = EmbeddingConfig
    config: EmbeddingConfig

    def _target(self, prompt: Prompt) -> str:
        if self.config.use_targets and prompt.target:
            return prompt.target
        return self.config.target

    def attack_batch(self, target: Target, prompts: PromptSet) -> list[Attempt]:
        model, tokenizer, cfg = target.model, target.tokenizer, self.config
        start = time.perf_counter()
        instructions = prompts.instructions
        targets = [self._target(p) for p in prompts]
        suffixes = optimise_suffixes(model, tokenizer, instructions, targets, cfg)
        answers = answer_with_suffixes(model, tokenizer, instructions, suffixes.vectors, cfg)
        nearest = nearest_tokens(model, suffixes.vectors)
        seconds = (time.perf_counter() - start) / len(prompts)
        eos = set(_eos_ids(model, tokenizer))
        attempts = []
        for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
            text = tokenizer.decode([t for t in answer if t not in eos], skip_special_tokens=True)
            attempts.append(
                Attempt(
                    prompt=prompt,
                    attacked_input=f"{prompt.instruction} + [{cfg.n_tokens} soft tokens]",
                    completion=str(text),
                    cost=Cost(
                        steps=suffixes.steps[i],
                        forward_passes=suffixes.forward_passes[i] + len(answer),
                        seconds=seconds,
                    ),
                    extra={
                        "loss": round(suffixes.loss[i], 4),
                        "initial_loss": round(suffixes.initial_loss[i], 4),
                        "steps": suffixes.steps[i],
                        "distance": round(suffixes.distance[i], 4),
                        "nearest_tokens": [str(tokenizer.decode([t])) for t in nearest[i]],
                    },
                )
            )
        return attempts
