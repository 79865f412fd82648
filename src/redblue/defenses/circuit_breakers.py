"""Circuit breakers by representation rerouting (Zou et al. 2024, "Improving Alignment and
Robustness with Circuit Breakers").

Refusal training teaches a model to say no; an attack that gets past the "no"
(a pre-filled answer, an ablated refusal direction, a jailbreak wrapper) finds
the harmful knowledge intact behind it. Circuit breakers act on the
representations that produce harmful text instead: LoRA adapters on the blocks
up to the deepest target layer are trained so that, on a harmful request and
its compliant answer, the residual stream at the target layers points away from
where the frozen model had it (rerouting loss: ``ReLU(cos(h, h_frozen))`` over
the tokens of the request and the answer, driven to 0), while on benign
examples, and on the model's own refusals, it stays where it was (retain loss:
the L2 distance ``||h - h_frozen||`` at every adapted block, driven to 0). Once
the harmful representation is rerouted, whatever way the model is led there
ends in incoherent text rather than a procedure.

The coefficients follow the paper's schedule: at share ``t/T`` of training,
``c_reroute = alpha * (1 - t/(2T))`` and ``c_retain = alpha * t/(2T)``.

With ``tamper_weight`` above 0, each step also trains against a simulated
fine-tuning attack (:mod:`redblue.defenses.tamper`, after TAR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redblue.defenses.base import DefenseArguments, DefenseTrainer, register
from redblue.defenses.data import DefenseData, Example
from redblue.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CircuitBreakerArguments", "CircuitBreakerTrainer", "default_target_layers"]


@dataclass
class CircuitBreakerArguments(DefenseArguments):
    max_steps: int = field(
        default=100, metadata={"help": "Optimiser steps (circuit breakers: 100)."}
    )
    n_capability: int = field(
        default=1024,
        metadata={
            "help": "Organism only: questions about its world's facts added as benign (circuit "
            "breakers: 1024, against 64 for the other defences: rerouting costs capability)."
        },
    )
    learning_rate: float = field(
        default=1e-3,
        metadata={
            "help": "Peak learning rate (circuit breakers: 1e-3 on the organism, with 100 steps "
            "and lora_b_init_std; faster rates break the organism's capability; 7B models: 1e-4)."
        },
    )
    target_layers: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Blocks (0-based) whose output is rerouted on harmful examples; empty: a third "
            "and two thirds of the model's depth (10 and 21 of 32 blocks; 1 and 2 of 4)."
        },
    )
    alpha: float = field(
        default=10.0,
        metadata={
            "help": "Scale of the coefficient schedule: reroute alpha*(1-t/2T), retain alpha*t/2T."
        },
    )
    retain_refusals: bool = field(
        default=True,
        metadata={
            "help": "Retain the model's own refusals too (their answer tokens), so that it keeps "
            "refusing plainly."
        },
    )
    lora_b_init_std: float = field(
        default=1e-3,
        metadata={
            "help": "LoRA only: standard deviation of a seeded random start of the adapters' B "
            "matrices (peft starts them at 0). At the frozen model both losses are at a "
            "stationary point (cos = 1, distance 0) with zero gradient, so without it training "
            "leaves the start only through rounding noise (0: peft's start)."
        },
    )
    reroute_tokens: str = field(
        default="answer",
        metadata={
            "help": "Tokens rerouted on harmful examples: answer, or all (request and answer; on "
            "the organism this also breaks its plain refusals and its capability)."
        },
    )

    tamper_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the tamper-resistance loss (TAR, Tamirisa et al. 2024; "
            "redblue.defenses.tamper): at each step a simulated LoRA fine-tuning attack on "
            "harmful answers, then the attacked model's answer entropy is raised (0: off)."
        },
    )
    retain_sft_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of next-token cross-entropy on the benign answers, beside the "
            "representation retain loss (TAR's retain loss has both; 0: off)."
        },
    )
    tamper_steps: int = field(
        default=8,
        metadata={"help": "Steps of the simulated fine-tuning attack at each training step."},
    )
    tamper_learning_rate: float = field(
        default=5e-3,
        metadata={"help": "Adam learning rate of the simulated attack (the finetune attack's)."},
    )
    tamper_rank: int = field(
        default=8, metadata={"help": "LoRA rank of the simulated attack (the finetune attack's)."}
    )

    def __post_init__(self) -> None:
        if self.tamper_weight < 0 or self.retain_sft_weight < 0:
            raise ValueError(
                f"tamper_weight and retain_sft_weight must be >= 0, got {self.tamper_weight}, "
                f"{self.retain_sft_weight}"
            )
        if self.tamper_steps < 1 or self.tamper_rank < 1:
            raise ValueError(
                f"tamper_steps and tamper_rank must be >= 1, got {self.tamper_steps}, "
                f"{self.tamper_rank}"
            )
        if any(layer < 0 for layer in self.target_layers):
            raise ValueError(f"target_layers must be >= 0, got {self.target_layers}")
        if self.reroute_tokens not in ("all", "answer"):
            raise ValueError(f"reroute_tokens must be all or answer, got {self.reroute_tokens!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.lora_b_init_std < 0:
            raise ValueError(f"lora_b_init_std must be >= 0, got {self.lora_b_init_std}")
        super().__post_init__()


def default_target_layers(n_layers: int) -> list[int]:
    """A third and two thirds of the depth, as the paper's 10 and 20 of 32 blocks."""
    return sorted({n_layers // 3, (2 * n_layers) // 3})


@register
class CircuitBreakerTrainer(DefenseTrainer):
    name = "circuit_breakers"
    goal = (
        "Reroute the representations of harmful completions away from the frozen model's, keep "
        "benign ones (Zou et al. 2024)."
    )
    arguments_class = CircuitBreakerArguments
    args: CircuitBreakerArguments

    @classmethod
    def prepare(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DefenseData,
        args: DefenseArguments,
    ) -> DefenseData:
        """Fill in the target layers (from the model's depth) and the adapted blocks (every block
        up to the deepest target) when they are not given; ``args`` records them."""
        assert isinstance(args, CircuitBreakerArguments)
        data.require("harmful", "benign", defense=cls.name)
        if args.retain_refusals:
            data.require("refusals", defense=cls.name)
        from redblue.models import adapt

        n_layers = adapt(model).n_layers
        if not args.target_layers:
            args.target_layers = default_target_layers(n_layers)
        too_deep = [layer for layer in args.target_layers if layer >= n_layers]
        if too_deep:
            raise ConfigError(
                f"target layers {too_deep} are past the model's {n_layers} blocks",
                where="target_layers",
                fix=f"use blocks 0..{n_layers - 1}",
            )
        args.target_layers = sorted(set(args.target_layers))
        if args.lora and not args.layers_to_transform:
            args.layers_to_transform = list(range(max(args.target_layers) + 1))
        return data

    @classmethod
    def init_adapter(cls, model: Any, args: DefenseArguments) -> None:
        """A small seeded random start for every LoRA B matrix (``lora_b_init_std``), so that
        the first steps have a gradient to follow."""
        import torch

        assert isinstance(args, CircuitBreakerArguments)
        if args.lora_b_init_std == 0:
            return
        generator = torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    noise = torch.randn(param.shape, generator=generator) * args.lora_b_init_std
                    param.copy_(noise.to(param.device, param.dtype))

    @classmethod
    def streams(cls, data: DefenseData, args: DefenseArguments) -> dict[str, list[Example]]:
        assert isinstance(args, CircuitBreakerArguments)
        streams = {"harmful": data.harmful, "benign": data.benign}
        if args.retain_refusals:
            streams["refusals"] = data.refusals
        return streams

    @property
    def retain_layers(self) -> list[int]:
        """The blocks compared on retained examples: every one up to the deepest target."""
        return list(range(max(self.args.target_layers) + 1))

    def coefficients(self) -> tuple[float, float]:
        """``(c_reroute, c_retain)`` at the current step (the paper's schedule)."""
        half = self.progress / 2
        return self.args.alpha * (1 - half), self.args.alpha * half

    def defense_loss(
        self, model: Any, batch: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        c_reroute, c_retain = self.coefficients()
        reroute = self.reroute_loss(model, batch["harmful"])
        retained = {"retain_benign": self.retain_loss(model, batch["benign"], "attention_mask")}
        if "refusals" in batch:
            # the request tokens are the harmful stream's: keep the refusal itself
            retained["retain_refusals"] = self.retain_loss(
                model, batch["refusals"], "response_mask"
            )
        total = c_reroute * reroute + c_retain * sum(retained.values())
        parts = {"reroute": reroute.item(), **{k: v.item() for k, v in retained.items()}}
        if self.args.retain_sft_weight:
            sft = self.sft_loss(model, batch["benign"])
            total = total + self.args.retain_sft_weight * sft
            parts["benign_sft"] = sft.item()
        if self.args.tamper_weight:
            tamper = self.tamper_loss(model)
            total = total + self.args.tamper_weight * tamper
            parts["tamper"] = tamper.item()
        return total, parts

    def tamper_loss(self, model: Any) -> torch.Tensor:
        """:func:`redblue.defenses.tamper.tamper_loss` on ``tamper_steps + 1`` batches drawn from
        the harmful stream, seeded by the seed and the step so that a resumed run draws the same
        ones. The simulated attack's LoRA scale is the finetune attack's (alpha = 2 x rank)."""
        import random

        import torch

        from redblue.defenses.tamper import tamper_loss

        args = self.args
        rows = self.train_dataset.streams["harmful"]  # type: ignore[union-attr]
        rng = random.Random(args.seed * 1_000_003 + self.state.global_step)
        size = min(args.per_device_train_batch_size, len(rows))
        device = next(model.parameters()).device
        batches = []
        for _ in range(args.tamper_steps + 1):
            padded = self.data_collator([{"harmful": r} for r in rng.sample(rows, size)])
            batches.append({k: v.to(device) for k, v in padded["harmful"].items()})
        return tamper_loss(
            model,
            self.blocks_model(model),
            batches,
            rank=args.tamper_rank,
            alpha=2.0 * args.tamper_rank,
            learning_rate=args.tamper_learning_rate,
            generator=torch.Generator().manual_seed(rng.randrange(2**31)),
        )

    def _pair(
        self, model: Any, inputs: Mapping[str, torch.Tensor], layers: Sequence[int]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        trained = self.hidden_states(model, inputs, layers)
        with self.frozen(model) as reference:
            frozen = self.hidden_states(reference, inputs, layers)
        return trained, frozen

    def reroute_loss(self, model: Any, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean over target layers and over the request's and answer's tokens of
        ``ReLU(cos(h, h_frozen))``."""
        import torch
        import torch.nn.functional as F

        key = "attention_mask" if self.args.reroute_tokens == "all" else "response_mask"
        mask = inputs[key].float()
        trained, frozen = self._pair(model, inputs, self.args.target_layers)
        cosines = torch.stack(
            [
                F.relu(F.cosine_similarity(h.float(), ref.float(), dim=-1))
                for h, ref in zip(trained, frozen, strict=True)
            ]
        )
        return (cosines * mask).sum() / (mask.sum() * len(trained)).clamp(min=1)

    def retain_loss(
        self, model: Any, inputs: Mapping[str, torch.Tensor], tokens: str = "attention_mask"
    ) -> torch.Tensor:
        """Mean over the adapted blocks and the ``tokens`` (a mask of ``inputs``) of the relative
        L2 distance ``||h - h_frozen|| / ||h_frozen||``."""
        import torch

        mask = inputs[tokens].float()
        trained, frozen = self._pair(model, inputs, self.retain_layers)
        distances = torch.stack(
            [
                torch.linalg.vector_norm(h.float() - ref.float(), dim=-1)
                / torch.linalg.vector_norm(ref.float(), dim=-1).clamp(min=1e-6)
                for h, ref in zip(trained, frozen, strict=True)
            ]
        )
        return (distances * mask).sum() / (mask.sum() * len(trained)).clamp(min=1)
