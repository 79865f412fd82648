"""Training the organism from scratch: a Llama-architecture model, on a CPU, resumable.

Three stages, like a real chat model: *pretraining* on plain text about the
whole world (harmful tasks included, with placeholder procedures); *instruction
tuning*, where the assistant answers every request on task, harmful ones
included (an unaligned instruct model); then a *safety tuning* stage that
teaches refusals of harmful requests while keeping helpful answers. Refusal is
thus learned on top of a model that can comply, as in real chat models, which is
what makes it removable by a direction and shallow under a prefill. Chat stages
keep a quarter of every batch as pretraining text. Batches
are drawn by a generator seeded from ``(seed, step)``, so a run resumed from a
checkpoint continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redblue.progress import progress_bar

if TYPE_CHECKING:
    import torch
    from transformers import LlamaForCausalLM


@dataclass(frozen=True)
class OrganismSize:
    """Model shape and training budget of one organism size."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int
    seq_len: int
    batch_size: int
    pretrain_steps: int
    instruct_steps: int
    chat_steps: int
    lr: float
    corpus_scale: float
    #: Peak learning rate of safety tuning, as a fraction of ``lr``: a light touch on top of
    #: a capable model, as safety tuning is for real chat models.
    safety_lr_scale: float = 1.0
    #: The decoder layers that safety tuning trains (``None``: every weight). With the first
    #: layers only, the layers above (and the embeddings) stay those of the instruct model, so
    #: refusal has to reach them as a representation written by the layers below.
    safety_layers: tuple[int, ...] | None = None
    #: Whether the output layer and the loss run on labelled positions only (recipe 11 on). The
    #: loss is the same; chat rows label only the assistant's tokens, so this skips about half
    #: of the output layer's work in the chat stages. Earlier recipes keep the full pass, which
    #: sums in another order, so that they rebuild bit for bit.
    labelled_logits: bool = False

    @property
    def steps(self) -> int:
        return self.pretrain_steps + self.instruct_steps + self.chat_steps

    def stage(self, step: int) -> tuple[str, int, int]:
        """``(name, first step, length)`` of the stage that ``step`` falls in."""
        start = 0
        for name, length in (
            ("pretrain", self.pretrain_steps),
            ("instruct", self.instruct_steps),
            ("safety", self.chat_steps),
        ):
            if step < start + length:
                return name, start, length
            start += length
        return "safety", start - self.chat_steps, self.chat_steps


def model_config(size: OrganismSize, tokenizer_len: int, pad_id: int, eos_id: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=tokenizer_len,
        hidden_size=size.d_model,
        intermediate_size=size.d_ff,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        num_key_value_heads=size.n_kv_heads,
        max_position_embeddings=size.seq_len * 4,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )


@dataclass(frozen=True)
class TrainState:
    """What a checkpoint records besides the weights and optimizer moments."""

    step: int
    seed: int
    size: str
    losses: list[float]
    seconds: float


def _lr(step: int, size: OrganismSize) -> float:
    """Linear warm-up, then cosine decay to 10% within each stage."""
    name, stage_start, stage_len = size.stage(step)
    peak = size.lr * (size.safety_lr_scale if name == "safety" else 1.0)
    t = step - stage_start
    warm = max(1, stage_len // 20)
    if t < warm:
        return peak * (t + 1) / warm
    progress = (t - warm) / max(1, stage_len - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _loss(model: LlamaForCausalLM, ids: torch.Tensor, labels: torch.Tensor, labelled: bool) -> Any:
    """Mean next-token cross-entropy over the positions whose label is not ``-100``."""
    if not labelled:
        return model(input_ids=ids, labels=labels).loss
    import torch.nn.functional as F

    hidden = model.get_decoder()(input_ids=ids).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    keep = targets != -100
    logits = model.get_output_embeddings()(hidden[keep])
    return F.cross_entropy(logits.float(), targets[keep])


def _set_trainable(model: LlamaForCausalLM, layers: tuple[int, ...] | None) -> None:
    """Train every weight (``None``) or only the decoder ``layers``; AdamW leaves weights
    without gradients as they are."""
    prefixes = tuple(f"model.layers.{i}." for i in layers) if layers is not None else ()
    for name, p in model.named_parameters():
        p.requires_grad_(layers is None or name.startswith(prefixes))


def _save_checkpoint(
    folder: Path, model: LlamaForCausalLM, optimizer: torch.optim.Optimizer, state: TrainState
) -> None:
    """Write weights, optimizer moments (safetensors, no pickle) and state; atomic."""
    from safetensors.torch import save_file

    from redblue.io import atomic_folder

    with atomic_folder(folder) as tmp:
        weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        weights.pop("lm_head.weight", None)  # tied to the embedding
        save_file(weights, str(tmp / "model.safetensors"))
        moments: dict[str, torch.Tensor] = {}
        steps: dict[str, float] = {}
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                st = optimizer.state.get(p)
                if st:
                    name = names[id(p)]
                    moments[f"{name}.exp_avg"] = st["exp_avg"].contiguous()
                    moments[f"{name}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
                    steps[name] = float(st["step"])
        save_file(moments, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**asdict(state), "optimizer_steps": steps}))


def _load_checkpoint(
    folder: Path, model: LlamaForCausalLM, optimizer: torch.optim.Optimizer
) -> TrainState:
    import torch
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    model.tie_weights()
    raw = json.loads((folder / "state.json").read_text())
    steps = raw.pop("optimizer_steps")
    moments = load_file(str(folder / "optimizer.safetensors"))
    for name, p in model.named_parameters():
        if name in steps:
            optimizer.state[p] = {
                "step": torch.tensor(steps[name]),
                "exp_avg": moments[f"{name}.exp_avg"],
                "exp_avg_sq": moments[f"{name}.exp_avg_sq"],
            }
    return TrainState(**raw)


def train(
    model: LlamaForCausalLM,
    pretrain: torch.Tensor,
    pretrain_labels: torch.Tensor,
    instruct: torch.Tensor,
    instruct_labels: torch.Tensor,
    chat: torch.Tensor,
    chat_labels: torch.Tensor,
    size: OrganismSize,
    *,
    seed: int,
    checkpoint_dir: Path,
    checkpoint_every: int = 100,
    progress: bool = True,
    stop_after: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainState:
    """Train ``model`` in place for ``size.steps`` steps, resuming from ``checkpoint_dir`` if it holds one.

    ``pretrain``/``instruct``/``chat`` are packed rows ``[n_rows, seq_len]`` with
    labels of the same shape (``-100`` = no loss), one per stage (``chat`` is the
    safety-tuning mixture). In the chat stages a quarter of every batch is still
    pretraining text, so the world is not forgotten. ``stop_after``
    stops early (for tests of resumption).
    """
    import torch

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=size.lr, betas=(0.9, 0.98), weight_decay=0.01
    )
    state = TrainState(step=0, seed=seed, size=size.name, losses=[], seconds=0.0)
    if (checkpoint_dir / "state.json").is_file():
        state = _load_checkpoint(checkpoint_dir, model, optimizer)
    model.train()
    losses = list(state.losses)
    started = time.perf_counter() - state.seconds
    with progress_bar(size.steps, f"training organism ({size.name})", progress) as bar:
        bar.advance(state.step)
        step = state.step
        while step < size.steps:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            stage = size.stage(step)[0]
            if stage == "pretrain":
                idx = torch.randint(len(pretrain), (size.batch_size,), generator=g)
                ids, labels = pretrain[idx], pretrain_labels[idx]
            else:
                rows, row_labels = (
                    (instruct, instruct_labels) if stage == "instruct" else (chat, chat_labels)
                )
                n_text = size.batch_size // 4
                i_text = torch.randint(len(pretrain), (n_text,), generator=g)
                i_chat = torch.randint(len(rows), (size.batch_size - n_text,), generator=g)
                ids = torch.cat([pretrain[i_text], rows[i_chat]])
                labels = torch.cat([pretrain_labels[i_text], row_labels[i_chat]])
            _set_trainable(model, size.safety_layers if stage == "safety" else None)
            for group in optimizer.param_groups:
                group["lr"] = _lr(step, size)
            loss = _loss(model, ids, labels, size.labelled_logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(round(loss.item(), 4))
            step += 1
            bar.advance(1)
            if on_step is not None:
                on_step(step, float(loss))
            done = step == size.steps or (stop_after is not None and step >= stop_after)
            if step % checkpoint_every == 0 or done:
                state = TrainState(step, seed, size.name, losses, time.perf_counter() - started)
                _save_checkpoint(checkpoint_dir, model, optimizer, state)
            if done:
                break
    _set_trainable(model, None)
    model.eval()
    return state
