"""Targeted latent adversarial training (Sheshadri et al. 2024, "Latent Adversarial Training
Improves Robustness to Persistent Harmful Behaviors in LLMs").

Attacks such as refusal-direction ablation and prefilling act on the residual
stream, or end up there; LAT trains against the strongest such push it can find.
Each step has two loops:

* **inner** (the adversary): a perturbation ``delta`` is added to the residual
  stream after each block in ``lat_layers``, at the harmful request's prompt
  tokens, and optimised by projected gradient descent for ``inner_steps`` steps
  within an L2 ball of radius ``epsilon`` per token, *towards* the harmful
  completion (its cross-entropy falls) and *away* from the refusal (its
  ``-log(1 - p)`` loss falls, i.e. the refusal tokens become unlikely);
* **outer** (the model, LoRA): under the final perturbation, train the refusal
  (cross-entropy) and push away from the harmful completion (``-log(1 - p)``,
  bounded, unlike a negated cross-entropy); plus SFT on benign answers without
  perturbation with a KL term to the model before training (``retain_kl_weight``),
  and optionally plain refusals without it. The retain defaults (benign weight 3,
  KL weight 20) were chosen on the organism, where lighter retain terms let
  over-refusal rise by 10 to 30 points.

Residual norms differ by orders of magnitude across models, so ``epsilon`` is by
default a fraction (``epsilon_scale``) of the median token norm at each chosen
layer, measured on the frozen model at the first step (the median ignores the
attention-sink token's outsized norm). The PGD step is the usual L2 one: the
per-token gradient normalised, times ``inner_step_scale * epsilon``.

The harmful and refusal streams are shuffled independently, so each harmful row
is paired with the refusal of the same prompt by its prompt tokens (the
perturbation lives on the prompt, identical in both sequences).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redblue.defenses.base import DefenseArguments, DefenseTrainer, register
from redblue.defenses.data import DefenseData, Encoded, Example
from redblue.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["LATArguments", "LATTrainer", "default_layers", "log1m_loss", "perturbed"]

#: Depth fractions of the default perturbed blocks (Sheshadri et al. use layers 8, 16, 24
#: (and 30) of 32-layer Llamas).
DEFAULT_DEPTHS = (0.25, 0.5, 0.75)


@dataclass
class LATArguments(DefenseArguments):
    max_steps: int = field(
        default=60,
        metadata={
            "help": "Optimiser steps (LAT: 60, about 2 min of one CPU core on the organism)."
        },
    )
    lat_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Blocks (0-based) whose output is perturbed; default: those at 1/4, 1/2 and "
            "3/4 of the depth, the last block excluded."
        },
    )
    epsilon: float | None = field(
        default=None,
        metadata={
            "help": "L2 bound of the perturbation per token (absolute); default: epsilon_scale "
            "times the median residual token norm at each layer."
        },
    )
    epsilon_scale: float = field(
        default=0.25,
        metadata={"help": "Bound as a fraction of the median token norm (when epsilon is unset)."},
    )
    inner_steps: int = field(default=6, metadata={"help": "PGD steps of the adversary per step."})
    inner_step_scale: float = field(
        default=0.5, metadata={"help": "PGD step length as a fraction of epsilon."}
    )
    toward_harmful_weight: float = field(
        default=1.0, metadata={"help": "Adversary: weight of the harmful completion's loss."}
    )
    away_refusal_weight: float = field(
        default=1.0, metadata={"help": "Adversary: weight of -log(1-p) on the refusal."}
    )
    refusal_weight: float = field(
        default=1.0, metadata={"help": "Model: refusal SFT under the perturbation."}
    )
    away_harmful_weight: float = field(
        default=0.2,
        metadata={"help": "Model: -log(1-p) on the harmful completion under the perturbation."},
    )
    clean_refusal_weight: float = field(
        default=0.0, metadata={"help": "Model: refusal SFT without perturbation (0: off)."}
    )
    benign_weight: float = field(
        default=3.0, metadata={"help": "Model: benign SFT without perturbation."}
    )
    retain_kl_weight: float = field(
        default=20.0,
        metadata={
            "help": "Model: KL(frozen || model) on benign answer tokens, no perturbation (0: off)."
        },
    )

    def __post_init__(self) -> None:
        if self.epsilon is not None and self.epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        if self.epsilon_scale <= 0:
            raise ValueError(f"epsilon_scale must be > 0, got {self.epsilon_scale}")
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {self.inner_steps}")
        if self.inner_step_scale <= 0:
            raise ValueError(f"inner_step_scale must be > 0, got {self.inner_step_scale}")
        if self.lat_layers is not None and any(layer < 0 for layer in self.lat_layers):
            raise ValueError(f"lat_layers must be 0-based block indices, got {self.lat_layers}")
        weights = (
            self.toward_harmful_weight,
            self.away_refusal_weight,
            self.refusal_weight,
            self.away_harmful_weight,
            self.clean_refusal_weight,
            self.benign_weight,
            self.retain_kl_weight,
        )
        if min(weights) < 0:
            raise ValueError("loss weights must be >= 0")
        super().__post_init__()


def default_layers(n_layers: int) -> list[int]:
    """The blocks perturbed by default: at :data:`DEFAULT_DEPTHS` of the depth, never the
    last block (a perturbation there is a direct attack on the logits)."""
    top = max(0, n_layers - 2)
    return sorted({min(top, round(n_layers * f)) for f in DEFAULT_DEPTHS})


@contextmanager
def perturbed(
    model: nn.Module, deltas: Mapping[int, torch.Tensor], mask: torch.Tensor
) -> Iterator[None]:
    """Add ``deltas[layer]`` ``[batch, P, d_model]`` to the residual stream after each block,
    at the first ``P`` positions where ``mask`` ``[batch, P]`` is true; hooks removed on exit.

    Sequences may be longer than ``P`` (the perturbation covers their prompt).
    """
    from redblue.models.hooks import hook_residual

    def add(delta: torch.Tensor) -> Any:
        def fn(hidden: torch.Tensor) -> torch.Tensor:
            n = min(delta.shape[1], hidden.shape[1])
            d = (delta[:, :n] * mask[:, :n, None]).to(hidden.dtype)
            pad = hidden.new_zeros(hidden.shape[0], hidden.shape[1] - n, hidden.shape[2])
            return hidden + (d if pad.shape[1] == 0 else _cat(d, pad))

        return fn

    with ExitStack() as stack:
        for layer, delta in deltas.items():
            stack.enter_context(hook_residual(model, add(delta), layers=[layer]))
        yield


def _cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.cat([a, b], dim=1)


def log1m_loss(model: Any, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean ``-log(1 - p(y_t))`` over the labelled tokens: small when the answer is unlikely,
    bounded below by 0 (the "away" loss of Sheshadri et al.)."""
    import torch

    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    labels = inputs["labels"][:, 1:]
    trained = labels != -100
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    # log(1 - p) = log(-expm1(log p)), clamped away from log p = 0
    per_token = -torch.log(-torch.expm1(token.clamp(max=-1e-6)))
    return (per_token * trained).sum() / trained.sum().clamp(min=1)


@register
class LATTrainer(DefenseTrainer):
    name = "lat"
    goal = "Refuse under worst-case residual-stream perturbations towards harm (Sheshadri et al. 2024)."
    arguments_class = LATArguments
    args: LATArguments

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epsilon: dict[int, float] | None = None
        self._refusal_of: dict[tuple[int, ...], Encoded] | None = None

    @classmethod
    def prepare(
        cls,
        model: Any,
        tokenizer: Any,
        data: DefenseData,
        args: DefenseArguments,
    ) -> DefenseData:
        """Keep the harmful examples whose prompt has a refusal (the pairs the adversary needs)."""
        data.require("harmful", "refusals", "benign", defense=cls.name)
        refused = {e.prompt for e in data.refusals}
        paired = [e for e in data.harmful if e.prompt in refused]
        if not paired:
            raise DataError(
                "the lat defence pairs each harmful answer with a refusal of the same prompt, "
                "and no harmful prompt has both",
                fix="build harmful and refusals from the same prompts (build_data does)",
            )
        data.harmful = paired
        return data

    @classmethod
    def streams(cls, data: DefenseData, args: DefenseArguments) -> dict[str, list[Example]]:
        return {"harmful": data.harmful, "refusals": data.refusals, "benign": data.benign}

    # -- pieces ------------------------------------------------------------------------------

    def layers(self, model: Any) -> list[int]:
        from redblue.models.adapter import adapt

        n = adapt(self.blocks_model(model)).n_layers
        layers = list(self.args.lat_layers) if self.args.lat_layers else default_layers(n)
        bad = [layer for layer in layers if layer >= n]
        if bad:
            raise ConfigError(
                f"lat_layers {bad} out of range for a model with {n} blocks",
                where="lat_layers",
                fix=f"use 0-based blocks below {n}",
            )
        return layers

    def epsilons(self, model: Any, inputs: Mapping[str, torch.Tensor]) -> dict[int, float]:
        """Per-layer bound: ``epsilon``, or ``epsilon_scale`` times the median prompt-token norm
        of the frozen model's residual stream (measured once)."""
        if self._epsilon is None:
            layers = self.layers(model)
            if self.args.epsilon is not None:
                self._epsilon = dict.fromkeys(layers, float(self.args.epsilon))
            else:
                prompt = _prompt_mask(inputs)
                with self.frozen(model) as reference:
                    hidden = self.hidden_states(reference, inputs, layers)
                self._epsilon = {
                    layer: self.args.epsilon_scale * float(h[prompt].float().norm(dim=-1).median())
                    for layer, h in zip(layers, hidden, strict=True)
                }
        return self._epsilon

    def paired_refusals(self, harmful: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The refusal batch of the same prompts as ``harmful``, row by row."""
        if self._refusal_of is None:
            rows: Sequence[Encoded] = self.train_dataset.streams["refusals"]  # type: ignore[union-attr]
            self._refusal_of = {tuple(r.input_ids[: r.n_prompt]): r for r in rows}
        found = []
        for ids, response in zip(harmful["input_ids"], harmful["response_mask"], strict=True):
            n_prompt = int(response.nonzero()[0]) if response.any() else len(ids)
            key = tuple(int(i) for i in ids[:n_prompt])
            if key not in self._refusal_of:
                raise DataError(
                    "a harmful example's prompt has no refusal in the refusals stream",
                    fix="build harmful and refusals from the same prompts (build_data does)",
                )
            found.append({"refusals": self._refusal_of[key]})
        batch = self.data_collator(found)["refusals"]
        return {k: v.to(harmful["input_ids"].device) for k, v in batch.items()}

    def attack(
        self,
        model: Any,
        harmful: Mapping[str, torch.Tensor],
        refusal: Mapping[str, torch.Tensor],
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor, dict[str, float]]:
        """PGD on per-token perturbations of the prompt (see the module's docstring); returns the
        detached perturbations ``layer -> [batch, P, d_model]``, the prompt mask ``[batch, P]``
        and the adversary's final losses."""
        import torch

        from redblue.models.adapter import adapt

        epsilon = self.epsilons(model, harmful)
        mask = _prompt_mask(harmful)
        width = int(mask.any(0).nonzero().max()) + 1
        mask = mask[:, :width]
        blocks = self.blocks_model(model)
        d_model = adapt(blocks).d_model
        deltas = {
            layer: torch.zeros(
                mask.shape[0], width, d_model, device=mask.device, requires_grad=True
            )
            for layer in epsilon
        }
        args = self.args
        toward = away = torch.zeros(())
        for _ in range(args.inner_steps):
            with perturbed(blocks, deltas, mask):
                toward = self.sft_loss(model, harmful)
                away = log1m_loss(model, refusal)
            loss = args.toward_harmful_weight * toward + args.away_refusal_weight * away
            grads = torch.autograd.grad(loss, list(deltas.values()))
            with torch.no_grad():
                for (layer, delta), grad in zip(deltas.items(), grads, strict=True):
                    eps = epsilon[layer]
                    unit = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                    delta -= args.inner_step_scale * eps * unit * mask[..., None]
                    norm = delta.norm(dim=-1, keepdim=True)
                    delta *= (eps / norm.clamp_min(1e-12)).clamp(max=1.0)
        parts = {"adv_toward_harmful": toward.item(), "adv_away_refusal": away.item()}
        return {k: v.detach() for k, v in deltas.items()}, mask, parts

    # -- the loss ----------------------------------------------------------------------------

    def defense_loss(
        self, model: Any, batch: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        args = self.args
        harmful = batch["harmful"]
        refusal = self.paired_refusals(harmful)
        deltas, mask, parts = self.attack(model, harmful, refusal)
        with perturbed(self.blocks_model(model), deltas, mask):
            refuse = self.sft_loss(model, refusal)
            away = log1m_loss(model, harmful) if args.away_harmful_weight else refuse.new_zeros(())
        if args.retain_kl_weight:
            benign, kl = self.sft_and_kl(model, batch["benign"])
            parts["retain_kl"] = kl.item()
            total_kl = args.retain_kl_weight * kl
        else:
            benign, total_kl = self.sft_loss(model, batch["benign"]), None
        total = args.refusal_weight * refuse + args.away_harmful_weight * away
        total = total + args.benign_weight * benign
        if total_kl is not None:
            total = total + total_kl
        parts |= {"refusal": refuse.item(), "away_harmful": away.item(), "benign": benign.item()}
        if args.clean_refusal_weight:
            clean = self.sft_loss(model, batch["refusals"])
            total = total + args.clean_refusal_weight * clean
            parts["clean_refusal"] = clean.item()
        return total, parts


def _prompt_mask(inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``[batch, seq]`` bool: the real tokens before the assistant turn."""
    return inputs["attention_mask"].bool() & ~inputs["response_mask"]
