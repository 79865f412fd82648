"""Tamper resistance: training against a simulated fine-tuning attack (after Tamirisa et al.
2024, "Tamper-Resistant Safeguards for Open-Weight LLMs", TAR).

A safeguard that lives in the weights can be trained away: a few LoRA steps on
harmful answers (``redblue attack run finetune``) undo refusal training, circuit
breakers and latent adversarial training alike. TAR puts that attack inside
training. At each step:

* **inner** (the attacker): a fresh low-rank adapter on the attention and MLP
  output projections of every block (the fine-tuning attack's default modules)
  takes one Adam step per batch of harmful answers, on the attack's own loss,
  with the defended weights held fixed;
* **outer** (the defender): at the attacked weights, the tamper-resistance loss
  is computed on one more batch of harmful answers, and its gradient reaches the
  defender's weights with the attacker's adapter held fixed (the first-order
  approximation TAR uses). The loss is the negated entropy of the next-token
  distribution on the answer tokens, normalised by its maximum ``log(vocab)``:
  bounded, unlike a negated cross-entropy, so the defender learns to make the
  attacked model unsure on harmful answers rather than confidently wrong.

The adapters live in forward hooks (:func:`attached`), removed on exit; the
model's own modules and weights are never replaced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "LowRank",
    "answer_entropy",
    "attached",
    "output_projections",
    "simulate_finetune",
    "tamper_loss",
]


@dataclass
class LowRank:
    """One module's simulated adapter: the update is ``scale * B @ A`` (``A`` ``[r, in]``,
    ``B`` ``[out, r]``), as peft's LoRA."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float

    def detached(self) -> LowRank:
        return LowRank(self.a.detach(), self.b.detach(), self.scale)


def output_projections(model: nn.Module) -> list[nn.Module]:
    """The attention and MLP output projections of every block (the fine-tuning attack's
    default targets), from the model layer's ArchSpec."""
    from redblue.models.adapter import adapt

    adapter = adapt(model)
    return [
        m
        for layer in range(adapter.n_layers)
        for m in (adapter.attn_out(layer), adapter.mlp_out(layer))
    ]


def _features(module: nn.Module) -> tuple[int, int]:
    """``(in, out)`` features of a linear layer, through a peft wrapper if there is one."""
    base: Any = getattr(module, "base_layer", module)
    weight = base.weight
    return int(weight.shape[1]), int(weight.shape[0])


@contextmanager
def attached(modules: Sequence[nn.Module], adapters: Sequence[LowRank]) -> Iterator[None]:
    """Add each adapter's update to its module's output while inside the block."""
    from redblue.models.hooks import Hooks

    def hook_for(adapter: LowRank) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            x = args[0]
            update = (x.to(adapter.a.dtype) @ adapter.a.T) @ adapter.b.T
            return output + (adapter.scale * update).to(output.dtype)

        return hook

    with Hooks() as hooks:
        for module, adapter in zip(modules, adapters, strict=True):
            hooks.add(module.register_forward_hook(hook_for(adapter)))
        yield


def answer_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean entropy, in units of ``log(vocab)``, of the next-token distributions that predict
    the labelled (answer) tokens; ``labels`` is ``-100`` elsewhere."""
    import torch

    predicts = (labels[:, 1:] != -100).float()
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    entropy = -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])
    return (entropy * predicts).sum() / predicts.sum().clamp(min=1)


def simulate_finetune(
    model: nn.Module,
    modules: Sequence[nn.Module],
    batches: Sequence[Mapping[str, torch.Tensor]],
    *,
    rank: int = 8,
    alpha: float = 16.0,
    learning_rate: float = 5e-3,
    generator: torch.Generator | None = None,
) -> list[LowRank]:
    """Train fresh low-rank adapters on ``modules`` for one Adam step per batch of harmful
    answers (cross-entropy on the labelled tokens), the model's own weights held fixed;
    returns the adapters, detached. ``A`` starts as peft's (uniform in ``±1/sqrt(in)``), ``B``
    at zero."""
    import torch

    device = next(model.parameters()).device
    adapters = []
    for module in modules:
        d_in, d_out = _features(module)
        bound = 1 / math.sqrt(d_in)
        a = (torch.rand(rank, d_in, generator=generator) * 2 - 1) * bound
        adapters.append(
            LowRank(
                a.to(device).requires_grad_(True),
                torch.zeros(d_out, rank, device=device, requires_grad=True),
                alpha / rank,
            )
        )
    params = [t for adapter in adapters for t in (adapter.a, adapter.b)]
    optimiser = torch.optim.Adam(params, lr=learning_rate)
    for inputs in batches:
        with attached(modules, adapters):
            loss = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                labels=inputs["labels"],
            ).loss
        grads = torch.autograd.grad(loss, params)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        optimiser.step()
    return [adapter.detached() for adapter in adapters]


def tamper_loss(
    model: nn.Module,
    blocks_model: nn.Module,
    batches: Sequence[Mapping[str, torch.Tensor]],
    *,
    rank: int = 8,
    alpha: float = 16.0,
    learning_rate: float = 5e-3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The tamper-resistance loss of one training step: the attacker fine-tunes on every batch
    but the last (:func:`simulate_finetune`), then the negated answer entropy of the attacked
    ``model`` on the last batch, with a gradient for the defender's weights only."""
    if len(batches) < 2:
        raise ValueError("tamper_loss needs at least one batch to attack with and one to score")
    modules = output_projections(blocks_model)
    adapters = simulate_finetune(
        model,
        modules,
        batches[:-1],
        rank=rank,
        alpha=alpha,
        learning_rate=learning_rate,
        generator=generator,
    )
    scored = batches[-1]
    with attached(modules, adapters):
        logits = model(
            input_ids=scored["input_ids"], attention_mask=scored["attention_mask"]
        ).logits
    return -answer_entropy(logits, scored["labels"])
