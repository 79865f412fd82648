"""Deep safety alignment by data augmentation (Qi et al. 2024, "Safety Alignment Should Be Made
More Than Just a Few Tokens Deep").

A shallowly aligned model refuses in its first few answer tokens and nowhere
else: pre-fill "Sure, here is" and it carries on. This defence trains recovery
deeper in the answer: a harmful request, then the first ``k`` tokens of a
compliant answer given as context (``k`` drawn from 1..``max_prefix_tokens``),
then a refusal, with the loss on the refusal only. Plain refusals (``k = 0``) and
benign answers (the model's own) are mixed in; on the benign answers a KL term to
the model before training (``benign_kl_weight``) keeps whole next-token
distributions, not only the greedy answer. The defaults (30 steps, benign weight 10,
KL weight 30) were chosen on the organism (``benchmarks/defenses.py``): against benign
weight 3 and KL weight 10 they lower the rise of over-refusal (harmless +6 to +4
points, borderline +6 to +1) and the fall of capability (5 to 2 points), with the
same cut of prefilling.

The optional token-wise constrained objective (the paper's fine-tuning objective)
replaces cross-entropy on every stream by
``2/beta_t * softplus(-beta_t * (log p(y_t) - log p_ref(y_t)))`` per token, with a
large ``beta`` on the first answer tokens (keep them close to the model before
training) and a small one later (close to plain cross-entropy).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redblue.defenses.base import DefenseArguments, DefenseTrainer, register
from redblue.defenses.data import DefenseData, Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["AugmentArguments", "AugmentTrainer"]


@dataclass
class AugmentArguments(DefenseArguments):
    max_prefix_tokens: int = field(
        default=16,
        metadata={
            "help": "Longest harmful-answer prefix before the recovery (tokens; k ~ U[1, max])."
        },
    )
    recoveries_per_prompt: int = field(
        default=2, metadata={"help": "Augmented examples (different k) per harmful prompt."}
    )
    recovery_weight: float = field(default=1.0, metadata={"help": "Weight of the recovery loss."})
    refusal_weight: float = field(default=1.0, metadata={"help": "Weight of plain refusals."})
    benign_weight: float = field(default=10.0, metadata={"help": "Weight of benign SFT."})
    benign_kl_weight: float = field(
        default=30.0,
        metadata={"help": "Weight of KL(frozen || model) on benign answers (0: off)."},
    )
    constrained: bool = field(
        default=False,
        metadata={"help": "Token-wise constrained objective instead of cross-entropy."},
    )
    beta_first: float = field(default=0.5, metadata={"help": "beta of the first answer token."})
    beta_early: float = field(default=2.0, metadata={"help": "beta of answer tokens 2..5."})
    beta_late: float = field(default=0.1, metadata={"help": "beta of later answer tokens."})


@register
class AugmentTrainer(DefenseTrainer):
    name = "augment"
    goal = "Recover into a refusal after a compliant start: safety deeper than a few tokens (Qi et al. 2024)."
    arguments_class = AugmentArguments
    args: AugmentArguments

    @classmethod
    def prepare(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DefenseData,
        args: DefenseArguments,
    ) -> DefenseData:
        """Add recovery examples: harmful prompt, first k tokens of its compliant answer, refusal."""
        assert isinstance(args, AugmentArguments)
        data.require("harmful", "refusals", "benign", defense=cls.name)
        refusal_of = {e.prompt: e.answer for e in data.refusals}
        rng = random.Random(args.seed)
        recoveries = []
        for example in data.harmful:
            refusal = refusal_of.get(example.prompt)
            if refusal is None:
                continue
            ids = tokenizer(example.answer, add_special_tokens=False)["input_ids"]
            for _ in range(args.recoveries_per_prompt):
                k = rng.randint(1, max(1, min(args.max_prefix_tokens, len(ids) - 1)))
                prefix = str(tokenizer.decode(ids[:k])).rstrip() + " "
                recoveries.append(Example(example.prompt, refusal, prefix=prefix, kind="recovery"))
        data.extra["recovery"] = recoveries
        return data

    @classmethod
    def streams(cls, data: DefenseData, args: DefenseArguments) -> dict[str, list[Example]]:
        return {
            "recovery": data.extra.get("recovery", []),
            "refusals": data.refusals,
            "benign": data.benign,
        }

    def defense_loss(
        self, model: Any, batch: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        weights = {
            "recovery": self.args.recovery_weight,
            "refusals": self.args.refusal_weight,
            "benign": self.args.benign_weight,
        }
        return self.weighted_streams(
            model,
            batch,
            weights,
            benign_kl_weight=0.0 if self.args.constrained else self.args.benign_kl_weight,
            loss_of=self.constrained_loss if self.args.constrained else self.sft_loss,
        )

    def constrained_loss(self, model: Any, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The token-wise constrained objective (see the module's docstring)."""
        import torch
        import torch.nn.functional as F

        labels = inputs["labels"][:, 1:]
        trained = labels != -100
        safe = labels.clamp(min=0)

        def token_logp(m: Any) -> torch.Tensor:
            logits = m(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            return logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)

        logp = token_logp(model)
        with self.frozen(model) as reference:
            ref = token_logp(reference)
        # answer position of each labelled token: 0 for the first, 1 for the second, ...
        position = torch.cumsum(trained.long(), dim=1) - 1
        beta = torch.full_like(logp, self.args.beta_late)
        beta[position < 5] = self.args.beta_early
        beta[position == 0] = self.args.beta_first
        per_token = 2.0 / beta * F.softplus(-beta * (logp - ref))
        return (per_token * trained).sum() / trained.sum().clamp(min=1)
